"""Mixture parameters and the family rules they follow.

:class:`GaussianParams` is what the M-step produces and the kernels consume.
Shapes, parameter counts and factorisations are the covariance family's
(``fastgmm._covariance``); this module re-exports the few names other
modules import from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._covariance import (
    COVARIANCE_TYPES,
    CovarianceFamily,
    check_covariance_type,
    family,
    load_lapack,
)

__all__ = ["COVARIANCE_TYPES", "GaussianParams", "check_covariance_type", "covariance_shape",
           "load_lapack", "n_parameters", "precisions_cholesky_from_covariances"]

_LOG_2PI = math.log(2.0 * math.pi)


def covariance_shape(covariance_type: str, n_components: int, n_features: int) -> tuple:
    """Shape of ``covariances_``, ``precisions_`` and ``precisions_cholesky_``."""
    return family(covariance_type).cov_shape(n_components, n_features)


def n_parameters(covariance_type: str, n_components: int, n_features: int) -> int:
    """Free parameters of a mixture (weights, means, covariances), as BIC and AIC count them."""
    k, d = n_components, n_features
    cov = family(covariance_type).n_cov_parameters(k, d)
    return int(cov + k * d + k - 1)


@dataclass
class GaussianParams:
    """Parameters of a Gaussian mixture, always float64.

    Attributes
    ----------
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray
        ``(k, d, d)`` full, ``(d, d)`` tied, ``(k, d)`` diag, ``(k,)`` spherical.
    precisions_cholesky : ndarray
        Same shapes; upper-triangular factors ``U`` with precision ``U U^T``
        (full, tied), or ``1 / sqrt(variance)`` (diag, spherical).
    """

    covariance_type: str
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @property
    def family(self) -> CovarianceFamily:
        """The covariance family (``fastgmm._covariance``) of ``covariance_type``."""
        return family(self.covariance_type)

    @classmethod
    def from_covariances(cls, covariance_type, weights, means, covariances) -> GaussianParams:
        """Build parameters, factorising the covariances."""
        prec_chol = precisions_cholesky_from_covariances(covariances, covariance_type)
        return cls(covariance_type, np.asarray(weights, dtype=np.float64),
                   np.asarray(means, dtype=np.float64),
                   np.asarray(covariances, dtype=np.float64), prec_chol)

    @classmethod
    def from_precisions(cls, covariance_type, weights, means, precisions) -> GaussianParams:
        """Build parameters from precision matrices (``precisions_init``)."""
        prec_chol, cov = family(covariance_type).from_precisions(precisions)
        return cls(covariance_type, np.asarray(weights, dtype=np.float64),
                   np.asarray(means, dtype=np.float64), cov, prec_chol)

    @property
    def precisions(self) -> np.ndarray:
        """Precision matrices (or vectors) ``U U^T``."""
        return self.family.precisions(self.precisions_cholesky)

    def log_det_chol(self) -> np.ndarray:
        """``log det(prec_chol_k)`` per component, shape (k,)."""
        return self.family.log_det_chol(self.precisions_cholesky, self.n_components,
                                        self.n_features)

    def log_norm(self) -> np.ndarray:
        """``log w_k + log det(prec_chol_k) - d/2 log(2 pi)``, shape (k,)."""
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights)
        return log_w + self.log_det_chol() - 0.5 * self.n_features * _LOG_2PI

    def n_parameters(self) -> int:
        """Number of free parameters (as used by BIC and AIC)."""
        return n_parameters(self.covariance_type, self.n_components, self.n_features)

    def copy(self) -> GaussianParams:
        return GaussianParams(self.covariance_type, self.weights.copy(), self.means.copy(),
                              self.covariances.copy(), self.precisions_cholesky.copy())


def precisions_cholesky_from_covariances(covariances: np.ndarray,
                                         covariance_type: str) -> np.ndarray:
    """Upper-triangular precision factors from covariances (scikit-learn's).

    Raises
    ------
    DegenerateCovarianceError
        When a covariance is not symmetric positive definite.
    """
    return family(covariance_type).precisions_cholesky(covariances)
