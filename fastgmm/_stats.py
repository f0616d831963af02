"""Sufficient statistics, the M-step, and the parameters they produce.

An EM iteration is ``stats = sum over blocks of kernel(block, params)``
followed by ``params = stats.m_step(reg_covar)``.  :class:`SuffStats` is the
small, mergeable value in between: blocks of rows, files, or Dask partitions
each give one, and adding them gives the statistics of the union.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import functools

import numpy as np

from . import _config
from ._parallel import fold_slots, kernel, run_groups

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

_LOG_2PI = math.log(2.0 * math.pi)
# Added to every component's weight as scikit-learn does, so that an empty
# component divides by a tiny number instead of zero.
_NK_EPS = 10.0 * np.finfo(np.float64).eps


class DegenerateCovarianceError(ValueError):
    """A covariance matrix is not positive definite.

    Attributes
    ----------
    component : int or None
        The offending component (``None`` for a tied covariance).
    """

    def __init__(self, message: str, component: int | None = None):
        super().__init__(message)
        self.component = component


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------


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
    def from_covariances(cls, covariance_type, weights, means, covariances):
        """Build parameters, factorising the covariances."""
        prec_chol = precisions_cholesky_from_covariances(covariances, covariance_type)
        return cls(covariance_type, np.asarray(weights, dtype=np.float64),
                   np.asarray(means, dtype=np.float64),
                   np.asarray(covariances, dtype=np.float64), prec_chol)

    @classmethod
    def from_precisions(cls, covariance_type, weights, means, precisions):
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
        k, d = self.n_components, self.n_features
        cov = {"full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2,
               "diag": k * d, "spherical": k}[self.covariance_type]
        return int(cov + k * d + k - 1)

    def copy(self) -> "GaussianParams":
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
    """``scipy.linalg``, imported on first use (it is a third of import time)."""
    from scipy import linalg

    return linalg


@functools.lru_cache(maxsize=None)
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
        # called directly with the same arguments (same bits): their Python
        # wrappers cost more than the factorisations themselves at small d,
        # and this runs at every M-step.
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


# ---------------------------------------------------------------------------
# Sufficient statistics
# ---------------------------------------------------------------------------


@dataclass
class SuffStats:
    """Sufficient statistics of a weighted Gaussian mixture E-step.

    For component ``k`` with shift ``c_k`` and responsibilities ``r_ik``:
    ``nk[k] = sum_i w_i r_ik``, ``t[k] = sum_i w_i r_ik (x_i - c_k)`` and a
    second moment ``s`` about the shift: ``(k, d, d)`` for full, the
    per-feature diagonal ``(k, d)`` for diag and spherical, and for tied the
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
    _kind: str = field(default="stats", repr=False)

    @property
    def mean_log_likelihood(self) -> float:
        """Weighted mean log-likelihood per sample (the EM lower bound)."""
        return self.log_likelihood / self.weight if self.weight > 0 else -np.inf

    def merge(self, other: "SuffStats") -> "SuffStats":
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

    def scale(self, factor: float) -> "SuffStats":
        """Statistics multiplied by ``factor`` (used by online EM)."""
        return SuffStats(self.covariance_type, self.shift, self.nk * factor,
                         self.t * factor, self.s * factor, self.log_likelihood * factor,
                         self.weight * factor, self.n_samples)

    def recenter(self, shift) -> "SuffStats":
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
        delta = new - self.shift
        nk = self.nk
        if self.covariance_type == "tied":
            t_sum = self.t.sum(axis=0)
            cross = np.outer(t_sum, delta)
            s = self.s - cross - cross.T + nk.sum() * np.outer(delta, delta)
            t = self.t - nk[:, None] * delta[None, :]
        elif self.covariance_type == "full":
            cross = self.t[:, :, None] * delta[:, None, :]
            s = (self.s - cross - np.swapaxes(cross, 1, 2)
                 + nk[:, None, None] * delta[:, :, None] * delta[:, None, :])
            t = self.t - nk[:, None] * delta
        else:
            s = self.s - 2.0 * delta * self.t + nk[:, None] * delta ** 2
            t = self.t - nk[:, None] * delta
        return SuffStats(self.covariance_type, new, nk.copy(), t, s, self.log_likelihood,
                         self.weight, self.n_samples)

    def m_step(self, reg_covar: float = 1e-6) -> GaussianParams:
        """New parameters from the statistics (maximum-likelihood M-step).

        ``mu_k = c_k + t_k / n_k`` and ``Sigma_k = s_k / n_k - m_k m_k^T`` with
        ``m_k = t_k / n_k``: the second moment is taken about the shift, never
        as ``E[x x^T] - mu mu^T``, which loses every digit far from the origin.

        Parameters
        ----------
        reg_covar : float
            Added to the diagonal of every covariance.

        Returns
        -------
        GaussianParams

        Raises
        ------
        DegenerateCovarianceError
            When a covariance is not positive definite.
        """
        ctype = self.covariance_type
        nk = self.nk + _NK_EPS
        weights = nk / nk.sum()
        off = self.t / nk[:, None]
        if ctype == "tied":
            means = self.shift[None, :] + off
            cov = (self.s - (self.t.T / nk) @ self.t) / nk.sum()
            cov = 0.5 * (cov + cov.T)
            cov.flat[:: cov.shape[0] + 1] += reg_covar
        elif ctype == "full":
            means = self.shift + off
            cov = self.s / nk[:, None, None] - off[:, :, None] * off[:, None, :]
            cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
            d = cov.shape[1]
            cov.reshape(len(nk), -1)[:, :: d + 1] += reg_covar
        else:
            means = self.shift + off
            var = self.s / nk[:, None] - off ** 2
            cov = var + reg_covar if ctype == "diag" else var.mean(axis=1) + reg_covar
        return GaussianParams.from_covariances(ctype, weights, means, cov)


# ---------------------------------------------------------------------------
# Computing statistics with the kernels
# ---------------------------------------------------------------------------


#: The kernel family serving each covariance type.
KERNEL_TYPE = {"full": "full", "tied": "tied", "diag": "diag", "spherical": "diag"}


def _stats_shapes(covariance_type: str, k: int, d: int):
    s_shape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k, d)}
    return (k,), (k, d), s_shape[covariance_type]


def kernel_inputs(params: GaussianParams, dtype) -> tuple:
    """Arrays the kernels need for ``params``, in the compute dtype.

    Returns a tuple ``(shift, args)``: the shift of the statistics and the
    parameter arguments of the ``em_stats_*``/``point_*`` kernels (see
    :data:`KERNEL_TYPE`).
    """
    ctype = params.covariance_type
    log_norm = params.log_norm()
    means = np.ascontiguousarray(params.means, dtype=dtype)
    pc = params.precisions_cholesky
    if ctype == "tied":
        shift64 = params.weights @ params.means
        shift = np.ascontiguousarray(shift64, dtype=dtype)
        proj = np.ascontiguousarray((params.means - shift64) @ pc, dtype=dtype)
        return shift64, (shift, proj, np.ascontiguousarray(pc, dtype=dtype), log_norm)
    if ctype == "full":
        prec = np.ascontiguousarray(pc, dtype=dtype)
        return params.means.copy(), (means, prec, log_norm, _precision_floor(pc),
                                     *_pair_bounds(params.means, pc, dtype))
    # Diagonal and spherical share one kernel; a spherical factor is (k, 1).
    prec = np.ascontiguousarray(pc.reshape(params.n_components, -1), dtype=dtype)
    return params.means.copy(), (means, prec, log_norm, ctype == "spherical")


def _precision_floor(prec_chol: np.ndarray) -> np.ndarray:
    """Lower bounds of the smallest eigenvalue of each ``U U^T``, shape (k,).

    The smallest singular value of ``U`` squared, shrunk by one part in a
    thousand so that rounding can never make the pruning bound of the full
    kernel too tight.
    """
    sv = np.linalg.svd(prec_chol, compute_uv=False)
    return np.ascontiguousarray(np.maximum(sv[:, -1], 0.0) ** 2 * 0.999)


#: Pair bounds are built when ``k^2 d^2`` stays below this (their cost per
#: iteration is about that many flops; memory ``k^2 d`` values).
PAIR_BOUND_BUDGET = 2e7


def _pair_bounds(means: np.ndarray, prec_chol: np.ndarray, dtype) -> tuple:
    """Bounds along the lines between means, for pruning the full kernel.

    For the unit vector ``v`` from ``mu_j`` to ``mu_b`` and ``s = v^T
    Sigma_j v``, Cauchy-Schwarz gives ``sqrt(maha_j(x)) >= v . (x - mu_j) /
    sqrt(s) = w . (x - mu_b) + c`` with ``w = v / sqrt(s)`` and ``c = ||mu_b -
    mu_j|| / sqrt(s)``.

    Returns
    -------
    w : ndarray (k, k, d) in ``dtype``; ``w[b, j]`` for the pair ``(b, j)``
        (zero where ``b == j`` or the means coincide)
    c : ndarray (2, k, k) float64
        ``c[0, b, j] = c`` and ``c[1, b, j] >= |w[b, j]|``.  Both arrays are
        empty when ``k < 2`` or the problem is over :data:`PAIR_BOUND_BUDGET`.
    """
    k, d = means.shape
    if k < 2 or float(k * d) ** 2 > PAIR_BOUND_BUDGET:
        return np.empty((0, 0, d), dtype=dtype), np.empty((2, 0, 0))
    diff = means[:, None, :] - means[None, :, :]          # mu_b - mu_j
    dist = np.sqrt(np.einsum("bjd,bjd->bj", diff, diff))
    live = dist > 0
    v = diff / np.where(live, dist, 1.0)[..., None]
    s = np.empty((k, k))
    solve = _linalg().solve_triangular
    for j in range(k):
        z = solve(prec_chol[j], v[:, j, :].T, lower=False)  # U_j^{-1} v
        s[:, j] = np.einsum("db,db->b", z, z)
    live &= s > 0
    scale = np.where(live, 1.0 / np.sqrt(np.where(live, s, 1.0)), 0.0)
    w = v * scale[..., None]
    # |w| = scale (v is a unit vector), enlarged by one part in a thousand so
    # that rounding of w in the data's dtype cannot make the bound too tight.
    c = np.stack([dist * scale, scale * 1.001])
    return np.ascontiguousarray(w, dtype=dtype), c


class StatsWorkspace:
    """Per-group slot buffers, allocated once per fit and reused.

    Parameters
    ----------
    covariance_type : str
    n_components, n_features : int
    n_threads : int
        Only sizes the number of groups in flight; results do not depend on it.
    n_samples : int, optional
        The most rows one call will see: no more slots than their groups need.
    """

    def __init__(self, covariance_type: str, n_components: int, n_features: int,
                 n_threads: int = 1, n_samples: int | None = None):
        nk_shape, t_shape, s_shape = _stats_shapes(covariance_type, n_components, n_features)
        per_chunk = 8 * (n_components + int(np.prod(t_shape)) + int(np.prod(s_shape)) + 2)
        g = max(4 * max(n_threads, 1), _config.SLOT_BUDGET_BYTES // per_chunk)
        self.chunk_size = _config.chunk_size(covariance_type)
        if n_samples is not None:
            rows = _config.chunks_per_group(n_samples, self.chunk_size) * self.chunk_size
            g = min(g, max(1, -(-int(n_samples) // rows)))
        self.n_slots = int(g)
        self.covariance_type = covariance_type
        self.shapes = (nk_shape, t_shape, s_shape)
        self.nk_slot = np.empty((self.n_slots,) + nk_shape)
        self.t_slot = np.empty((self.n_slots,) + t_shape)
        self.s_slot = np.empty((self.n_slots,) + s_shape)
        self.ll_slot = np.empty((self.n_slots, 2))

    def rows_per_call(self, group: int) -> int:
        """Rows one kernel call covers with ``group`` chunks per slot."""
        return self.n_slots * group * self.chunk_size


class RowHints:
    """Each row's most probable component at the last E-step over the same rows.

    Kept by in-memory sources between iterations: the full-covariance kernel
    then starts each row from that component instead of bounding every
    (row, component) pair.  Results do not depend on the hints.
    """

    def __init__(self, n_samples: int):
        self.best = np.zeros(n_samples, dtype=np.int32)
        self.valid = False

    def rows(self, start: int, n_rows: int) -> RowHints:
        """The hints of rows ``start .. start + n_rows - 1`` (a view, same validity)."""
        view = RowHints.__new__(RowHints)
        view.best = self.best[start:start + n_rows]
        view.valid = self.valid
        return view


_NO_HINT = np.empty(0, dtype=np.int32)


def _weights_args(w, lo, hi):
    if w is None:
        return _EMPTY_W, False
    return w[lo:hi], True


_EMPTY_W = np.empty(0, dtype=np.float64)


def compute_stats(X: np.ndarray, w: np.ndarray | None, params: GaussianParams,
                  workspace: StatsWorkspace | None = None, parallel: bool = True,
                  inputs: tuple | None = None, hints: RowHints | None = None) -> SuffStats:
    """Fused E-step over ``X``: statistics and log-likelihood for ``params``.

    Parameters
    ----------
    X : ndarray (n, d), float32 or float64, C-contiguous (validated by caller)
    w : ndarray (n,) float64 or None
    params : GaussianParams
    workspace : StatsWorkspace, optional
    parallel : bool
        Share the rows between threads (see :func:`fastgmm._parallel.run_groups`).
    inputs : tuple, optional
        Precomputed :func:`kernel_inputs` for ``params`` and ``X.dtype``.
    hints : RowHints, optional
        Hints for the rows of ``X`` (full covariances only; read and updated).

    Returns
    -------
    SuffStats
    """
    ctype = params.covariance_type
    k, d = params.n_components, params.n_features
    if workspace is None:
        workspace = StatsWorkspace(ctype, k, d, n_samples=X.shape[0])
    if inputs is None:
        inputs = kernel_inputs(params, X.dtype)
    shift, args = inputs
    nk_shape, t_shape, s_shape = workspace.shapes
    nk = np.zeros(nk_shape)
    t = np.zeros(t_shape)
    s = np.zeros(s_shape)
    ll = np.zeros(2)
    kern = kernel("em_stats_" + KERNEL_TYPE[ctype])
    n = X.shape[0]
    cs = workspace.chunk_size
    group = _config.chunks_per_group(n, cs)
    step = workspace.rows_per_call(group)
    slots = (workspace.nk_slot, workspace.t_slot, workspace.s_slot, workspace.ll_slot)
    if ctype == "full":
        use_hint = hints is not None and hints.valid
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        wb, weighted = _weights_args(w, lo, hi)
        extra = ()
        if ctype == "full":
            extra = (_NO_HINT if hints is None else hints.best[lo:hi], use_hint)
        n_groups = _config.n_groups(hi - lo, cs, group)
        run_groups(kern, (X[lo:hi], wb, weighted, *args, *extra, cs, group, *slots),
                   n_groups, parallel)
        fold_slots(slots, n_groups, (nk, t, s, ll))
    if ctype == "full" and hints is not None:
        hints.valid = True
    weight = float(n) if w is None else float(w.sum())
    log_lik = ll[0] if ll[1] == 0 else -np.inf
    return SuffStats(ctype, shift, nk, t, _symmetrize_upper(s, ctype), float(log_lik),
                     weight, n)


def resp_stats(X: np.ndarray, w: np.ndarray | None, resp_block, n_components: int,
               shift: np.ndarray, covariance_type: str, parallel: bool = True,
               labels: np.ndarray | None = None) -> SuffStats:
    """Statistics for given responsibilities (initialisation).

    Parameters
    ----------
    resp_block : callable or None
        ``resp_block(lo, hi)`` returns the ``(hi - lo, k)`` float64
        responsibilities of rows ``lo:hi``; only one block is held at a time,
        so memory stays bounded whatever ``n``.  None when ``labels`` is given.
    shift : ndarray, (k, d) or (d,) for tied, float64
    labels : ndarray (n,) int64, optional
        Hard assignments (one-hot responsibilities, never formed).
    """
    n, d = X.shape
    k = n_components
    ctype = covariance_type
    ws = StatsWorkspace(ctype, k, d, n_samples=n)
    nk, t, s = (np.zeros(shape) for shape in ws.shapes)
    kern = kernel("resp_stats_" + KERNEL_TYPE[ctype])
    shift_c = np.ascontiguousarray(np.reshape(shift, (d,) if ctype == "tied" else (k, d)),
                                   dtype=X.dtype)
    cs = ws.chunk_size
    group = _config.chunks_per_group(n, cs)
    # Rows per call: also bounded so that one block of responsibilities
    # stays within the slot budget (memory independent of n).
    rows_cap = max(cs, _config.SLOT_BUDGET_BYTES // (8 * k)) if labels is None else n
    step = max(group * cs, min(ws.rows_per_call(group), rows_cap) // (group * cs) * group * cs)
    slots = (ws.nk_slot, ws.t_slot, ws.s_slot)
    no_resp, no_labels = np.empty((0, k)), np.empty(0, dtype=np.int64)
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        wb, weighted = _weights_args(w, lo, hi)
        if labels is None:
            given = (np.ascontiguousarray(resp_block(lo, hi), dtype=np.float64), no_labels)
        else:
            given = (no_resp, np.ascontiguousarray(labels[lo:hi], dtype=np.int64))
        n_groups = _config.n_groups(hi - lo, cs, group)
        run_groups(kern, (X[lo:hi], wb, weighted, *given, shift_c, cs, group, *slots),
                   n_groups, parallel)
        fold_slots(slots, n_groups, (nk, t, s))
    weight = float(n) if w is None else float(w.sum())
    return SuffStats(ctype, np.asarray(shift, dtype=np.float64).copy(), nk, t,
                     _symmetrize_upper(s, ctype), 0.0, weight, n)


def _symmetrize_upper(s: np.ndarray, covariance_type: str) -> np.ndarray:
    """Copy the accumulated upper triangle onto the lower one."""
    if covariance_type not in ("full", "tied"):
        return s
    # One gather of the upper triangle instead of two np.triu, which build a
    # mask on every call (about 17 -> 4 us per E-step at k=5, d=6).
    # ``+ 0.0`` keeps the bits of ``triu(s) + triu(s, 1).T`` (-0.0 -> 0.0).
    d = s.shape[-1]
    out = s.reshape(-1, d * d).take(_upper_gather(d), axis=1).reshape(s.shape)
    out += 0.0
    return out


_UPPER_GATHER: dict = {}


def _upper_gather(d: int) -> np.ndarray:
    """Flat index of entry ``(min(i, j), max(i, j))`` for every ``(i, j)`` of a d x d matrix."""
    idx = _UPPER_GATHER.get(d)
    if idx is None:
        i, j = np.indices((d, d))
        idx = _UPPER_GATHER[d] = (np.minimum(i, j) * d + np.maximum(i, j)).ravel()
    return idx


def point_outputs(X: np.ndarray, params: GaussianParams, *, resp: bool = False,
                  log_prob: bool = False, score: bool = False, labels: bool = False,
                  parallel: bool = True, out_dtype=None):
    """Per-point outputs for ``X`` under ``params``, chunk by chunk.

    Returns a dict with the requested entries among ``'resp'`` (n, k),
    ``'log_prob'`` (n, k) (weighted log densities), ``'score'`` (n,) and
    ``'labels'`` (n,).  Only the outputs themselves are allocated.
    """
    if resp and log_prob:
        raise ValueError("ask for resp or log_prob, not both")  # internal misuse
    n = X.shape[0]
    k = params.n_components
    out_dtype = X.dtype if out_dtype is None else out_dtype
    out_2d = np.empty((n, k) if (resp or log_prob) else (0, k), dtype=out_dtype)
    out_score = np.empty(n if score else 0, dtype=out_dtype)
    out_label = np.empty(n if labels else 0, dtype=np.int64)
    _, args = kernel_inputs(params, X.dtype)
    kern = kernel("point_" + KERNEL_TYPE[params.covariance_type])
    cs = _config.chunk_size(params.covariance_type)
    group = _config.chunks_per_group(n, cs)
    run_groups(kern, (X, *args, cs, group, resp, out_2d, out_score, out_label),
               _config.n_groups(n, cs, group), parallel)
    out = {}
    if resp:
        out["resp"] = out_2d
    if log_prob:
        out["log_prob"] = out_2d
    if score:
        out["score"] = out_score
    if labels:
        out["labels"] = out_label
    return out
