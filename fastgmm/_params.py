"""Mixture parameters, their shapes, and the linear algebra that factorises them.

:class:`GaussianParams` is what the M-step produces and the kernels consume.
The covariance shape and parameter-count rules of the four covariance types
live here once; every other module asks this one.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ._exceptions import DegenerateCovarianceError

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

_LOG_2PI = math.log(2.0 * math.pi)


def check_covariance_type(covariance_type, name: str = "covariance_type") -> str:
    """Return ``covariance_type`` if it is one of :data:`COVARIANCE_TYPES`, else raise."""
    if not isinstance(covariance_type, str) or covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"{name} must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    return covariance_type


def covariance_shape(covariance_type: str, n_components: int, n_features: int) -> tuple:
    """Shape of ``covariances_``, ``precisions_`` and ``precisions_cholesky_``."""
    k, d = n_components, n_features
    return {"full": (k, d, d), "tied": (d, d), "diag": (k, d),
            "spherical": (k,)}[covariance_type]


def n_parameters(covariance_type: str, n_components: int, n_features: int) -> int:
    """Free parameters of a mixture (weights, means, covariances), as BIC and AIC count them."""
    k, d = n_components, n_features
    cov = {"full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2,
           "diag": k * d, "spherical": k}[covariance_type]
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
        precisions = np.asarray(precisions, dtype=np.float64)
        if covariance_type in ("full", "tied"):
            mats = precisions if covariance_type == "full" else precisions[None]
            prec_chol = np.empty_like(mats)
            cov = np.empty_like(mats)
            for k, p in enumerate(mats):
                try:
                    prec_chol[k] = _upper_factor(p)
                except (_linalg().LinAlgError, ValueError):
                    where = "" if covariance_type == "tied" else f" (component {k})"
                    raise DegenerateCovarianceError(
                        f"precisions_init is not symmetric positive definite{where}",
                        None if covariance_type == "tied" else k) from None
                inv_u = _linalg().solve_triangular(prec_chol[k], np.eye(p.shape[0]),
                                                   lower=False)
                cov[k] = inv_u.T @ inv_u
            if covariance_type == "tied":
                prec_chol, cov = prec_chol[0], cov[0]
        else:
            if np.any(precisions <= 0):
                raise DegenerateCovarianceError("precisions_init must be positive")
            prec_chol = np.sqrt(precisions)
            cov = 1.0 / precisions
        return cls(covariance_type, np.asarray(weights, dtype=np.float64),
                   np.asarray(means, dtype=np.float64), cov, prec_chol)

    @property
    def precisions(self) -> np.ndarray:
        """Precision matrices (or vectors) ``U U^T``."""
        pc = self.precisions_cholesky
        if self.covariance_type == "full":
            return np.einsum("kij,klj->kil", pc, pc)
        if self.covariance_type == "tied":
            return pc @ pc.T
        return pc ** 2

    def log_det_chol(self) -> np.ndarray:
        """``log det(prec_chol_k)`` per component, shape (k,)."""
        pc = self.precisions_cholesky
        d = self.n_features
        if self.covariance_type == "full":
            return np.log(np.diagonal(pc, axis1=1, axis2=2)).sum(axis=1)
        if self.covariance_type == "tied":
            return np.full(self.n_components, np.log(np.diag(pc)).sum())
        if self.covariance_type == "diag":
            return np.log(pc).sum(axis=1)
        return d * np.log(pc)

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


def _upper_factor(p: np.ndarray) -> np.ndarray:
    """Upper-triangular ``U`` with ``U @ U.T == p`` (``p`` SPD)."""
    # Reverse rows and columns, take the lower Cholesky factor, reverse back:
    # J L J is upper triangular and (J L J)(J L J)^T = J (J p J) J = p.
    rev = p[::-1, ::-1]
    lower = _linalg().cholesky(rev, lower=True)
    return np.ascontiguousarray(lower[::-1, ::-1])


def _linalg():
    """``scipy.linalg``, imported on first use so that ``import fastgmm`` stays cheap."""
    from scipy import linalg

    return linalg


def load_lapack() -> None:
    """Load scipy's LAPACK (and the BLAS behind it) into the process."""
    _lapack()


@functools.cache
def _lapack():
    """Double-precision LAPACK ``potrf`` and ``trtrs``."""
    return _linalg().get_lapack_funcs(("potrf", "trtrs"), (np.empty((1, 1)),))


def precisions_cholesky_from_covariances(covariances: np.ndarray,
                                         covariance_type: str) -> np.ndarray:
    """Upper-triangular precision factors from covariances (scikit-learn's).

    Raises
    ------
    DegenerateCovarianceError
        When a covariance is not symmetric positive definite.
    """
    cov = np.asarray(covariances, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        mats = cov if covariance_type == "full" else cov[None]
        d = mats.shape[-1]
        out = np.empty_like(mats)
        eye = np.eye(d)
        # The LAPACK routines behind scipy.linalg.cholesky and solve_triangular,
        # called directly with the same arguments (same bits), because their
        # Python wrappers cost more than the factorisations at small d and
        # this runs at every M-step.
        finite = np.isfinite(mats).all(axis=(1, 2))
        potrf, trtrs = _lapack()
        for k, c in enumerate(mats):
            info = 1
            if finite[k]:
                lower, info = potrf(c, lower=1, overwrite_a=0, clean=1)
            if info != 0:
                where = "the tied covariance" if covariance_type == "tied" else f"component {k}"
                raise DegenerateCovarianceError(
                    f"ill-defined empirical covariance for {where}: the matrix is not "
                    "positive definite (collapsed component or too few distinct points). "
                    "Increase reg_covar, decrease n_components, or scale the data.",
                    None if covariance_type == "tied" else k)
            inv, info = trtrs(lower, eye, overwrite_b=0, lower=1, trans=0, unitdiag=0)
            if info != 0:  # unreachable after a successful potrf; kept as a guard
                raise _linalg().LinAlgError(f"triangular solve failed (info={info})")
            out[k] = inv.T
        return out if covariance_type == "full" else out[0]
    bad = ~(cov > 0) | ~np.isfinite(cov)
    if np.any(bad):
        k = int(np.argwhere(bad)[0][0])
        raise DegenerateCovarianceError(
            f"ill-defined empirical covariance for component {k}: a variance is zero, "
            "negative or not finite. Increase reg_covar, decrease n_components, or "
            "scale the data.", k)
    return 1.0 / np.sqrt(cov)
