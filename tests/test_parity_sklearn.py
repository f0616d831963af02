"""Same iterates as scikit-learn (and as plain scipy EM) from the same start."""

import warnings

import numpy as np
import pytest
from naive import em_iterations, make_blobs, precisions

import fastgmm

sklearn_mixture = pytest.importorskip("sklearn.mixture")

CENTERS = [(0.0, 0.0, 0.0), (4.0, 4.0, 0.0), (0.0, 5.0, 5.0)]


def _start(covariance_type, X, k=3, seed=0):
    """A deliberately rough initial model: perturbed means, unit covariances."""
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    means = np.asarray(CENTERS)[:k, :d] + rng.normal(scale=0.7, size=(k, d))
    weights = np.full(k, 1.0 / k)
    cov = {"full": np.stack([np.eye(d) * (1 + j) for j in range(k)]),
           "tied": np.eye(d) * 1.5,
           "diag": np.ones((k, d)) * np.arange(1, k + 1)[:, None],
           "spherical": np.arange(1.0, k + 1)}[covariance_type]
    return weights, means, cov


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def test_same_iterates_as_scikit_learn(covariance_type):
    """From the same start, 15 iterations give scikit-learn's parameters, lower bounds, scores,
    responsibilities, BIC and AIC.
    """
    X = make_blobs(400, CENTERS, [1.0, 0.7, 1.3], seed=1)
    w0, m0, c0 = _start(covariance_type, X)
    kw = dict(n_components=3, covariance_type=covariance_type, tol=0, max_iter=15,
              weights_init=w0, means_init=m0, precisions_init=precisions(covariance_type, c0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both warn: tol=0 never converges
        ref = sklearn_mixture.GaussianMixture(**kw).fit(X)
        ours = fastgmm.GaussianMixture(**kw).fit(X)
    assert _rel(ours.weights_, ref.weights_) < 1e-8
    assert _rel(ours.means_, ref.means_) < 1e-8
    assert _rel(ours.covariances_, ref.covariances_) < 1e-8
    assert _rel(ours.precisions_, ref.precisions_) < 1e-8
    assert len(ours.lower_bounds_) == len(ref.lower_bounds_) == 15
    assert _rel(ours.lower_bounds_, ref.lower_bounds_) < 1e-8
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-8)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-8)
    assert ours.bic(X) == pytest.approx(ref.bic(X), rel=1e-10)
    assert ours.aic(X) == pytest.approx(ref.aic(X), rel=1e-10)


def test_weighted_em_matches_plain_scipy_em(covariance_type):
    """Weighted EM gives the iterates and lower bounds of plain numpy/scipy weighted EM."""
    X = make_blobs(150, CENTERS, [1.0, 0.7, 1.3], seed=2)
    sw = np.random.default_rng(3).uniform(0.1, 3.0, size=X.shape[0])
    w0, m0, c0 = _start(covariance_type, X, seed=4)
    ref_w, ref_m, ref_c, ref_b = em_iterations(X, w0, m0, c0, covariance_type, 8, 1e-6, sw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        ours = fastgmm.GaussianMixture(
            3, covariance_type=covariance_type, tol=0, max_iter=8, weights_init=w0,
            means_init=m0, precisions_init=precisions(covariance_type, c0)).fit(
                X, sample_weight=sw)
    assert _rel(ours.weights_, ref_w) < 1e-8
    assert _rel(ours.means_, ref_m) < 1e-8
    assert _rel(ours.covariances_, ref_c) < 1e-8
    assert _rel(ours.lower_bounds_, ref_b) < 1e-8


@pytest.mark.parametrize("path", ["always", "never"])
@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_same_iterates_as_scikit_learn_on_either_e_step_path(monkeypatch, covariance_type,
                                                               path):
    """Overlapping blobs, 15 iterations from the same start: scikit-learn's iterates to 1e-8
    whether the E-step takes the dense (matrix-product) path or the listed one.
    """
    from fastgmm import _config

    monkeypatch.setattr(_config, "DENSE_PATH", path)
    # Centres 1.5 apart with unit spreads: every row keeps several components.
    X = make_blobs(400, [(0.0, 0.0, 0.0), (1.5, 0.0, 0.0), (0.0, 1.5, 0.0)], [1.0, 0.8, 1.2],
                   seed=2)
    w0, m0, c0 = _start(covariance_type, X)
    kw = dict(n_components=3, covariance_type=covariance_type, tol=0, max_iter=15,
              weights_init=w0, means_init=m0 * 0.3, precisions_init=precisions(covariance_type,
                                                                               c0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sklearn_mixture.GaussianMixture(**kw).fit(X)
        ours = fastgmm.GaussianMixture(**kw).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_", "lower_bounds_"):
        assert _rel(getattr(ours, name), getattr(ref, name)) < 1e-8, name
