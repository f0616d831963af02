"""fastgmm._params: parameter shapes and counts, precision factors, log normalisers.

References: hand counts and shapes, numpy's inverse and eigenvalues, scipy's
densities.
"""

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from naive import full_covariances, n_parameters, precisions, random_params
from scipy.stats import multivariate_normal

from fastgmm import DegenerateCovarianceError
from fastgmm._params import (
    GaussianParams,
    covariance_shape,
    precisions_cholesky_from_covariances,
)
from fastgmm._params import n_parameters as fastgmm_n_parameters


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_shapes_and_parameter_counts(ctype):
    """Covariance shapes are those of scikit-learn's attributes, and the free
    parameters are k - 1 weights, k d means and the covariances' own count.
    """
    for k, d in [(1, 1), (3, 2), (5, 7)]:
        shape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[ctype]
        assert covariance_shape(ctype, k, d) == shape
        assert fastgmm_n_parameters(ctype, k, d) == n_parameters(ctype, k, d)
        w, means, cov = random_params(ctype, k, d, seed=k + d)
        params = GaussianParams.from_covariances(ctype, w, means, cov)
        assert params.n_parameters() == n_parameters(ctype, k, d)
        assert (params.n_components, params.n_features) == (k, d)
        assert params.covariances.shape == params.precisions_cholesky.shape == shape


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_precision_factors_invert_the_covariances(ctype):
    """From covariances: the factor ``U`` is upper triangular (full, tied) and
    ``U U^T`` is numpy's inverse; diag and spherical factors are ``1 / sqrt(var)``.
    """
    k, d = 4, 3
    w, means, cov = random_params(ctype, k, d, seed=1)
    params = GaussianParams.from_covariances(ctype, w, means, cov)
    pc = params.precisions_cholesky
    if ctype in ("full", "tied"):
        for u in (pc if ctype == "full" else pc[None]):
            np.testing.assert_array_equal(u, np.triu(u))
    else:
        np.testing.assert_allclose(pc, 1.0 / np.sqrt(cov), rtol=1e-15)
    np.testing.assert_allclose(params.precisions, precisions(ctype, cov), rtol=1e-10)
    np.testing.assert_array_equal(
        precisions_cholesky_from_covariances(cov, ctype), pc)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_parameters_from_precisions_invert_them(ctype):
    """From precisions (``precisions_init``): covariances are numpy's inverse of the
    precisions, ``U U^T`` gives the precisions back, and building from those
    covariances gives the same precisions.
    """
    k, d = 3, 4
    w, means, cov = random_params(ctype, k, d, seed=2)
    prec = precisions(ctype, cov)
    params = GaussianParams.from_precisions(ctype, w, means, prec)
    np.testing.assert_allclose(params.covariances, cov, rtol=1e-10)
    np.testing.assert_allclose(params.precisions, prec, rtol=1e-10)
    again = GaussianParams.from_covariances(ctype, w, means, params.covariances)
    np.testing.assert_allclose(again.precisions_cholesky, params.precisions_cholesky,
                               rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_log_norm_is_the_log_density_at_the_mean(ctype):
    """``log_norm[k] = log w_k + log N(mu_k | mu_k, Sigma_k)`` (scipy), and
    ``log_det_chol`` is minus half the log-determinant of each covariance (numpy).
    """
    k, d = 3, 3
    w, means, cov = random_params(ctype, k, d, seed=3)
    params = GaussianParams.from_covariances(ctype, w, means, cov)
    full = full_covariances(ctype, cov, k, d)
    ref = [np.log(w[j]) + multivariate_normal(means[j], full[j]).logpdf(means[j])
           for j in range(k)]
    np.testing.assert_allclose(params.log_norm(), ref, rtol=1e-12)
    np.testing.assert_allclose(params.log_det_chol(),
                               [-0.5 * np.linalg.slogdet(c)[1] for c in full], rtol=1e-12)


def test_copy_is_independent():
    """A copy shares no array with its original."""
    w, means, cov = random_params("full", 2, 2, seed=4)
    params = GaussianParams.from_covariances("full", w, means, cov)
    twin = params.copy()
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        getattr(twin, name)[...] = 0.0
        assert not np.shares_memory(getattr(twin, name), getattr(params, name))
    np.testing.assert_array_equal(params.means, means)


@pytest.mark.parametrize("ctype, bad, component", [
    ("full", np.stack([np.eye(2), [[1.0, 2.0], [2.0, 1.0]]]), 1),
    ("full", np.stack([[[np.nan, 0.0], [0.0, 1.0]], np.eye(2)]), 0),
    ("tied", np.array([[1.0, 0.0], [0.0, 0.0]]), None),
    ("diag", np.array([[1.0, 1.0], [1.0, -1e-3]]), 1),
    ("spherical", np.array([1.0, np.inf]), 1),
])
def test_non_positive_definite_covariances_name_the_component(ctype, bad, component):
    """A covariance that is not positive definite (or not finite) cannot be
    factorised: the error says which component (or the tied covariance) failed.
    """
    with pytest.raises(DegenerateCovarianceError, match="ill-defined empirical covariance") \
            as info:
        precisions_cholesky_from_covariances(bad, ctype)
    assert info.value.component == component
    where = "the tied covariance" if ctype == "tied" else f"component {component}"
    assert where in str(info.value)
