"""The scikit-learn estimator contract, fastgmm.fit, threads, validation."""

import numba
import numpy as np
import pytest
from naive import make_blobs

import fastgmm

X = make_blobs(120, [(0.0, 0.0), (6.0, 0.0)], [1.0, 1.0], seed=0)


def test_fit_front_door_returns_fitted_estimator():
    g = fastgmm.fit(X, n_components=2, covariance_type="diag", random_state=0)
    assert isinstance(g, fastgmm.GaussianMixture)
    assert g.n_components == 2 and g.covariance_type == "diag"
    assert g.converged_ and g.n_iter_ >= 1 and g.n_features_in_ == 2
    assert len(g.lower_bounds_) == g.n_iter_ and g.lower_bound_ == g.lower_bounds_[-1]


def test_get_set_params_and_repr():
    g = fastgmm.GaussianMixture(3, covariance_type="tied", tol=1e-4)
    p = g.get_params()
    assert p["n_components"] == 3 and p["covariance_type"] == "tied" and p["tol"] == 1e-4
    assert g.set_params(n_components=4) is g and g.n_components == 4
    with pytest.raises(ValueError, match="invalid parameter 'bogus'"):
        g.set_params(bogus=1)
    assert "covariance_type='tied'" in repr(g)


def test_sample_shapes_and_distribution():
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
    g = fastgmm.fit(X, 2, random_state=0)
    n, d = X.shape
    p = 2 * d * (d + 1) / 2 + 2 * d + 1
    ll = g.score_samples(X).sum()
    assert g.bic(X) == pytest.approx(-2 * ll + p * np.log(n), rel=1e-12)
    assert g.aic(X) == pytest.approx(-2 * ll + 2 * p, rel=1e-12)


def test_n_threads_is_restored():
    before = numba.get_num_threads()
    g = fastgmm.GaussianMixture(2, n_threads=1, random_state=0).fit(X)
    assert numba.get_num_threads() == before
    g.predict(X)
    assert numba.get_num_threads() == before


def test_dataframe_feature_names():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=["a", "b"])
    g = fastgmm.fit(df, 2, random_state=0)
    assert list(g.feature_names_in_) == ["a", "b"]
    np.testing.assert_array_equal(g.predict(df), g.predict(X))
    with pytest.raises(ValueError, match="feature names"):
        g.predict(df.rename(columns={"a": "z"}))


def test_scikit_learn_clone_pipeline_gridsearch():
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


@pytest.mark.parametrize("bad, exc, match", [
    (np.array([[1.0, np.nan]] * 5), ValueError, "NaN"),
    (np.array([[1.0, np.inf]] * 5), ValueError, "infinity"),
    (np.arange(5.0), ValueError, "2-dimensional"),
    (np.zeros((2, 2, 2)), ValueError, "2-dimensional"),
    (np.zeros((0, 2)), ValueError, "0 sample"),
    (np.zeros((5, 0)), ValueError, "0 features"),
    (np.array([["a", "b"]] * 5), TypeError, "non-numeric"),
    (np.ones((5, 2), dtype=complex), ValueError, "complex"),
])
def test_bad_X_raises_clear_errors(bad, exc, match):
    with pytest.raises(exc, match=match):
        fastgmm.GaussianMixture(1).fit(bad)


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="n_components"):
        fastgmm.GaussianMixture(5).fit(X[:3])
    with pytest.raises(fastgmm.NotFittedError, match="not fitted"):
        fastgmm.GaussianMixture(2).predict(X)
    g = fastgmm.fit(X, 2, random_state=0)
    with pytest.raises(ValueError, match="3 features.*2 features"):
        g.predict(np.ones((4, 3)))
    with pytest.raises(ValueError, match="covariance_type"):
        fastgmm.GaussianMixture(2, covariance_type="banana").fit(X)
    with pytest.raises(ValueError, match="n_components"):
        fastgmm.GaussianMixture(0).fit(X)
    with pytest.raises(TypeError, match="n_init"):
        fastgmm.GaussianMixture(2, n_init=1.5).fit(X)
    with pytest.raises(ValueError, match="reg_covar"):
        fastgmm.GaussianMixture(2, reg_covar=-1).fit(X)
    with pytest.raises(ValueError, match="init_params"):
        fastgmm.GaussianMixture(2, init_params="nope").fit(X)
    with pytest.raises(ValueError, match="means_init has shape"):
        fastgmm.GaussianMixture(2, means_init=np.zeros((3, 2))).fit(X)
    with pytest.raises(ValueError, match="weights_init must sum to 1"):
        fastgmm.GaussianMixture(2, weights_init=[0.2, 0.2]).fit(X)
    with pytest.raises(ValueError, match="positive definite"):
        fastgmm.GaussianMixture(2, precisions_init=np.stack([np.eye(2), -np.eye(2)])).fit(X)
    with pytest.raises(ValueError, match="sample_weight has 3 entries"):
        fastgmm.GaussianMixture(2).fit(X, sample_weight=[1, 2, 3])
    with pytest.raises(ValueError, match="negative"):
        fastgmm.GaussianMixture(2).fit(X, sample_weight=-np.ones(len(X)))


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
