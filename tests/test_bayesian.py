"""BayesianGaussianMixture: scikit-learn's iterates, data sources, weights, dtypes, threads."""

import warnings

import numpy as np
import pytest
from naive import make_blobs

import fastgmm
from fastgmm._bayesian import mahalanobis_total
from fastgmm._compute import compute_stats

sklearn_mixture = pytest.importorskip("sklearn.mixture")

CENTERS = [(0.0, 0.0, 0.0), (4.0, 4.0, 0.0), (0.0, 5.0, 5.0)]
PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")

#: The variational posterior's fitted attributes (scikit-learn's names).
POSTERIOR = ("weight_concentration_", "mean_precision_", "means_", "degrees_of_freedom_",
             "covariances_", "precisions_cholesky_")


def _rel(a, b):
    a = np.ravel(np.asarray(a, np.float64))
    b = np.ravel(np.asarray(b, np.float64))
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _posterior(model) -> dict:
    """The posterior attributes of a fitted model (either library), float64 copies."""
    out = {}
    for name in POSTERIOR:
        value = getattr(model, name)
        if isinstance(value, tuple):
            value = np.stack(value)
        out[name] = np.array(value, dtype=np.float64)
    return out


def _sklearn_start(covariance_type, prior_type, X, k=4, seed=0):
    """scikit-learn's model after its own variational M-step on rough responsibilities.

    The responsibilities are soft and deliberately off (nearest perturbed
    centre, blurred), so that the iterations that follow have work to do.
    """
    rng = np.random.default_rng(seed)
    centres = X[rng.choice(X.shape[0], size=k, replace=False)]
    d2 = ((X[:, None, :] - centres[None]) ** 2).sum(axis=2)
    resp = np.exp(-0.3 * (d2 - d2.min(axis=1, keepdims=True)))
    resp /= resp.sum(axis=1, keepdims=True)
    ref = sklearn_mixture.BayesianGaussianMixture(
        n_components=k, covariance_type=covariance_type,
        weight_concentration_prior_type=prior_type, tol=0.0, warm_start=True)
    ref._check_parameters(X)
    ref._initialize(X, resp)
    ref._set_parameters(ref._get_parameters())  # derives weights_ and precisions_
    ref.converged_ = False
    ref.lower_bound_ = -np.inf
    return ref


def _ours_from(ref, X, **kw):
    """A fastgmm model holding ``ref``'s posterior, ready to warm-start from it."""
    k = ref.n_components
    ours = fastgmm.BayesianGaussianMixture(
        k, covariance_type=ref.covariance_type,
        weight_concentration_prior_type=ref.weight_concentration_prior_type,
        tol=0.0, warm_start=True, **kw)
    for name, value in _posterior(ref).items():
        if name == "weight_concentration_" and value.ndim == 2:
            value = (value[0], value[1])
        setattr(ours, name, value)
    ours.weights_ = np.array(ref.weights_)
    ours.n_features_in_ = X.shape[1]
    ours.lower_bound_ = -np.inf
    ours.converged_ = False
    return ours


def _fit_quiet(model, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tol=0 never converges
        return model.fit(X, **kw)


def _blobs(n_per=250, seed=1, dtype=np.float64):
    return make_blobs(n_per, CENTERS, [1.0, 0.7, 1.3], seed=seed, dtype=dtype)


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_same_iterates_as_scikit_learn(covariance_type, prior_type):
    """From the same posterior, 1, 2 and 10 iterations give scikit-learn's posterior, weights,
    lower bounds, priors and per-point outputs to 1e-8 (float64).
    """
    X = _blobs()
    for n_iter in (1, 2, 10):
        ref = _fit_quiet(_sklearn_start(covariance_type, prior_type, X).set_params(
            max_iter=n_iter), X)
        ours = _fit_quiet(_ours_from(_sklearn_start(covariance_type, prior_type, X), X,
                                     max_iter=n_iter), X)
        assert ours.n_iter_ == ref.n_iter_ == n_iter
        assert _rel(ours.lower_bounds_, ref.lower_bounds_) < 1e-8
        assert ours.lower_bound_ == pytest.approx(float(np.ravel(ref.lower_bound_)[0]),
                                                  rel=1e-8)
        assert _rel(ours.weights_, ref.weights_) < 1e-8
        for name, value in _posterior(ref).items():
            assert _rel(getattr(ours, name) if name != "weight_concentration_"
                        else np.stack(ours.weight_concentration_)
                        if prior_type == "dirichlet_process" else ours.weight_concentration_,
                        value) < 1e-8, name
        assert _rel(ours.precisions_, ref.precisions_) < 1e-8
    # Priors resolved from the data, and the per-point outputs.
    assert _rel(ours.mean_prior_, ref.mean_prior_) < 1e-12
    assert _rel(ours.covariance_prior_, ref.covariance_prior_) < 1e-12
    assert ours.degrees_of_freedom_prior_ == ref.degrees_of_freedom_prior_
    assert ours.weight_concentration_prior_ == ref.weight_concentration_prior_
    assert ours.mean_precision_prior_ == ref.mean_precision_prior_
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-8)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-8)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    assert ours.score(X) == pytest.approx(ref.score(X), rel=1e-8)


def test_lower_bound_entropy_from_statistics_equals_direct_sum(covariance_type):
    """``sum_k n_k c_k - M/2 - log_likelihood`` from the statistics equals the direct
    ``sum_i w_i sum_k r_ik log r_ik`` of numpy's responsibilities (weighted rows).
    """
    X = _blobs(150)
    w = np.random.default_rng(3).uniform(0.2, 3.0, size=X.shape[0])
    ref = _sklearn_start(covariance_type, "dirichlet_process", X)
    params = _ours_from(ref, X)._params()
    stats = compute_stats(X, w, params)
    log_rho = ref._estimate_weighted_log_prob(X)
    log_z = np.logaddexp.reduce(log_rho, axis=1)
    log_r = log_rho - log_z[:, None]
    direct = float(w @ (np.exp(log_r) * log_r).sum(axis=1))
    via_stats = (stats.nk @ params.log_norm() - 0.5 * mahalanobis_total(stats, params)
                 - stats.log_likelihood)
    assert via_stats == pytest.approx(direct, rel=1e-10, abs=1e-9)
    assert stats.log_likelihood == pytest.approx(float(w @ log_z), rel=1e-12)


def test_float32_stays_float32_and_close_to_float64(covariance_type):
    """float32 data give float32 attributes within float32 rounding of the float64 fit."""
    X = _blobs()
    kw = dict(max_iter=10)
    f64 = _fit_quiet(_ours_from(_sklearn_start(covariance_type, "dirichlet_process", X),
                                X, **kw), X)
    f32 = _fit_quiet(_ours_from(_sklearn_start(covariance_type, "dirichlet_process", X),
                                X, **kw), X.astype(np.float32))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_",
                 "mean_precision_"):
        assert getattr(f32, name).dtype == np.float32, name
        assert _rel(getattr(f32, name), getattr(f64, name)) < 1e-4, name
    assert _rel(f32.lower_bounds_, f64.lower_bounds_) < 1e-5
    assert f32.predict_proba(X.astype(np.float32)).dtype == np.float32


def test_one_and_two_threads_give_the_same_bits(covariance_type):
    """A fit from scratch (k-means start, n_init=2) has the same bits on 1 and 2 threads."""
    X = make_blobs(8000, CENTERS, [1.0, 0.7, 1.3], seed=2)
    kw = dict(n_components=5, covariance_type=covariance_type, random_state=0, n_init=2,
              max_iter=20)
    one = _fit_quiet(fastgmm.BayesianGaussianMixture(n_threads=1, **kw), X)
    two = _fit_quiet(fastgmm.BayesianGaussianMixture(n_threads=2, **kw), X)
    for name in POSTERIOR + ("weights_",):
        a, b = _posterior(one).get(name, one.weights_), _posterior(two).get(name, two.weights_)
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), name
    assert one.lower_bounds_ == two.lower_bounds_


def test_memmap_and_chunk_iterator_equal_in_memory(covariance_type, tmp_path):
    """A .npy file and a chunk factory give the in-memory fit from the same start."""
    X = _blobs()
    path = tmp_path / "X.npy"
    np.save(path, X)
    sources = {
        "memory": X,
        "memmap": fastgmm.MemmapSource(str(path), block_size=256),
        "chunks": lambda: (X[i:i + 100] for i in range(0, X.shape[0], 100)),
    }
    fits = {name: _fit_quiet(_ours_from(_sklearn_start(covariance_type,
                                                       "dirichlet_process", X),
                                        X, max_iter=5), data)
            for name, data in sources.items()}
    ref = fits.pop("memory")
    for name, got in fits.items():
        assert _rel(got.lower_bounds_, ref.lower_bounds_) < 1e-10, name
        for key, value in _posterior(ref).items():
            assert _rel(_posterior(got)[key], value) < 1e-10, (name, key)
        assert _rel(got.covariance_prior_, ref.covariance_prior_) < 1e-12


def test_dask_array_equals_in_memory():
    """A Dask array on the local threaded scheduler gives the in-memory fit from the same start."""
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    X = _blobs()
    w = np.random.default_rng(4).integers(1, 4, size=X.shape[0]).astype(np.float64)
    ref = _fit_quiet(_ours_from(_sklearn_start("full", "dirichlet_process", X), X,
                                max_iter=5), X, sample_weight=w)
    with dask.config.set(scheduler="threads"):
        got = _fit_quiet(_ours_from(_sklearn_start("full", "dirichlet_process", X), X,
                                    max_iter=5),
                         da.from_array(X, chunks=(200, 3)),
                         sample_weight=da.from_array(w, chunks=200))
        lazy = got.predict(da.from_array(X, chunks=(200, 3)))
        labels = lazy.compute()
    assert _rel(got.lower_bounds_, ref.lower_bounds_) < 1e-10
    for key, value in _posterior(ref).items():
        assert _rel(_posterior(got)[key], value) < 1e-10, key
    np.testing.assert_array_equal(labels, ref.predict(X))


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_integer_weights_equal_repeated_rows(covariance_type, prior_type):
    """Integer sample weights give the fit (priors, posterior, lower bounds) of repeated rows."""
    X = _blobs(120)
    w = np.random.default_rng(5).integers(0, 4, size=X.shape[0])
    Xr = np.repeat(X, w, axis=0)
    weighted = _fit_quiet(_ours_from(_sklearn_start(covariance_type, prior_type, Xr), X,
                                     max_iter=5), X, sample_weight=w.astype(float))
    repeated = _fit_quiet(_ours_from(_sklearn_start(covariance_type, prior_type, Xr), Xr,
                                     max_iter=5), Xr)
    assert _rel(weighted.lower_bounds_, repeated.lower_bounds_) < 1e-10
    for key, value in _posterior(repeated).items():
        assert _rel(_posterior(weighted)[key], value) < 1e-10, key
    assert _rel(weighted.mean_prior_, repeated.mean_prior_) < 1e-12
    assert _rel(weighted.covariance_prior_, repeated.covariance_prior_) < 1e-12


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_extra_components_get_weight_near_zero(covariance_type, prior_type):
    """On three well-separated blobs with n_components=8, three components stay effective."""
    centres = [(0.0, 0.0), (12.0, 0.0), (0.0, 12.0)]
    X = make_blobs(300, centres, [1.0, 1.0, 1.0], seed=6)
    model = fastgmm.BayesianGaussianMixture(
        8, covariance_type=covariance_type, weight_concentration_prior_type=prior_type,
        weight_concentration_prior=1e-3, random_state=0, max_iter=1000, tol=1e-6).fit(X)
    assert model.converged_
    assert model.n_effective_components_ == 3
    kept = model.effective_components()
    assert len(kept) == 3
    assert np.all(np.diff(model.weights_[kept]) <= 0)  # heaviest first
    np.testing.assert_allclose(np.sort(model.weights_[kept]), [1 / 3] * 3, atol=0.01)
    others = np.setdiff1d(np.arange(8), kept)
    assert model.weights_[others].max() < 1e-2
    assert len(np.unique(model.predict(X))) == 3
    assert len(model.effective_components(threshold=0.0)) >= 3


def test_fit_from_scratch_is_deterministic_and_fit_predict_agrees():
    """A seeded fit repeats bit for bit; fit_predict equals predict; the bound never drops."""
    X = _blobs()
    kw = dict(n_components=4, random_state=3, n_init=2, init_params="k-means++")
    a = fastgmm.BayesianGaussianMixture(**kw).fit(X)
    b = fastgmm.BayesianGaussianMixture(**kw)
    labels = b.fit_predict(X)
    np.testing.assert_array_equal(labels, b.predict(X))
    assert a.lower_bounds_ == b.lower_bounds_
    assert a.means_.tobytes() == b.means_.tobytes()
    assert np.all(np.diff(a.lower_bounds_) > -1e-8 * abs(a.lower_bound_))


def test_callback_sees_each_lower_bound_and_can_stop():
    """The callback receives the variational lower bounds; returning True stops the run."""
    X = _blobs(100)
    seen = []

    def callback(info):
        seen.append(info.lower_bound)
        return info.iteration == 3

    model = fastgmm.BayesianGaussianMixture(3, random_state=0, tol=0.0,
                                            callback=callback).fit(X)
    assert model.n_iter_ == 3 and not model.converged_
    assert seen == model.lower_bounds_


def test_sample_draws_from_the_expected_mixture():
    """``sample`` draws rows whose per-component means follow ``means_``."""
    X = _blobs(300)
    model = fastgmm.BayesianGaussianMixture(3, random_state=0, max_iter=300).fit(X)
    Xs, ys = model.sample(30000, random_state=1)
    assert Xs.shape == (30000, 3)
    for j in np.unique(ys):
        if (ys == j).sum() > 1000:
            np.testing.assert_allclose(Xs[ys == j].mean(axis=0), model.means_[j], atol=0.1)


def test_user_given_priors_are_used():
    """Explicit priors are stored as given and need no statistics of X (but the total weight)."""
    X = _blobs(100)
    d = X.shape[1]
    model = fastgmm.BayesianGaussianMixture(
        2, covariance_type="diag", mean_prior=np.zeros(d), covariance_prior=np.full(d, 2.0),
        degrees_of_freedom_prior=5.0, mean_precision_prior=0.5,
        weight_concentration_prior=3.0, random_state=0).fit(X)
    np.testing.assert_array_equal(model.mean_prior_, np.zeros(d))
    np.testing.assert_array_equal(model.covariance_prior_, np.full(d, 2.0))
    assert (model.degrees_of_freedom_prior_, model.mean_precision_prior_,
            model.weight_concentration_prior_) == (5.0, 0.5, 3.0)
    ref = sklearn_mixture.BayesianGaussianMixture(
        n_components=2, covariance_type="diag", mean_prior=np.zeros(d),
        covariance_prior=np.full(d, 2.0), degrees_of_freedom_prior=5.0,
        mean_precision_prior=0.5, weight_concentration_prior=3.0)
    ref._check_parameters(X)
    assert ref.weight_concentration_prior_ == model.weight_concentration_prior_


@pytest.mark.parametrize("kw, match", [
    (dict(weight_concentration_prior_type="dirichlet"), "weight_concentration_prior_type"),
    (dict(weight_concentration_prior=0.0), "weight_concentration_prior"),
    (dict(mean_precision_prior=-1.0), "mean_precision_prior"),
    (dict(degrees_of_freedom_prior=1.5), "degrees_of_freedom_prior must be greater than 2"),
    (dict(mean_prior=[0.0, 0.0]), "mean_prior has shape"),
    (dict(covariance_prior=np.eye(2)), "covariance_prior has shape"),
    (dict(covariance_prior=-np.eye(3)), "not positive definite"),
    (dict(covariance_prior=np.triu(np.ones((3, 3)))), "not symmetric"),
    (dict(covariance_type="diag", covariance_prior=[1.0, 0.0, 1.0]), "must be positive"),
    (dict(covariance_type="spherical", covariance_prior=0.0), "covariance_prior"),
])
def test_bad_priors_are_rejected(kw, match):
    """Each invalid prior raises a ValueError naming it."""
    X = _blobs(20)
    with pytest.raises(ValueError, match=match):
        fastgmm.BayesianGaussianMixture(2, **kw).fit(X)


def test_default_covariance_prior_needs_more_than_one_sample():
    """One sample cannot give the default covariance prior (ddof=1): a clear error."""
    with pytest.raises(ValueError, match="one sample"):
        fastgmm.BayesianGaussianMixture(1).fit(np.ones((1, 2)))
    model = fastgmm.BayesianGaussianMixture(1, covariance_prior=np.eye(2)).fit(np.ones((1, 2)))
    assert model.n_effective_components_ == 1


def test_import_fastgmm_does_not_import_the_bayesian_module():
    """``fastgmm.BayesianGaussianMixture`` is exported lazily."""
    import subprocess
    import sys

    code = ("import sys, fastgmm; assert 'fastgmm._bayesian' not in sys.modules; "
            "fastgmm.BayesianGaussianMixture; assert 'fastgmm._bayesian' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------
# the protections of GaussianMixture's fitted state (issue #15) hold here too
# ---------------------------------------------------------------------------


def _fitted_state(model):
    return {name: np.array(value, copy=True) for name, value in vars(model).items()
            if name.endswith("_") and not name.startswith("_")
            and isinstance(value, (np.ndarray, tuple))}


def test_set_params_after_fit_keeps_the_fitted_structure():
    """Predictions use the fitted covariance and prior types until the next fit."""
    X = make_blobs(60, CENTERS, [1.0, 0.7, 1.3], seed=4)
    model = fastgmm.BayesianGaussianMixture(3, random_state=0, max_iter=200).fit(X)
    ref = model.predict_proba(X)
    model.set_params(covariance_type="spherical",
                     weight_concentration_prior_type="dirichlet_distribution")
    np.testing.assert_array_equal(model.predict_proba(X), ref)
    assert model.sample(5)[0].shape == (5, 3)
    with pytest.raises(ValueError, match="cannot save"):
        model.save("never-written.npz")


@pytest.mark.parametrize("change, match", [
    ({"n_components": 4}, "warm_start: n_components is 4"),
    ({"covariance_type": "diag"}, "warm_start: covariance_type is 'diag'"),
    ({"weight_concentration_prior_type": "dirichlet_distribution"},
     "warm_start: weight_concentration_prior_type is 'dirichlet_distribution'"),
])
def test_warm_start_refuses_a_changed_structure_and_keeps_the_fit(change, match):
    X = make_blobs(60, CENTERS, [1.0, 0.7, 1.3], seed=4)
    model = fastgmm.BayesianGaussianMixture(3, random_state=0, warm_start=True,
                                            max_iter=200).fit(X)
    before = _fitted_state(model)
    model.set_params(**change)
    with pytest.raises(ValueError, match=match):
        model.fit(X)
    after = _fitted_state(model)
    assert before.keys() == after.keys()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_rejected_fit_leaves_the_model_as_it_was():
    X = make_blobs(60, CENTERS, [1.0, 0.7, 1.3], seed=4)
    model = fastgmm.BayesianGaussianMixture(3, random_state=0, max_iter=200).fit(X)
    before = _fitted_state(model)
    model.set_params(degrees_of_freedom_prior=0.5)  # needs > n_features - 1
    with pytest.raises(ValueError, match="degrees_of_freedom_prior"):
        model.fit(X)
    for name, value in _fitted_state(model).items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


@pytest.mark.parametrize("name, value", [
    ("mean_precision_", np.ones(5)),
    ("degrees_of_freedom_", np.ones(2)),
    ("weight_concentration_", (np.ones(3), np.ones(2))),
    ("means_", np.zeros((3, 2))),
])
def test_inconsistent_fitted_attributes_are_refused_before_any_kernel(name, value):
    X = make_blobs(60, CENTERS, [1.0, 0.7, 1.3], seed=4)
    model = fastgmm.BayesianGaussianMixture(3, random_state=0, max_iter=200).fit(X)
    setattr(model, name, value)
    for call in (model.predict, model.score_samples):
        with pytest.raises(ValueError, match="fitted att"):
            call(X)


def test_repr_shows_array_priors_by_shape():
    model = fastgmm.BayesianGaussianMixture(2, mean_prior=np.zeros(3))
    assert repr(model) == "BayesianGaussianMixture(mean_prior=array(shape=(3,)), n_components=2)"


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_lower_bound_never_decreases(covariance_type, prior_type):
    """With ``reg_covar=0`` every iteration's lower bound is at least the previous one's.

    Each recorded bound is ``F(r) = max_q(theta) L(r, q(theta))``: the
    entropy of the responsibilities ``r`` plus the posterior's
    log-normalisers, evaluated right after the variational M-step, which is
    that maximum.  The next E-step maximises ``L(., q(theta))`` over ``r``
    and the next M-step over ``q(theta)``, so ``F`` cannot drop (Bishop 2006,
    section 10.2).  ``reg_covar > 0`` makes the M-step miss the maximum; the
    covariance prior keeps every scatter positive definite without it.

    Tolerance: near convergence the true change is zero and only round-off
    in the sums (over samples and components) shows; measured, it stays
    below ``5e-15 |L|`` here.  ``1e-12 |L|`` leaves a margin of 200 and is
    still ten orders of magnitude below the rise of the bound in the run
    (the test checks at least eight), so a wrong M-step or bound term shows.
    Random starts and eight components for three blobs make components
    empty out during the run, where the bound's terms change the most.
    """
    for seed in (0, 1):
        X = make_blobs(250, CENTERS, [1.0, 0.7, 1.3], seed=seed)
        model = _fit_quiet(fastgmm.BayesianGaussianMixture(
            8, covariance_type=covariance_type, weight_concentration_prior_type=prior_type,
            reg_covar=0.0, tol=0.0, max_iter=200, init_params="random", random_state=seed), X)
        bounds = np.asarray(model.lower_bounds_)
        assert bounds.shape == (200,) and np.all(np.isfinite(bounds))
        tol = 1e-12 * abs(bounds[-1])
        assert np.diff(bounds).min() >= -tol, seed
        assert bounds[-1] - bounds[0] > 1e10 * tol  # the run did climb
