"""fastgmm._estimator: the scikit-learn contract, fastgmm.fit, and numerical edge cases.

References come from numpy/scipy (``naive``) and scikit-learn, never from
fastgmm itself.
"""

import warnings

import numpy as np
import pytest
from conftest import FITTED, TWO_BLOBS
from naive import e_step, em_iterations, full_covariances, unit_covariances
from scipy.stats import multivariate_normal

import fastgmm

X = TWO_BLOBS


def test_fit_front_door_returns_fitted_estimator():
    """fastgmm.fit returns a fitted, converged GaussianMixture with the asked parameters and a
    consistent lower-bound history.
    """
    g = fastgmm.fit(X, n_components=2, covariance_type="diag", random_state=0)
    assert isinstance(g, fastgmm.GaussianMixture)
    assert g.n_components == 2 and g.covariance_type == "diag"
    assert g.converged_ and g.n_iter_ >= 1 and g.n_features_in_ == 2
    assert len(g.lower_bounds_) == g.n_iter_ and g.lower_bound_ == g.lower_bounds_[-1]


def test_get_set_params_and_repr():
    """get_params and set_params follow scikit-learn (unknown names refused) and the repr shows
    the changed parameters.
    """
    g = fastgmm.GaussianMixture(3, covariance_type="tied", tol=1e-4)
    p = g.get_params()
    assert p["n_components"] == 3 and p["covariance_type"] == "tied" and p["tol"] == 1e-4
    assert g.set_params(n_components=4) is g and g.n_components == 4
    with pytest.raises(ValueError, match="invalid parameter 'bogus'"):
        g.set_params(bogus=1)
    assert "covariance_type='tied'" in repr(g)


def test_sample_shapes_and_distribution():
    """Samples have the fitted means, covariances and weights (20000 draws), and the same
    random_state gives the same draws.
    """
    g = fastgmm.fit(X, 2, random_state=0)
    S, y = g.sample(20000, random_state=1)
    assert S.shape == (20000, 2) and y.shape == (20000,)
    for j in range(2):
        np.testing.assert_allclose(S[y == j].mean(axis=0), g.means_[j], atol=0.05)
        np.testing.assert_allclose(np.cov(S[y == j].T), g.covariances_[j], atol=0.06)
    np.testing.assert_allclose(np.bincount(y) / 20000, g.weights_, atol=0.02)
    a, _ = g.sample(5, random_state=3)
    b, _ = g.sample(5, random_state=3)
    np.testing.assert_array_equal(a, b)


def test_bic_aic_definitions():
    """BIC and AIC are -2 log L + p log n and -2 log L + 2 p with p counted by hand."""
    g = fastgmm.fit(X, 2, random_state=0)
    n, d = X.shape
    p = 2 * d * (d + 1) / 2 + 2 * d + 1
    ll = g.score_samples(X).sum()
    assert g.bic(X) == pytest.approx(-2 * ll + p * np.log(n), rel=1e-12)
    assert g.aic(X) == pytest.approx(-2 * ll + 2 * p, rel=1e-12)


def test_dataframe_feature_names():
    """A DataFrame's column names are kept, predictions equal those of the bare array, and other
    names are refused.
    """
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=["a", "b"])
    g = fastgmm.fit(df, 2, random_state=0)
    assert list(g.feature_names_in_) == ["a", "b"]
    np.testing.assert_array_equal(g.predict(df), g.predict(X))
    with pytest.raises(ValueError, match="feature names"):
        g.predict(df.rename(columns={"a": "z"}))


def test_scikit_learn_clone_pipeline_gridsearch():
    """The estimator clones, runs in a Pipeline and is tuned by GridSearchCV like a scikit-learn
    estimator.
    """
    sk_base = pytest.importorskip("sklearn.base")
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    g = fastgmm.GaussianMixture(2, covariance_type="diag", random_state=0)
    c = sk_base.clone(g)
    assert c.get_params() == g.get_params() and not hasattr(c, "means_")
    pipe = make_pipeline(StandardScaler(), fastgmm.GaussianMixture(2, random_state=0))
    labels = pipe.fit(X).predict(X)
    assert set(labels) == {0, 1}
    assert np.isfinite(pipe.score(X))
    search = GridSearchCV(fastgmm.GaussianMixture(random_state=0),
                          {"n_components": [1, 2, 3]}, cv=3)
    search.fit(X)
    assert search.best_params_["n_components"] in (2, 3)


def test_inputs_are_not_modified():
    """Fitting and predicting leave X, the weights and means_init untouched."""
    Xc = X.copy()
    w = np.ones(len(X))
    wc = w.copy()
    means = np.array([[0.0, 0.0], [6.0, 0.0]])
    mc = means.copy()
    g = fastgmm.GaussianMixture(2, means_init=means, random_state=0).fit(X, sample_weight=w)
    g.predict_proba(X)
    np.testing.assert_array_equal(X, Xc)
    np.testing.assert_array_equal(w, wc)
    np.testing.assert_array_equal(means, mc)


def test_import_loads_neither_numba_nor_scipy_until_needed():
    """``import fastgmm`` stays cheap: Numba (0.4 s) and scipy load on first use."""
    import subprocess
    import sys

    code = ("import sys, fastgmm\n"
            "print(sorted(m for m in ('numba', 'scipy', 'fastgmm._kernels') if m in sys.modules))\n"
            "import numpy as np\n"
            "fastgmm.fit(np.random.default_rng(0).normal(size=(200, 2)), 2, random_state=0)\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "True"


# ---------------------------------------------------------------------------
# Numerical edge cases: offsets, separation, tiny shapes, extreme scales
# ---------------------------------------------------------------------------


def _ref_cov(X, w, ctype, reg):
    """Weighted biased covariance of one component, in the estimator's layout (k=1)."""
    cov = np.cov(X.T, aweights=w, bias=True).reshape(X.shape[1], X.shape[1])
    d = X.shape[1]
    return {"full": (cov + reg * np.eye(d))[None], "tied": cov + reg * np.eye(d),
            "diag": (np.diag(cov) + reg)[None], "spherical": np.array([np.diag(cov).mean()
                                                                          + reg])}[ctype]


def _normwise(a, b):
    return np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max()


# ---------------------------------------------------------------------------
# Data far from the origin
# ---------------------------------------------------------------------------

def _two_clusters(n, offset, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 2)) @ np.array([[1.0, 0.3], [0.0, 0.8]])
    b = rng.normal(size=(n, 2)) * [0.7, 1.2] + [40.0, -30.0]
    return np.r_[a, b], offset


@pytest.mark.parametrize("dtype, offset, rtol", [(np.float64, 1e8, 1e-6),
                                                 (np.float32, 1e4, 1e-3)])
def test_offset_data_covariances_accurate(covariance_type, dtype, offset, rtol):
    """Two clusters 1e8 (float64) or 1e4 (float32) from the origin get their means and
    covariances to the accuracy the dtype allows, against numpy on exactly centred data.
    """
    Z, _ = _two_clusters(400, offset)
    X = (Z + offset).astype(dtype)
    # Reference from the data actually fitted, centred exactly in float64
    # (X - offset is exact: both are within a factor 2 of each other).
    Xc = X.astype(np.float64) - offset
    n = len(Z) // 2
    reg = 1e-6
    model = fastgmm.GaussianMixture(2, covariance_type=covariance_type, reg_covar=reg,
                                    random_state=0).fit(X)
    assert model.means_.dtype == dtype
    order = np.argsort(model.means_[:, 0])
    parts = [Xc[:n], Xc[n:]]
    means = model.means_.astype(np.float64)[order] - offset
    for j, part in enumerate(parts):
        np.testing.assert_allclose(means[j], part.mean(axis=0), rtol=0,
                                   atol=rtol * part.std())
    full = full_covariances(covariance_type, model.covariances_.astype(np.float64), 2, 2)
    if covariance_type == "tied":
        ref = sum(np.cov(p.T, bias=True) for p in parts) / 2 + reg * np.eye(2)
        assert _normwise(full[0], ref) < rtol
        return
    for j, part in enumerate(parts):
        ref = _ref_cov(part, None, covariance_type, reg)
        ref = full_covariances(covariance_type, ref, 1, 2)[0]
        assert _normwise(full[order[j]], ref) < rtol, (full[order[j]], ref)


def test_extremely_separated_clusters_no_nan_or_inf(covariance_type):
    """Clusters 450 standard deviations apart give finite parameters, and points with log
    densities near -1e5 get scipy's scores and responsibilities.
    """
    rng = np.random.default_rng(1)
    # 450 standard deviations apart: cross log-densities near -1e5.
    X = np.r_[rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + [450.0, 0.0]]
    model = fastgmm.GaussianMixture(2, covariance_type=covariance_type,
                                    random_state=0).fit(X)
    for name in FITTED:
        assert np.isfinite(getattr(model, name)).all()
    assert np.isfinite(model.lower_bounds_).all()
    # Points whose log density is near -1e5 under every component.
    probe = np.array([[225.0, 0.0], [-450.0, 0.0], [225.0, 300.0], [0.0, 0.0]])
    resp, lse = e_step(probe, model.weights_, model.means_, model.covariances_,
                       covariance_type)
    assert lse.min() < -2e4
    proba = model.predict_proba(probe)
    score = model.score_samples(probe)
    assert np.isfinite(proba).all() and np.isfinite(score).all()
    np.testing.assert_allclose(score, lse, rtol=1e-10)
    np.testing.assert_allclose(proba, resp, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


def test_em_from_far_away_start_stays_finite(covariance_type):
    """Every sample has log-probability around -1e6 at the first E-step."""
    rng = np.random.default_rng(2)
    X = np.r_[rng.normal(size=(80, 2)), rng.normal(size=(80, 2)) + [8.0, 0.0]]
    k, d = 2, 2
    means0 = np.array([[1e3, 1e3], [1e3, -1e3]])
    prec = unit_covariances(covariance_type, k, d)
    model = fastgmm.GaussianMixture(k, covariance_type=covariance_type,
                                    weights_init=[0.5, 0.5], means_init=means0,
                                    precisions_init=prec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.DegenerateDataWarning)
        model.fit(X)
    assert model.lower_bounds_[0] < -5e5
    assert np.isfinite(model.lower_bounds_).all()
    for name in FITTED:
        assert np.isfinite(getattr(model, name)).all()


# ---------------------------------------------------------------------------
# Tiny shapes
# ---------------------------------------------------------------------------

def test_one_feature_matches_reference_em(covariance_type):
    """With one feature every covariance type gives numpy/scipy EM's iterates, lower bounds and
    shapes.
    """
    rng = np.random.default_rng(3)
    X = np.r_[rng.normal(size=(60, 1)), rng.normal(size=(40, 1)) * 0.5 + 3.0]
    w0 = np.array([0.5, 0.5])
    m0 = np.array([[-0.5], [2.0]])
    cov0 = unit_covariances(covariance_type, 2, 1)
    reg = 1e-6
    n_iter = 6
    rw, rm, rc, rb = em_iterations(X, w0, m0, cov0, covariance_type, n_iter, reg)
    model = fastgmm.GaussianMixture(2, covariance_type=covariance_type, weights_init=w0,
                                    means_init=m0, precisions_init=1.0 / cov0,
                                    max_iter=n_iter, tol=0.0, reg_covar=reg)
    with pytest.warns(fastgmm.ConvergenceWarning):
        model.fit(X)
    np.testing.assert_allclose(model.weights_, rw, rtol=1e-9)
    np.testing.assert_allclose(model.means_, rm, rtol=1e-9)
    np.testing.assert_allclose(model.covariances_, rc, rtol=1e-9)
    np.testing.assert_allclose(model.lower_bounds_, rb, rtol=1e-10)
    assert model.covariances_.shape == cov0.shape


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_one_component_is_weighted_mean_and_biased_covariance(covariance_type, offset):
    """One component is the weighted mean and biased weighted covariance (numpy), also 1e6 from
    the origin, with scipy's mean log density as score.
    """
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 3)) + offset
    sw = rng.uniform(0.1, 3.0, size=300)
    reg = 1e-4
    model = fastgmm.GaussianMixture(1, covariance_type=covariance_type, reg_covar=reg,
                                    random_state=0).fit(X, sample_weight=sw)
    assert model.weights_.tolist() == [1.0]
    mean = np.average(X, axis=0, weights=sw)
    np.testing.assert_allclose(model.means_[0], mean, rtol=1e-13)
    ref = _ref_cov(X - mean, sw, covariance_type, reg)
    # One-pass statistics about the previous mean: near two-pass accuracy.
    np.testing.assert_allclose(model.covariances_, ref, rtol=1e-9 if offset else 1e-12)
    ll = np.average(multivariate_normal(mean, full_covariances(
        covariance_type, model.covariances_, 1, 3)[0]).logpdf(X), weights=sw)
    assert model.score(X, sample_weight=sw) == pytest.approx(ll, rel=1e-11)


def test_n_samples_equal_n_components(covariance_type):
    """With one sample per component each component sits on its sample with weight 1/3 and only
    reg_covar as spread.
    """
    X = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 5.0]])
    reg = 1e-6
    model = fastgmm.GaussianMixture(3, covariance_type=covariance_type, reg_covar=reg,
                                    random_state=0).fit(X)
    # Each sample is its own component, with only the regularisation as spread.
    order = np.lexsort(model.means_.T[::-1])
    np.testing.assert_allclose(model.means_[order], X[np.lexsort(X.T[::-1])], atol=1e-12)
    np.testing.assert_allclose(model.weights_, 1 / 3, rtol=1e-12)
    full = full_covariances(covariance_type, model.covariances_, 3, 2)
    np.testing.assert_allclose(full, np.broadcast_to(reg * np.eye(2), full.shape),
                               rtol=1e-6, atol=1e-14)
    np.testing.assert_array_equal(np.sort(model.predict(X)), [0, 1, 2])


@pytest.mark.parametrize("scale", [1e150, 1e-150])
@pytest.mark.parametrize("ctype", ["full", "diag"])
def test_values_near_1e150_are_scale_equivariant(scale, ctype):
    """Data scaled by 1e150 or 1e-150 (reg_covar scaled alike) gives the same labels, scaled
    parameters and a lower bound shifted by -d log(scale).
    """
    rng = np.random.default_rng(5)
    Z = np.r_[rng.normal(size=(150, 2)), rng.normal(size=(150, 2)) + [6.0, 0.0]]
    reg = 1e-6
    base = fastgmm.GaussianMixture(2, covariance_type=ctype, reg_covar=reg,
                                   random_state=0).fit(Z)
    big = fastgmm.GaussianMixture(2, covariance_type=ctype, reg_covar=reg * scale ** 2,
                                  random_state=0).fit(Z * scale)
    np.testing.assert_array_equal(big.predict(Z * scale), base.predict(Z))
    np.testing.assert_allclose(big.means_ / scale, base.means_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(big.covariances_ / scale ** 2, base.covariances_, rtol=1e-9)
    np.testing.assert_allclose(big.weights_, base.weights_, rtol=1e-9)
    # A density scales by scale**-d.
    assert big.lower_bound_ == pytest.approx(base.lower_bound_ - 2 * np.log(scale),
                                             rel=1e-9)
    assert np.isfinite(big.score_samples(Z * scale)).all()


def test_fit_from_means_far_from_the_data(covariance_type):
    """Initial means 1e9 away from every row: the first lower bound is the exact,
    finite mean log-likelihood of those parameters (scipy), and EM goes on.
    """
    X = TWO_BLOBS
    k, d = 2, X.shape[1]
    means = np.array([[1e9, 0.0], [-1e9, 0.0]])
    precisions = unit_covariances(covariance_type, k, d)  # identity: its own inverse
    init = dict(weights_init=np.full(k, 0.5), means_init=means, precisions_init=precisions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = fastgmm.GaussianMixture(k, covariance_type=covariance_type, max_iter=5,
                                    random_state=0, **init).fit(X)
    dens = np.stack([multivariate_normal(mu, np.eye(d)).logpdf(X) + np.log(0.5)
                     for mu in means], axis=1)
    exact = float(np.mean(np.logaddexp(dens[:, 0], dens[:, 1])))
    assert np.isfinite(m.lower_bounds_).all() and len(m.lower_bounds_) >= 2
    assert m.lower_bounds_[0] == pytest.approx(exact, rel=1e-12)
