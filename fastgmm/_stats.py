"""Sufficient statistics and the M-step (numpy only).

An EM iteration is ``stats = sum over blocks of E-step(block, params)``
followed by ``params = stats.m_step(reg_covar)``.  :class:`SuffStats` is the
small, mergeable value in between: blocks of rows, files, or Dask partitions
each give one, and adding them gives the statistics of the union.  The
kernels that compute them are reached through :mod:`fastgmm._compute`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._covariance import family
from ._params import GaussianParams

#: Added to every component's weight, as scikit-learn does, so that an empty
#: component divides by a tiny number instead of zero.
NK_EPS = 10.0 * np.finfo(np.float64).eps


@dataclass
class SuffStats:
    """Sufficient statistics of a weighted Gaussian mixture E-step.

    For component ``k`` with shift ``c_k`` and responsibilities ``r_ik``:
    ``nk[k] = sum_i w_i r_ik``, ``t[k] = sum_i w_i r_ik (x_i - c_k)`` and a
    second moment ``s`` about the shift: ``(k, d, d)`` for full, the
    per-feature diagonal ``(k, d)`` for diag and spherical (for spherical
    only its sum over features is defined: the dense path accumulates that
    sum alone and shares it out evenly), and for tied the
    responsibility-free scatter ``sum_i w_i (x_i - c)(x_i - c)^T`` ``(d, d)``
    about one common shift ``c`` (shape ``(d,)``).

    Statistics computed with the same parameters (hence the same shift) add
    up: ``stats_a + stats_b`` are the statistics of the union of the two
    blocks of rows.  :meth:`m_step` turns them into new parameters.

    Attributes
    ----------
    covariance_type : str
    shift : ndarray, (k, d) or (d,) for tied
    nk, t, s : ndarray
    log_likelihood : float
        ``sum_i w_i log p(x_i)`` under the parameters that produced the stats
        (``-inf`` when a row of positive weight has zero density).
    weight : float
        ``sum_i w_i``.
    n_samples : int
        Number of rows.
    """

    covariance_type: str
    shift: np.ndarray
    nk: np.ndarray
    t: np.ndarray
    s: np.ndarray
    log_likelihood: float = 0.0
    weight: float = 0.0
    n_samples: int = 0

    @property
    def mean_log_likelihood(self) -> float:
        """Weighted mean log-likelihood per sample (the EM lower bound)."""
        return self.log_likelihood / self.weight if self.weight > 0 else -np.inf

    def merge(self, other: SuffStats) -> SuffStats:
        """Statistics of the union of the two blocks (same parameters)."""
        if not isinstance(other, SuffStats):
            return NotImplemented
        if other.covariance_type != self.covariance_type:
            raise ValueError("cannot merge statistics of different covariance types: "
                             f"{self.covariance_type!r} and {other.covariance_type!r}")
        if other.s.shape != self.s.shape or other.t.shape != self.t.shape:
            raise ValueError("cannot merge statistics of different shapes")
        if not np.array_equal(other.shift, self.shift):
            raise ValueError("cannot merge statistics computed with different parameters "
                             "(their shifts differ)")
        return SuffStats(self.covariance_type, self.shift, self.nk + other.nk,
                         self.t + other.t, self.s + other.s,
                         self.log_likelihood + other.log_likelihood,
                         self.weight + other.weight, self.n_samples + other.n_samples)

    __add__ = merge

    def __radd__(self, other):
        # Lets ``sum(list_of_stats)`` work (it starts from 0).
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    def scale(self, factor: float) -> SuffStats:
        """Statistics multiplied by ``factor`` (used by online EM)."""
        return SuffStats(self.covariance_type, self.shift, self.nk * factor,
                         self.t * factor, self.s * factor, self.log_likelihood * factor,
                         self.weight * factor, self.n_samples)

    def recenter(self, shift) -> SuffStats:
        """The same statistics expressed about another shift, exactly.

        With ``delta = shift - self.shift`` (per component), ``x - c' =
        (x - c) - delta`` gives ``t' = t - nk delta`` and ``s' = s - t delta^T
        - delta t^T + nk delta delta^T`` (diag and spherical: ``s' = s -
        2 delta t + nk delta^2``; tied: the same with ``sum_k t_k`` and
        ``sum_k nk``, since that scatter carries no responsibilities).  Choose
        a new shift near the data's means so that ``t'`` stays small.  Online
        EM uses this to blend statistics computed under different parameters;
        ``a.recenter(b.shift) + b`` then adds up.

        Parameters
        ----------
        shift : array-like, shape (n_components, n_features), or (n_features,) for tied

        Returns
        -------
        SuffStats
        """
        new = np.array(shift, dtype=np.float64)
        if new.shape != self.shift.shape:
            raise ValueError(f"shift has shape {new.shape}, expected {self.shift.shape}")
        nk = self.nk
        t, s = family(self.covariance_type).recenter(self.shift, new, nk, self.t, self.s)
        return SuffStats(self.covariance_type, new, nk.copy(), t, s, self.log_likelihood,
                         self.weight, self.n_samples)

    def moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weights, means and covariances before regularisation.

        ``mu_k = c_k + t_k / n_k`` and ``Sigma_k = s_k / n_k - m_k m_k^T`` with
        ``m_k = t_k / n_k``: the second moment is taken about the shift, never
        as ``E[x x^T] - mu mu^T``, which loses every digit far from the origin.
        Every ``n_k`` is raised by ``NK_EPS`` (ten machine epsilons) first, so that an empty
        component divides by a tiny number instead of zero.

        Returns
        -------
        weights : ndarray (k,)
        means : ndarray (k, d)
        covariances : ndarray
            In the shape of the covariance type, symmetric, without ``reg_covar``.
        """
        nk = self.nk + NK_EPS
        weights = nk / nk.sum()
        means, cov = family(self.covariance_type).moments(self.shift, nk, self.t, self.s)
        return weights, means, cov

    def m_step(self, reg_covar: float = 1e-6) -> GaussianParams:
        """New parameters from the statistics (maximum-likelihood M-step).

        :meth:`moments`, then ``reg_covar`` added to the diagonal of every
        covariance.

        Parameters
        ----------
        reg_covar : float

        Returns
        -------
        GaussianParams

        Raises
        ------
        DegenerateCovarianceError
            When a covariance is not positive definite.
        """
        weights, means, cov = self.moments()
        return GaussianParams.from_covariances(
            self.covariance_type, weights, means,
            add_to_diagonal(cov, self.covariance_type, reg_covar))


def add_to_diagonal(cov: np.ndarray, covariance_type: str, amount: float) -> np.ndarray:
    """A copy of ``cov`` (all components, or one) with ``amount`` added to each diagonal.

    ``cov`` is one covariance type's array or one component's slice of it.
    """
    return family(covariance_type).add_to_diagonal(cov, amount)


def stats_shapes(covariance_type: str, n_components: int, n_features: int) -> tuple:
    """Shapes of ``nk``, ``t`` and ``s`` of :class:`SuffStats`.

    ``s`` is per component except for the tied type, and per feature (the
    diagonal) for diag and spherical: the spherical M-step uses only its sum
    over features.
    """
    k, d = n_components, n_features
    return (k,), (k, d), family(covariance_type).stats_shape(k, d)
