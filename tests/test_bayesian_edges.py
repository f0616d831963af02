"""The Bayesian mixture on duplicated points (issue #28, item 6)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastgmm

TWO_POINTS = np.repeat(np.array([[0.0, 0.0], [1.0, 2.0]]), 50, axis=0)


def _sorted(weights, *arrays):
    order = np.argsort(-np.asarray(weights))
    return [np.asarray(weights)[order]] + [np.asarray(a)[order] for a in arrays]


@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_two_points_repeated_fit_with_positive_definite_covariances(init):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = fastgmm.BayesianGaussianMixture(3, random_state=0, init_params=init).fit(
            TWO_POINTS)
    assert np.isfinite(model.lower_bound_)
    for cov in model.covariances_:
        assert np.linalg.eigvalsh(cov)[0] > 0
    # Nearly all the weight on the two points, each its own component.
    weights, means = _sorted(model.weights_, model.means_)
    if init != "random":   # random responsibilities may start in one component
        assert weights[:2].sum() > 0.99
        np.testing.assert_allclose(sorted(map(tuple, np.round(means[:2], 2))),
                                   [(0.0, 0.0), (1.0, 2.0)], atol=0.02)


def test_two_points_repeated_agree_with_scikit_learn():
    sk_mixture = pytest.importorskip("sklearn.mixture")
    kw = dict(covariance_type="full", random_state=0, init_params="k-means++", tol=1e-8,
              max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = fastgmm.BayesianGaussianMixture(3, **kw).fit(TWO_POINTS)
        ref = sk_mixture.BayesianGaussianMixture(n_components=3, **kw).fit(TWO_POINTS)
    # Both initialisations split the two points between two components and
    # leave the third empty, so the fits are comparable component by component.
    w, m, c = _sorted(ours.weights_, ours.means_, ours.covariances_)
    w_ref, m_ref, c_ref = _sorted(ref.weights_, ref.means_, ref.covariances_)
    np.testing.assert_allclose(w, w_ref, atol=1e-3)
    np.testing.assert_allclose(m[:2], m_ref[:2], atol=1e-3)
    np.testing.assert_allclose(c[:2], c_ref[:2], atol=1e-5)


def test_a_singular_data_covariance_prior_gets_reg_covar_and_a_regular_one_does_not():
    model = fastgmm.BayesianGaussianMixture(2, random_state=0, reg_covar=1e-4).fit(TWO_POINTS)
    data_cov = np.cov(TWO_POINTS.T)
    assert np.linalg.matrix_rank(data_cov) == 1
    np.testing.assert_allclose(model.covariance_prior_, data_cov + 1e-4 * np.eye(2),
                               rtol=1e-12, atol=1e-15)
    X = np.random.default_rng(0).normal(size=(200, 2))
    regular = fastgmm.BayesianGaussianMixture(2, random_state=0, reg_covar=1e-4).fit(X)
    np.testing.assert_allclose(regular.covariance_prior_, np.cov(X.T), rtol=1e-12)


def test_a_constant_feature_with_diagonal_covariances_fits():
    X = np.column_stack([np.repeat([0.0, 1.0], 50), np.full(100, 3.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = fastgmm.BayesianGaussianMixture(3, covariance_type="diag",
                                                random_state=0).fit(X)
    assert (model.covariances_ > 0).all()
    assert model.covariance_prior_[1] == pytest.approx(model.reg_covar)
