"""fastgmm._em: the EM loop through the estimator: invariants, restarts, weights, dtypes,
warm starts, convergence, callbacks, recovery and accuracy.

Initialisation is tested in test_init.py, determinism in test_determinism.py.
"""

import warnings

import numpy as np
import pytest

import fastgmm


def test_lower_bound_never_decreases(covariance_type, blobs):
    """Without regularisation the lower bound of 30 EM iterations never decreases (beyond round-
    off).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        g = fastgmm.GaussianMixture(3, covariance_type=covariance_type, reg_covar=0.0,
                                    tol=0, max_iter=30, init_params="random",
                                    random_state=0).fit(blobs)
    lb = np.array(g.lower_bounds_)
    assert len(lb) == 30
    assert np.all(np.diff(lb) >= -1e-12 * np.abs(lb[1:]))


def test_fitted_model_invariants(covariance_type, blobs):
    """Responsibilities on the simplex, score the mean of score_samples, symmetric positive
    definite covariances whose precision factors invert them, and fit_predict equal to the
    argmax of predict_proba.
    """
    g = fastgmm.GaussianMixture(3, covariance_type=covariance_type, random_state=1).fit(blobs)
    resp = g.predict_proba(blobs)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert ((resp >= 0) & (resp <= 1)).all()
    assert g.score(blobs) == pytest.approx(g.score_samples(blobs).mean(), rel=1e-13)
    assert np.isclose(g.weights_.sum(), 1.0)
    if covariance_type == "full":
        covs = g.covariances_
    elif covariance_type == "tied":
        covs = g.covariances_[None]
    elif covariance_type == "diag":
        covs = np.stack([np.diag(c) for c in g.covariances_])
    else:
        covs = np.stack([np.eye(2) * c for c in g.covariances_])
    for c in covs:
        np.testing.assert_allclose(c, c.T)
        assert np.linalg.eigvalsh(c).min() > 0
    # precisions_ and precisions_cholesky_ describe the inverse covariances.
    if covariance_type in ("full", "tied"):
        pc = g.precisions_cholesky_ if covariance_type == "full" else g.precisions_cholesky_[None]
        for c, u in zip(covs, pc, strict=True):
            np.testing.assert_allclose(u @ u.T @ c, np.eye(2), atol=1e-10)
            assert np.allclose(u, np.triu(u))
    else:
        np.testing.assert_allclose(g.precisions_ * g.covariances_, 1.0)
    labels = fastgmm.GaussianMixture(3, covariance_type=covariance_type,
                                     random_state=1).fit_predict(blobs)
    np.testing.assert_array_equal(labels, g.predict(blobs))
    np.testing.assert_array_equal(g.predict(blobs), resp.argmax(axis=1))


def test_n_init_keeps_the_best_restart(blobs):
    """Of five differing restarts the one with the highest final lower bound is kept."""
    finals = {}

    def record(info):
        finals[info.init] = info.lower_bound

    g = fastgmm.GaussianMixture(3, n_init=5, init_params="random", max_iter=200,
                                random_state=3, callback=record).fit(blobs)
    assert len(finals) == 5
    assert g.lower_bound_ == max(finals.values())
    assert len(set(np.round(list(finals.values()), 6))) > 1  # restarts did differ


def test_recovers_known_mixture():
    """30000 draws from a known mixture give back its weights, means and covariances."""
    rng = np.random.default_rng(42)
    true_w = np.array([0.5, 0.3, 0.2])
    true_m = np.array([[0.0, 0.0], [4.0, 4.0], [-4.0, 5.0]])
    true_c = np.array([[[1.0, 0.3], [0.3, 0.8]], [[0.6, -0.2], [-0.2, 1.2]],
                       [[1.5, 0.0], [0.0, 0.5]]])
    n = 30_000
    z = rng.choice(3, size=n, p=true_w)
    X = np.empty((n, 2))
    for j in range(3):
        idx = z == j
        X[idx] = rng.multivariate_normal(true_m[j], true_c[j], size=idx.sum())
    g = fastgmm.fit(X, n_components=3, random_state=0)
    order = [int(np.argmin(np.linalg.norm(g.means_ - m, axis=1))) for m in true_m]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(g.means_[order], true_m, atol=0.05)
    np.testing.assert_allclose(g.weights_[order], true_w, atol=0.02)
    np.testing.assert_allclose(g.covariances_[order], true_c, atol=0.06)


def test_shifted_accumulation_far_from_origin(covariance_type):
    """Clusters 1e6 from the origin get numpy's biased per-cluster covariances to 1e-6 for every
    covariance type (statistics about a shift).
    """
    # Unit-variance clusters offset by 1e6: raw E[xx^T] - mu mu^T would lose
    # about 12 of the 16 digits here.  With clusters 40 sigma apart the
    # responsibilities are 0/1 to double precision, so the EM fixed point is
    # the per-cluster biased sample covariance (+ reg_covar).
    rng = np.random.default_rng(7)
    A = rng.normal(size=(2000, 2))
    B = rng.normal(size=(2000, 2)) * np.array([0.5, 1.5]) + np.array([40.0, 0.0])
    X = np.vstack([A, B]) + 1e6
    g = fastgmm.GaussianMixture(2, covariance_type=covariance_type, tol=1e-12,
                                max_iter=50, random_state=0).fit(X)
    a = int(np.argmin(g.means_[:, 0]))
    covs = [np.cov(A.T, bias=True), np.cov(B.T, bias=True)]
    if covariance_type == "full":
        got = [g.covariances_[a], g.covariances_[1 - a]]
        want = [c + 1e-6 * np.eye(2) for c in covs]
    elif covariance_type == "tied":
        got = [g.covariances_]
        want = [(covs[0] + covs[1]) / 2 + 1e-6 * np.eye(2)]
    elif covariance_type == "diag":
        got = [g.covariances_[a], g.covariances_[1 - a]]
        want = [np.diag(c) + 1e-6 for c in covs]
    else:
        got = [g.covariances_[a], g.covariances_[1 - a]]
        want = [np.diag(c).mean() + 1e-6 for c in covs]
    for x, y in zip(got, want, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6)
    np.testing.assert_allclose(g.means_[a], A.mean(axis=0) + 1e6, rtol=1e-12)


def test_integer_weights_equal_repeated_rows(covariance_type, blobs):
    """Integer weights give the iterates, lower bounds, score, BIC and AIC of rows repeated that
    many times.
    """
    reps = np.random.default_rng(5).integers(0, 4, size=blobs.shape[0])
    X_rep = np.repeat(blobs, reps, axis=0)
    init = fastgmm.GaussianMixture(3, covariance_type=covariance_type, max_iter=1,
                                   random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        init.fit(blobs)
    kw = dict(covariance_type=covariance_type, tol=0, max_iter=10,
              weights_init=init.weights_, means_init=init.means_,
              precisions_init=init.precisions_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        a = fastgmm.GaussianMixture(3, **kw).fit(blobs, sample_weight=reps)
        b = fastgmm.GaussianMixture(3, **kw).fit(X_rep)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=1e-10)
    assert a.score(blobs, sample_weight=reps) == pytest.approx(b.score(X_rep), rel=1e-10)
    assert a.bic(blobs, sample_weight=reps) == pytest.approx(b.bic(X_rep), rel=1e-10)
    assert a.aic(blobs, sample_weight=reps) == pytest.approx(b.aic(X_rep), rel=1e-10)


def test_float32_stays_float32_and_matches_float64(covariance_type, blobs):
    """float32 data gives float32 parameters and outputs, within 1e-3 of the float64 fit."""
    g64 = fastgmm.GaussianMixture(3, covariance_type=covariance_type, random_state=0,
                                  tol=1e-8, max_iter=300).fit(blobs)
    g32 = fastgmm.GaussianMixture(3, covariance_type=covariance_type, random_state=0,
                                  tol=1e-8, max_iter=300).fit(blobs.astype(np.float32))
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(g32, name).dtype == np.float32
        assert getattr(g64, name).dtype == np.float64
    X32 = blobs.astype(np.float32)
    assert g32.predict_proba(X32).dtype == np.float32
    assert g32.score_samples(X32).dtype == np.float32
    assert g32.sample(5)[0].dtype == np.float32
    np.testing.assert_allclose(g32.means_, g64.means_, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(g32.covariances_, g64.covariances_, rtol=1e-3, atol=1e-3)


def test_warm_start_continues(blobs):
    """Two warm-started fits of two iterations continue each other: the history and means of one
    cold fit of four.
    """
    g = fastgmm.GaussianMixture(3, warm_start=True, max_iter=2, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        g.fit(blobs)
        first = list(g.lower_bounds_)
        g.fit(blobs)
    cold = fastgmm.GaussianMixture(3, max_iter=4, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        cold.fit(blobs)
    np.testing.assert_allclose(first + g.lower_bounds_, cold.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(g.means_, cold.means_, rtol=1e-12)


def test_not_converged_warns(blobs):
    """Stopping at max_iter short of tol warns with ConvergenceWarning."""
    with pytest.warns(fastgmm.ConvergenceWarning, match="did not converge"):
        fastgmm.GaussianMixture(3, max_iter=1, tol=1e-12, random_state=0).fit(blobs)


def test_verbose_and_callback(blobs, capsys):
    """verbose=2 prints every iteration; the callback sees each IterationInfo with the current
    parameters and stops the run by returning True.
    """
    seen = []
    g = fastgmm.GaussianMixture(3, verbose=2, random_state=0, tol=0, max_iter=50,
                                callback=lambda info: seen.append(info) or len(seen) >= 3)
    g.fit(blobs)  # the callback stops the run at iteration 3, so no warning
    err = capsys.readouterr().err
    assert "iter    1" in err and "log-likelihood" in err
    assert [s.iteration for s in seen] == [1, 2, 3]
    assert g.n_iter_ == 3
    assert all(isinstance(s, fastgmm.IterationInfo) for s in seen)
    np.testing.assert_allclose(seen[-1].params.means, g.means_)


@pytest.mark.parametrize("init_params", ["kmeans", "random"])
def test_fit_holds_no_array_proportional_to_n_times_k(init_params):
    """A whole fit, initialisation included, never holds an (n, k) array: Python-side peak memory
    stays under half of one.
    """
    # Python-side allocations (numpy buffers, which tracemalloc sees) of a
    # whole fit, initialisation included, stay a fraction of X: no (n, k)
    # responsibility matrix and no block of it larger than the slot budget.
    import tracemalloc

    rng = np.random.default_rng(3)
    n, d, k = 300_000, 4, 24
    X = rng.normal(size=(n, d)) + rng.integers(0, 6, size=(n, 1)) * 8.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        fastgmm.fit(X[:5000], k, init_params=init_params, max_iter=2, random_state=0)
        tracemalloc.start()
        try:
            fastgmm.fit(X, k, init_params=init_params, max_iter=3, random_state=0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    resp_nbytes = n * k * 8
    assert peak < 0.5 * resp_nbytes, (peak, resp_nbytes)


@pytest.mark.parametrize("gap, kept", [(0.0, 0), (1e-15, 0), (-1e-15, 0), (1e-9, 1), (-1e-9, 0)])
def test_restarts_tied_to_rounding_keep_the_first(monkeypatch, gap, kept):
    """A later restart is kept only when its bound beats the best by more than 1e-12
    relative: two runs to the same optimum differ in the last bits only, and which is
    larger must not decide the component order of the fit.
    """
    from fastgmm import _em

    bound = -3.573369653578188
    bounds = [bound, bound + gap * abs(bound)]
    calls = []

    def fake_run_em(source, params, init=0, **kw):
        calls.append(init)
        return _em.EMResult(params=params, lower_bound=bounds[init], converged=True, init=init)

    monkeypatch.setattr(_em, "run_em", fake_run_em)
    best = _em.fit_restarts(None, lambda rng: f"start {len(calls)}", 2,
                            np.random.RandomState(0))
    assert calls == [0, 1]
    assert best.init == kept
