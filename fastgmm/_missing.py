"""Missing data: exact EM statistics, per-point outputs, imputation and conditioning.

NaN marks a missing entry, assumed missing at random.  A row's
responsibilities come from the marginal density of its observed coordinates,
and its statistics from the completed row (observed values, and the
conditional mean of each component for the missing ones) with the
conditional covariance added to the second moment: the exact E-step of the
incomplete-data likelihood.  The statistics are an ordinary
:class:`~fastgmm.SuffStats` (same shifts as
:func:`fastgmm._compute.compute_stats`), so the M-step, the merging of
blocks, out-of-core sources and Dask need nothing new.

Rows without NaN always go through :func:`fastgmm._compute.compute_stats`
and :func:`fastgmm._compute.point_outputs` unchanged, so data without NaN
gives the same bits with the option on or off; rows with NaN go through the
kernels of :mod:`fastgmm._kernels_missing`.

Tied covariances: the scatter of :class:`~fastgmm.SuffStats` carries no
responsibilities for complete rows, but a completed row depends on the
component.  With one shift ``c`` for all components and ``sum_k r_ik = 1``,
``s = sum_i sum_k w_i r_ik [(x*_ik - c)(x*_ik - c)^T + C_i]`` (``C_i`` the
conditional covariance, the same for every component) reduces to the
complete-data scatter for complete rows, and the tied M-step ``(s - sum_k
t_k t_k^T / n_k) / N`` is then the exact maximiser.  Its full-type
statistics, recentred per component on ``c`` and summed, are that ``s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _parallel
from ._compute import (
    RowHints,
    StatsWorkspace,
    _precision_floor,
    compute_stats,
    point_outputs,
)
from ._estep import COMPLETE, BlockCache, EStep
from ._params import GaussianParams
from ._stats import SuffStats

#: Values of the ``missing`` option.
MISSING_OPTIONS = ("error", "marginalize")

#: Rows per group of the missing-data kernels (fixes the summation order, with
#: the rows per chunk of the full E-step; see :func:`incomplete_stats`).
ROWS_PER_GROUP = 1024

#: A missing pattern with at least this many rows in a block runs the
#: complete-data kernel on its observed columns under the marginal mixture,
#: and its statistics are lifted to all features exactly; rarer patterns go
#: through the kernels of :mod:`fastgmm._kernels_missing`, which cost more per
#: row but nothing per pattern.
PATTERN_MIN_ROWS = 2048

#: Full covariances: patterns with fewer rows than this (and at least
#: :data:`PATTERN_MIN_ROWS`) go through the missing-data kernel all the same: its
#: bounds skip most components, and the pattern route's fixed cost per
#: pattern (the marginal mixture's kernel inputs) is larger below it.  Other
#: covariance types run them as patterns.
FULL_PATTERN_MIN_ROWS = 8192

#: Full and tied covariances: a row of a rare pattern missing more features
#: than it observes, and at least this many, goes through the covariance side
#: (:func:`wide_stats`), whose cost per (row, component) grows with the cube
#: of its observed count; the others through the missing-data kernels, whose
#: cost grows with the cube of the missing count.
WIDE_MIN_MISSING = 16

#: Rows of one observed count solved at once by :func:`wide_stats` (bounds
#: its (rows, k, p, p) scratch).
_WIDE_BLOCK_ROWS = 1024

#: Rows of per-point outputs computed at once (bounds the (rows, k) scratch).
_POINT_BLOCK_ROWS = 65536


def _kernels():
    """:mod:`fastgmm._kernels_missing`, imported on first use (it imports Numba)."""
    from . import _kernels_missing

    return _kernels_missing


def check_missing_option(value) -> str:
    """Return ``value`` if it is one of :data:`MISSING_OPTIONS`, else raise."""
    if not isinstance(value, str) or value not in MISSING_OPTIONS:
        raise ValueError(f"missing must be one of {MISSING_OPTIONS}, got {value!r}")
    return value


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def check_missing_rows(X: np.ndarray, start: int = 0, name: str = "X") -> np.ndarray:
    """Rows of ``X`` that hold NaN (a boolean mask); refuses infinity and all-NaN rows.

    Raises
    ------
    ValueError
        An infinite value, or a row with every entry missing (it carries no
        information; drop it).
    """
    nan = np.isnan(X)
    if np.isinf(X).any():
        row = start + int(np.argmax(np.isinf(X).any(axis=1)))
        raise ValueError(f"{name} contains infinity (row {row}); only NaN may mark a "
                         "missing value")
    rows = nan.any(axis=1)
    if rows.any():
        empty = nan.all(axis=1)
        if empty.any():
            row = start + int(np.argmax(empty))
            raise ValueError(f"{name} has a row with every entry missing (row {row}); it "
                             "carries no information: drop it")
    return rows


def check_observed_features(observed: np.ndarray, where: str = "X",
                            names: np.ndarray | None = None) -> None:
    """Raise unless every feature has at least one observed value.

    ``observed`` is the count of non-missing values per feature.
    """
    never = np.flatnonzero(np.asarray(observed) == 0)
    if never.size:
        j = int(never[0])
        label = f"feature {j}" if names is None else f"feature {j} ({names[j]!r})"
        raise ValueError(f"{label} is never observed in {where} (every value is NaN); "
                         "its distribution cannot be estimated: drop the column")


def warn_scarce_features(observed: np.ndarray, where: str = "X",
                         names: np.ndarray | None = None) -> None:
    """Warn about features observed in too few rows for their variance.

    A variance needs two observed values; a feature observed in one row
    only fits with a variance near zero (``reg_covar``), a density spike on
    that row.  ``observed`` is the count of non-missing values per feature.
    """
    scarce = np.flatnonzero(np.asarray(observed) < 2)
    if scarce.size:
        import warnings

        from ._exceptions import DegenerateDataWarning

        j = int(scarce[0])
        label = f"feature {j}" if names is None else f"feature {j} ({names[j]!r})"
        more = f" (and {scarce.size - 1} more)" if scarce.size > 1 else ""
        warnings.warn(f"{label}{more} is observed in only {int(observed[j])} row of {where}; "
                      "a variance needs at least 2, so it fits near zero, a density spike on "
                      "that row: drop the column or add rows that observe it",
                      DegenerateDataWarning, stacklevel=2)


def check_finite_params(params: GaussianParams) -> None:
    """Raise unless every parameter is finite (a NaN would spread through every row)."""
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        if not np.isfinite(getattr(params, name)).all():
            raise ValueError(f"the model's {name} contain NaN or infinity; refit the model")


def mean_impute(X: np.ndarray, w: np.ndarray | None, where: str = "X") -> np.ndarray:
    """``X`` with every NaN replaced by its column's (weighted) observed mean.

    Used to initialise a fit with missing values (k-means cannot take NaN);
    EM then treats the entries as missing.
    """
    nan = np.isnan(X)
    if not nan.any():
        return X
    check_observed_features((~nan).sum(axis=0), where)
    ww = np.ones(X.shape[0]) if w is None else w
    obs = (~nan) * ww[:, None]
    total = obs.sum(axis=0)
    sums = (np.where(nan, 0.0, X.astype(np.float64)) * ww[:, None]).sum(axis=0)
    # A feature observed only on rows of zero weight: its plain mean.
    plain = np.where(nan, 0.0, X.astype(np.float64)).sum(axis=0) / (~nan).sum(axis=0)
    means = np.where(total > 0, sums / np.where(total > 0, total, 1.0), plain)
    out = np.array(X, copy=True)
    rows, cols = np.nonzero(nan)
    out[rows, cols] = means[cols]
    return out


# ---------------------------------------------------------------------------
# Rows split by completeness, grouped by missing pattern
# ---------------------------------------------------------------------------


def pattern_groups(nan: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped by missing pattern.

    Parameters
    ----------
    nan : ndarray (n, d) bool
        Where entries are missing.

    Returns
    -------
    order : ndarray (n,) int64
        Row indices, rows of one pattern together (stable within a pattern).
    starts : ndarray (p + 1,) int64
        Pattern ``j`` holds ``order[starts[j]:starts[j + 1]]``.
    patterns : ndarray (p, d) bool
        The missing entries of each pattern.
    """
    n, d = nan.shape
    if d <= 62:
        # One integer per row: sorting integers is several times faster than
        # sorting byte strings.
        keys = nan.astype(np.int64) @ (np.int64(1) << np.arange(d, dtype=np.int64))
    else:
        packed = np.ascontiguousarray(np.packbits(nan, axis=1))
        keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    new = np.empty(n, dtype=bool)
    new[:1] = True
    new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    starts = np.r_[np.flatnonzero(new), n].astype(np.int64)
    return order.astype(np.int64), starts, nan[order[starts[:-1]]]


class SplitRows:
    """The rows of one block, split into complete rows and rows with NaN.

    Parameters
    ----------
    X : ndarray (n, d), float32/float64, C-contiguous, NaN where missing
    w : ndarray (n,) float64 or None
    start : int
        Index of the first row (for messages).

    Attributes
    ----------
    complete, w_complete
        Complete rows (``X`` itself when it has no NaN) and their weights.
    incomplete, w_incomplete
        Rows with NaN of patterns rarer than :data:`PATTERN_MIN_ROWS`
        (``None`` when there are none) and their weights.
    mid, w_mid
        Rows of patterns from :data:`PATTERN_MIN_ROWS` to
        :data:`FULL_PATTERN_MIN_ROWS` rows (``None`` when there are none),
        by pattern, and their weights.
    patterns : list of PatternRows
        The patterns with more rows.
    wide : WideRows or None
        Rows of rare patterns missing more features than they observe (and
        at least :data:`WIDE_MIN_MISSING`): for full and tied covariances
        their statistics come from :func:`wide_stats`, for the others from
        the missing-data kernels.
    observed : ndarray (d,) int64
        Non-missing values per feature.
    """

    def __init__(self, X: np.ndarray, w: np.ndarray | None, start: int = 0):
        rows = check_missing_rows(X, start)
        self.n_samples = X.shape[0]
        self.dtype = X.dtype
        self.weight = float(X.shape[0]) if w is None else float(w.sum())
        self.mid = self.w_mid = None
        self.wide = None
        self._mid_specs = []
        self._mid_groups = None
        if not rows.any():
            self.complete, self.w_complete = X, w
            self.incomplete = self.w_incomplete = None
            self.patterns = []
            self.observed = np.full(X.shape[1], X.shape[0], dtype=np.int64)
            return
        nan = np.isnan(X)
        self.observed = X.shape[0] - nan.sum(axis=0)
        keep = ~rows
        self.complete = np.ascontiguousarray(X[keep]) if keep.any() else None
        self.w_complete = None if w is None or self.complete is None else w[keep]
        # Rows of one pattern side by side: the kernels reuse the pattern's
        # factorisations from row to row.
        idx = np.flatnonzero(rows)
        order, starts, patterns = pattern_groups(nan[idx])
        idx = idx[order]
        counts = np.diff(starts)
        self.patterns = []
        mid = []
        n_mid = 0
        # Only the few frequent patterns are visited one by one; the rows of
        # the rare ones (often tens of thousands of patterns) are gathered at
        # once, still side by side by pattern.
        for j in np.flatnonzero(counts >= PATTERN_MIN_ROWS):
            rows_j = idx[starts[j]:starts[j + 1]]
            obs = np.flatnonzero(~patterns[j])
            if counts[j] >= max(PATTERN_MIN_ROWS, FULL_PATTERN_MIN_ROWS):
                self.patterns.append(PatternRows(
                    obs, np.flatnonzero(patterns[j]), np.ascontiguousarray(X[rows_j][:, obs]),
                    None if w is None else w[rows_j]))
            else:
                self._mid_specs.append((n_mid, n_mid + rows_j.size, obs,
                                        np.flatnonzero(patterns[j])))
                n_mid += rows_j.size
                mid.append(rows_j)
        self.incomplete = self.w_incomplete = None
        rare_rows = np.repeat(counts < PATTERN_MIN_ROWS, counts)
        if rare_rows.any():
            rare_idx = idx[rare_rows]
            # Rows missing more than they observe (and many): the covariance side.
            n_missing = nan[rare_idx].sum(axis=1)
            wide = (n_missing > X.shape[1] - n_missing) & (n_missing >= WIDE_MIN_MISSING)
            if wide.any():
                self.wide = WideRows.gather(X, w, rare_idx[wide])
                rare_idx = rare_idx[~wide]
            if rare_idx.size:
                self.incomplete = np.ascontiguousarray(X[rare_idx])
                self.w_incomplete = None if w is None else w[rare_idx]
        if mid:
            mid_idx = np.concatenate(mid)
            self.mid = np.ascontiguousarray(X[mid_idx])
            self.w_mid = None if w is None else w[mid_idx]

    @property
    def has_missing(self) -> bool:
        return (self.incomplete is not None or bool(self.patterns) or self.mid is not None
                or self.wide is not None)

    def mid_patterns(self) -> list:
        """The patterns of :attr:`mid` as :class:`PatternRows`, gathered on first use.

        Only covariance types other than full use them (see
        :data:`FULL_PATTERN_MIN_ROWS`), so full fits hold one copy of the rows.
        """
        if self._mid_groups is None:
            self._mid_groups = [
                PatternRows(obs, miss, np.ascontiguousarray(self.mid[lo:hi][:, obs]),
                            None if self.w_mid is None else self.w_mid[lo:hi])
                for lo, hi, obs, miss in self._mid_specs]
        return self._mid_groups


@dataclass
class PatternRows:
    """The rows of one frequent missing pattern: their observed columns, gathered.

    ``hints`` and ``workspace`` keep the complete-data kernel's per-row hints
    and its :class:`~fastgmm._compute.StatsWorkspace` (slots, and the dense
    path's choice) between passes.
    """

    observed: np.ndarray
    missing: np.ndarray
    X: np.ndarray
    w: np.ndarray | None
    hints: object = None
    workspace: object = None


@dataclass
class WideRows:
    """Rows that observe few of many features, grouped by their observed count.

    Attributes
    ----------
    X, w
        The rows (all features, NaN where missing) and their weights.
    groups : list of (ndarray (n_p,) int64, ndarray (n_p, p) int64)
        For each observed count ``p``: the rows (indices into ``X``) and the
        observed features of each, ascending.
    """

    X: np.ndarray
    w: np.ndarray | None
    groups: list

    @classmethod
    def gather(cls, X: np.ndarray, w: np.ndarray | None, rows: np.ndarray) -> WideRows:
        Xr = np.ascontiguousarray(X[rows])
        observed = ~np.isnan(Xr)
        counts = observed.sum(axis=1)
        groups = []
        for p in np.unique(counts):
            members = np.flatnonzero(counts == p)
            # Row-major nonzero lists each row's observed features in order.
            cols = np.nonzero(observed[members])[1].reshape(members.size, int(p))
            groups.append((members.astype(np.int64), cols.astype(np.int64)))
        return cls(Xr, None if w is None else w[rows], groups)


def wide_stats(rows: WideRows, params: GaussianParams) -> SuffStats:
    """Exact E-step statistics of rows observing few features: the covariance side.

    For a row with observed features ``o`` and a component with mean ``mu``
    and covariance ``Sigma``, let ``alpha = Sigma_oo^{-1} (x_o - mu_o)`` and
    ``a`` be ``alpha`` written over all features (zero off ``o``), and
    ``P`` be ``Sigma_oo^{-1}`` written likewise.  The completed row is ``x* -
    mu = Sigma a`` (it is ``x_o`` on ``o``) and the conditional covariance,
    over all features, ``Sigma - Sigma P Sigma`` (zero on the rows and
    columns of ``o``).  So with ``r`` the responsibilities and ``w`` the
    weights, ``t = Sigma sum w r a`` and ``s = n_k Sigma + Sigma G Sigma``
    with ``G = sum w r (a a^T - P)``, a ``d x d`` sum of the rows' small
    blocks: the work per (row, component) is that of the ``p x p`` solves
    (``p`` the observed count), and the ``d x d`` products are done once per
    component.  The log-densities are those of the marginal ``N(x_o; mu_o,
    Sigma_oo)``.  Full and tied covariances (tied: recentred on the common
    shift as :func:`incomplete_stats` does).  Chunks of rows are solved on
    up to :func:`fastgmm._parallel.n_threads` threads and folded in a fixed
    order, so the statistics are the same bits on any number of threads.

    Parameters
    ----------
    rows : WideRows
    params : GaussianParams
        Full or tied covariances.

    Returns
    -------
    SuffStats
        With the shift of :func:`fastgmm._compute.compute_stats`.
    """
    k, d = params.n_components, params.n_features
    ctype = params.covariance_type
    covs = np.ascontiguousarray(params.family.to_full(params.covariances, k, d),
                                dtype=np.float64)
    means = np.asarray(params.means, dtype=np.float64)
    log_w = np.log(params.weights)
    nk = np.zeros(k)
    a_sum = np.zeros(k * d)
    g_sum = np.zeros(k * d * d)
    log_lik = 0.0
    X, w = rows.X, rows.w
    pending_a, pending_g, n_pending = [], [], 0
    chunks = [(members[lo:lo + _WIDE_BLOCK_ROWS], cols[lo:lo + _WIDE_BLOCK_ROWS])
              for members, cols in rows.groups
              for lo in range(0, members.size, _WIDE_BLOCK_ROWS)]
    # Chunks are solved in windows, on up to n_threads() threads, and folded
    # in their fixed order: the same bits on any number of threads.
    window = 4 * _parallel.n_threads()
    for first in range(0, len(chunks), window):
        part = chunks[first:first + window]
        out: list = [None] * len(part)

        def solve(lo, hi, part=part, out=out):
            for j in range(lo, hi):
                out[j] = _wide_chunk(X, w, *part[j], covs, means, log_w)

        _parallel.run_groups(solve, (), len(part), sum(c[0].size for c in part))
        for nk_j, ll_j, scatter_a, scatter_g in out:
            nk += nk_j
            log_lik += ll_j
            pending_a.append(scatter_a)
            pending_g.append(scatter_g)
            n_pending += scatter_g[0].size
            if n_pending >= _WIDE_SCATTER_BATCH:
                _scatter(a_sum, pending_a)
                _scatter(g_sum, pending_g)
                n_pending = 0
    _scatter(a_sum, pending_a)
    _scatter(g_sum, pending_g)
    a_sum = a_sum.reshape(k, d)
    upper = g_sum.reshape(k, d, d)
    g = upper + np.swapaxes(upper, 1, 2)
    g[:, np.arange(d), np.arange(d)] *= 0.5
    t = np.einsum("kij,kj->ki", covs, a_sum)
    s = nk[:, None, None] * covs + covs @ g @ covs
    s = 0.5 * (s + np.swapaxes(s, 1, 2))
    weight = float(X.shape[0]) if w is None else float(w.sum())
    n = X.shape[0]
    if params.family.shared:
        # Recentre each component's moments on the common shift and add them up.
        shift = params.weights @ params.means
        delta = shift[None, :] - params.means
        cross = t[:, :, None] * delta[:, None, :]
        s_k = (s - cross - np.swapaxes(cross, 1, 2)
               + nk[:, None, None] * delta[:, :, None] * delta[:, None, :])
        return SuffStats(ctype, shift, nk, t - nk[:, None] * delta, s_k.sum(axis=0),
                         log_lik, weight, n)
    return SuffStats(ctype, params.means.copy(), nk, t, s, log_lik, weight, n)


_LOG_2PI = float(np.log(2.0 * np.pi))


def _wide_chunk(X, w, idx, o, covs, means, log_w):
    """One chunk of :func:`wide_stats`: rows ``idx`` observing the features ``o`` (b, p).

    Returns ``(n_k, log-likelihood, (where, values) of sum w r a, (where,
    values) of the upper triangles of sum w r (a a^T - P))``, the places
    flat indices into ``(k, d)`` and ``(k, d, d)``.
    """
    k, d = means.shape
    p = o.shape[1]
    comp = np.arange(k)
    xo = np.take_along_axis(X[idx], o, axis=1).astype(np.float64)         # (b, p)
    # One flat take (several times faster than indexing with two index arrays).
    sigma = np.take(covs.reshape(k, d * d), o[:, :, None] * d + o[:, None, :],
                    axis=1).transpose(1, 0, 2, 3)                             # (b, k, p, p)
    diff = xo[:, None, :] - means[:, o].transpose(1, 0, 2)             # (b, k, p)
    chol = np.linalg.cholesky(sigma)
    linv = _lower_inverse(chol)
    linv_t = np.swapaxes(linv, 2, 3)
    z = (linv @ diff[..., None])[..., 0]
    maha = (z * z).sum(axis=2)
    alpha = (linv_t @ z[..., None])[..., 0]
    inv = linv_t @ linv
    log_det = 2.0 * np.log(np.diagonal(chol, axis1=2, axis2=3)).sum(axis=2)
    log_prob = log_w - 0.5 * (p * _LOG_2PI + log_det + maha)           # (b, k)
    top = log_prob.max(axis=1, keepdims=True)
    log_row = top[:, 0] + np.log(np.exp(log_prob - top).sum(axis=1))
    wr = np.exp(log_prob - log_row[:, None])
    if w is not None:
        wr *= w[idx, None]
        log_lik = float(w[idx] @ log_row)
    else:
        log_lik = float(log_row.sum())
    where = comp[None, :, None] * d + o[:, None, :]                    # (b, k, p)
    # The upper triangle of each block (o ascending: of G too).
    iu, ju = np.triu_indices(p)
    inv_up = np.take(inv.reshape(inv.shape[0], k, p * p), iu * p + ju, axis=2)
    block = alpha[:, :, iu] * alpha[:, :, ju] - inv_up                 # (b, k, p')
    where2 = comp[None, :, None] * (d * d) + (o[:, iu] * d + o[:, ju])[:, None, :]
    return (wr.sum(axis=0), log_lik, (where.ravel(), (wr[:, :, None] * alpha).ravel()),
            (where2.ravel(), (wr[:, :, None] * block).ravel()))


#: Entries scattered by one ``np.bincount`` in :func:`wide_stats`.
_WIDE_SCATTER_BATCH = 1 << 23


def _scatter(total: np.ndarray, pending: list) -> None:
    """Add the ``(where, values)`` pairs of ``pending`` into ``total`` (one bincount); empty it."""
    if pending:
        where = np.concatenate([p[0] for p in pending])
        values = np.concatenate([p[1] for p in pending])
        total += np.bincount(where, values, minlength=total.size)
        pending.clear()


def _lower_inverse(chol: np.ndarray) -> np.ndarray:
    """Inverses of a stack of small lower-triangular matrices ``(..., p, p)``.

    Forward substitution, a row at a time for the whole stack: for the
    many small factors of :func:`wide_stats` this is several times faster
    than one LAPACK call per matrix.
    """
    p = chol.shape[-1]
    out = np.zeros_like(chol)
    for i in range(p):
        row = -(chol[..., i:i + 1, :i] @ out[..., :i, :])[..., 0, :]
        row[..., i] += 1.0
        out[..., i, :] = row / chol[..., i, i, None]
    return out


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def _kernel_params(params: GaussianParams) -> tuple:
    """``(matrix, means, prec, log_norm)`` for the missing-data kernels, float64.

    The kernels take one precision factor per component: ``(k, d, d)``
    matrices (``matrix`` True; the full kernels) or ``(k, d)`` per-feature
    factors (the diagonal kernels); the family spreads a shared or single
    factor over them (:meth:`~fastgmm._covariance.CovarianceFamily.factors_per_component`).
    """
    fam = params.family
    k, d = params.n_components, params.n_features
    prec = np.ascontiguousarray(
        fam.factors_per_component(params.precisions_cholesky, k, d), dtype=np.float64)
    means = np.ascontiguousarray(params.means, dtype=np.float64)
    return fam.matrix, means, prec, np.ascontiguousarray(params.log_norm())


def incomplete_stats(X: np.ndarray, w: np.ndarray | None, params: GaussianParams,
                     inputs: tuple | None = None) -> SuffStats:
    """Exact E-step statistics of rows that may hold NaN (not all of a row).

    Parameters
    ----------
    X : ndarray (n, d) float32/float64, C-contiguous
    w : ndarray (n,) float64 or None
    params : GaussianParams
    inputs : tuple, optional
        :func:`_kernel_params` of ``params``.

    Returns
    -------
    SuffStats
        With the shift of :func:`fastgmm._compute.compute_stats`.
    """
    from . import _config
    from ._compute import _symmetrize_upper, missing_line_bounds
    from ._kernels import Grid, Slots

    fam = params.family
    matrix, means, prec, log_norm = _kernel_params(params) if inputs is None else inputs
    n, d = X.shape
    k = params.n_components
    kern = _kernels()
    s_shape = (k, d, d) if matrix else (k, d)
    per_slot = 8 * (k + k * d + int(np.prod(s_shape)) + 2)
    n_slots = max(4 * _parallel.n_threads(), _config.SLOT_BUDGET_BYTES // per_slot)
    slots = Slots(np.empty((n_slots, k)), np.empty((n_slots, k, d)),
                  np.empty((n_slots,) + s_shape), np.empty((0, 0, 0)), np.empty((n_slots, 2)))
    fold = slots[:3] + slots[4:]
    nk, t, s, ll = np.zeros(k), np.zeros((k, d)), np.zeros(s_shape), np.zeros(2)
    if matrix:
        # The full E-step takes its rows in chunks whose (row, component)
        # pairs fit its per-pair scratch, ROWS_PER_GROUP rows or so a group.
        chunk = max(8, min(ROWS_PER_GROUP, kern.PAIR_BUDGET // max(1, k * d)))
        grid = Grid(chunk, -(-ROWS_PER_GROUP // chunk))
        model = kern.MissingModel(means, prec, log_norm, _precision_floor(prec))
        given = (model, missing_line_bounds(means, prec))
        driver = kern.em_stats_missing_full
    else:
        grid = Grid(ROWS_PER_GROUP, 1)
        given = (kern.MissingModel(means, prec, log_norm, np.empty(0)),)
        driver = kern.em_stats_missing_diag
    rows = grid.chunk_size * grid.group
    weighted = w is not None
    step = n_slots * rows
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        wb = w[lo:hi] if weighted else np.empty(0)
        n_groups = -(-(hi - lo) // rows)
        _parallel.run_groups(driver, (X[lo:hi], wb, weighted, *given, grid, slots), n_groups,
                             hi - lo)
        _parallel.fold_slots(fold, n_groups, (nk, t, s, ll))
    if matrix:
        s = _symmetrize_upper(s, "full")
    log_lik = float(ll[0]) if ll[1] == 0 else -np.inf
    weight = float(n) if w is None else float(w.sum())
    if fam.shared:
        # Each component's moments, recentred on the common shift, added up.
        shift = params.weights @ params.means
        per_k = SuffStats("full", params.means, nk, t, s).recenter(
            np.broadcast_to(shift, (k, d)))
        return SuffStats(fam.name, shift, nk, per_k.t, per_k.s.sum(axis=0), log_lik, weight,
                         n)
    return SuffStats(fam.name, params.means.copy(), nk, t, s, log_lik, weight, n)


def split_stats(split: SplitRows, params: GaussianParams, workspace=None, inputs=None,
                hints=None, hints_ok: bool = False) -> SuffStats:
    """Statistics of a :class:`SplitRows` block: complete rows as without the option.

    ``workspace``, ``inputs`` and ``hints`` go to
    :func:`fastgmm._compute.compute_stats`.  Hints are indexed by row: they
    are used when the block has no NaN, or when ``hints_ok`` says that they
    are indexed by the complete rows (a split kept between passes).
    """
    total = None
    if split.complete is not None:
        use = hints_ok or not split.has_missing
        total = compute_stats(split.complete, split.w_complete, params, workspace, inputs,
                              hints if use else None)
    if split.incomplete is not None:
        part = incomplete_stats(split.incomplete, split.w_incomplete, params)
        total = part if total is None else total + part
    if split.wide is not None:
        part = (wide_stats(split.wide, params) if params.family.matrix
                else incomplete_stats(split.wide.X, split.wide.w, params))
        total = part if total is None else total + part
    pruned = params.family.pruned
    if split.mid is not None and pruned:
        part = incomplete_stats(split.mid, split.w_mid, params)
        total = part if total is None else total + part
    groups = split.patterns
    if split.mid is not None and not pruned:
        groups = groups + split.mid_patterns()
    for group in groups:
        part = pattern_stats(group, params)
        total = part if total is None else total + part
    return total


def marginal_params(params: GaussianParams, obs: np.ndarray) -> GaussianParams:
    """The mixture of the features ``obs`` (a marginal of a Gaussian mixture is one)."""
    marg = params.family.marginal(params.covariances, obs)
    return GaussianParams.from_covariances(params.covariance_type, params.weights,
                                           params.means[:, obs], marg)


def pattern_stats(group: PatternRows, params: GaussianParams) -> SuffStats:
    """Exact statistics of the rows of one missing pattern, through the complete-data kernel.

    The E-step of the observed columns under the marginal mixture gives
    ``n_k``, ``t_o`` and ``s_oo``; the conditional mean is affine in
    ``x_o`` (``x*_m - mu_m = B_k (x_o - mu_o)`` with ``B_k = Sigma_mo
    Sigma_oo^{-1}``), so the missing blocks follow exactly: ``t_m = B t_o``,
    ``s_mo = B s_oo``, ``s_mm = B s_oo B^T + n_k C_k`` with ``C_k = Sigma_mm
    - B_k Sigma_om`` (tied: about the common shift, see the module notes).
    """
    ctype = params.covariance_type
    o, m = group.observed, group.missing
    k = params.n_components
    marg = marginal_params(params, o)
    if group.hints is None and params.family.pruned:
        group.hints = RowHints(group.X.shape[0])
    ws = group.workspace
    if ws is None or ws.covariance_type != ctype or ws.shapes[1] != (k, o.size):
        ws = group.workspace = StatsWorkspace(ctype, k, o.size, _parallel.n_threads(),
                                              group.X.shape[0])
    st = compute_stats(group.X, group.w, marg, ws, hints=group.hints)
    shift, t, s = params.family.lift_pattern(st, params, o, m, marg.precisions_cholesky)
    return SuffStats(ctype, shift, st.nk, t, s, st.log_likelihood, st.weight, st.n_samples)


def missing_stats(X: np.ndarray, w: np.ndarray | None, params: GaussianParams) -> SuffStats:
    """Statistics of rows that may hold NaN (:class:`SplitRows`, then :func:`split_stats`)."""
    return split_stats(SplitRows(X, w), params)


# ---------------------------------------------------------------------------
# The E-step
# ---------------------------------------------------------------------------


class Marginalize(EStep):
    """The E-step of rows with missing (NaN) entries: exact, by marginalisation.

    Rows without NaN go through the complete-data E-step unchanged (same
    bits with the option on or off); see the module notes.
    """

    allow_nan = True

    def check_block(self, X, start=0, name="X"):
        check_missing_rows(X, start, name)

    def prepare(self, X, w, start=0):
        return SplitRows(X, w, start)

    def stats(self, block: SplitRows, params, cache: BlockCache):
        # Kept between passes, the hints are indexed by the block's complete
        # rows, which stay in place; a source's view of a pass is indexed by
        # the block's rows, which is the same only when the block has no NaN.
        n_complete = 0 if block.complete is None else block.complete.shape[0]
        ws = cache.workspace(params, max(n_complete, 1))
        # The complete-data kernel's inputs only serve complete rows: a block
        # without any (wide, sparse data) does not pay for them.
        inputs = cache.inputs(params, block.dtype) if n_complete else None
        return split_stats(block, params, ws, inputs, cache.hints(), hints_ok=cache.keep)

    def observed(self, block: SplitRows):
        return block.observed

    def check_pass(self, observed, where="X", names=None):
        if observed is not None:
            check_observed_features(observed, where, names)
            warn_scarce_features(observed, where, names)

    def seeds_from_rows(self, block: SplitRows) -> bool:
        return not block.has_missing

    def forget(self, block: SplitRows) -> None:
        for group in block.patterns:
            if group.hints is not None:
                group.hints.valid = False

    def point(self, X, params, **what):
        return missing_point_outputs(X, params, **what)


#: The missing-data E-step (``missing='marginalize'``).
MARGINALIZE = Marginalize()


def estep_for(missing: str) -> EStep:
    """The E-step of a ``missing`` option value (validated)."""
    return MARGINALIZE if check_missing_option(missing) == "marginalize" else COMPLETE


# ---------------------------------------------------------------------------
# Per-point outputs and imputation
# ---------------------------------------------------------------------------


def _point_kernel(X: np.ndarray, params: GaussianParams, mode: int, u=None, eps=None):
    """Log densities ``(n, k)`` and, for ``mode`` 1 or 2, completed rows ``(n, d)``."""
    from ._kernels import Grid

    matrix, means, prec, log_norm = _kernel_params(params)
    n, d = X.shape
    k = params.n_components
    kern = _kernels()
    driver = kern.point_missing_full if matrix else kern.point_missing_diag
    out = kern.MissingOut(np.empty((n, k)), np.empty((n, d) if mode else (0, d)))
    u = np.empty(0) if u is None else np.ascontiguousarray(u, dtype=np.float64)
    eps = np.empty((0, d)) if eps is None else np.ascontiguousarray(eps, dtype=np.float64)
    n_groups = -(-n // ROWS_PER_GROUP)
    _parallel.run_groups(driver, (X, kern.MissingModel(means, prec, log_norm, np.empty(0)),
                                  kern.Draws(int(mode), u, eps), Grid(ROWS_PER_GROUP, 1), out),
                         n_groups, n)
    return out


def missing_point_outputs(X: np.ndarray, params: GaussianParams, *, resp: bool = False,
                          log_prob: bool = False, score: bool = False,
                          labels: bool = False, out_dtype=None) -> dict:
    """:func:`fastgmm._compute.point_outputs` for rows that may hold NaN.

    Rows with NaN use the marginal density of their observed entries; the
    others go through :func:`~fastgmm._compute.point_outputs` unchanged.
    """
    what = dict(resp=resp, log_prob=log_prob, score=score, labels=labels)
    rows = check_missing_rows(X)
    if not rows.any():
        return point_outputs(X, params, out_dtype=out_dtype, **what)
    check_finite_params(params)
    n, k = X.shape[0], params.n_components
    out_dtype = X.dtype if out_dtype is None else out_dtype
    out = {}
    if resp or log_prob:
        out["resp" if resp else "log_prob"] = np.empty((n, k), dtype=out_dtype)
    if score:
        out["score"] = np.empty(n, dtype=out_dtype)
    if labels:
        out["labels"] = np.empty(n, dtype=np.int64)
    full_rows = np.flatnonzero(~rows)
    if full_rows.size:
        part = point_outputs(np.ascontiguousarray(X[full_rows]), params,
                             out_dtype=out_dtype, **what)
        for key, value in part.items():
            out[key][full_rows] = value
    miss_rows = np.flatnonzero(rows)
    miss_rows = miss_rows[pattern_groups(np.isnan(X[miss_rows]))[0]]
    for lo in range(0, miss_rows.size, _POINT_BLOCK_ROWS):
        idx = miss_rows[lo:lo + _POINT_BLOCK_ROWS]
        logp, _ = _point_kernel(np.ascontiguousarray(X[idx]), params, 0)
        top = logp.max(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            lse = top[:, 0] + np.log(np.exp(logp - np.where(np.isfinite(top), top, 0.0))
                                     .sum(axis=1))
        if log_prob:
            out["log_prob"][idx] = logp
        if resp:
            with np.errstate(invalid="ignore"):
                out["resp"][idx] = np.exp(logp - lse[:, None])
        if score:
            out["score"][idx] = lse
        if labels:
            out["labels"][idx] = np.argmax(logp, axis=1)
    return out


def impute(X: np.ndarray, params: GaussianParams, rng: np.random.Generator | None = None,
           out_dtype=None) -> np.ndarray:
    """``X`` with its NaN entries filled in under the mixture.

    Parameters
    ----------
    X : ndarray (n, d) float32/float64, C-contiguous
    params : GaussianParams
    rng : numpy Generator, optional
        None: the conditional expectation ``sum_k r_k(x_o) E_k[x_m | x_o]``;
        a generator: one draw from the conditional distribution (a Gaussian
        mixture) of each row.

    Returns
    -------
    ndarray (n, d), a new array in ``out_dtype`` (default the dtype of ``X``)
    """
    rows = check_missing_rows(X)
    out = np.array(X, dtype=X.dtype if out_dtype is None else out_dtype, copy=True)
    if not rows.any():
        return out
    check_finite_params(params)
    miss_rows = np.flatnonzero(rows)
    miss_rows = miss_rows[pattern_groups(np.isnan(X[miss_rows]))[0]]
    d = X.shape[1]
    for lo in range(0, miss_rows.size, _POINT_BLOCK_ROWS):
        idx = miss_rows[lo:lo + _POINT_BLOCK_ROWS]
        if rng is None:
            _, filled = _point_kernel(np.ascontiguousarray(X[idx]), params, 1)
        else:
            u = rng.random(idx.size)
            eps = rng.standard_normal((idx.size, d))
            _, filled = _point_kernel(np.ascontiguousarray(X[idx]), params, 2, u, eps)
        out[idx] = filled
    return out


# ---------------------------------------------------------------------------
# Conditioning
# ---------------------------------------------------------------------------


@dataclass
class ConditionalMixture:
    """The conditional distribution of some features given the others, row by row.

    Given the values ``x_g`` of the features ``given_features`` of a row, the
    other features ``m`` follow a Gaussian mixture with weights
    ``weights[i, k] ∝ w_k N(x_g; mu_kg, Sigma_kgg)``, means ``means[i, k] =
    mu_km + Sigma_kmg Sigma_kgg^{-1} (x_g - mu_kg)`` and covariances
    ``covariances[k] = Sigma_kmm - Sigma_kmg Sigma_kgg^{-1} Sigma_kgm`` (the
    same for every row).

    Attributes
    ----------
    weights : ndarray (n_samples, n_components)
    means : ndarray (n_samples, n_components, n_targets)
    covariances : ndarray (n_components, n_targets, n_targets)
        Full matrices whatever the model's covariance type.
    given_features : ndarray of int
        The conditioning features, in the order of the columns of ``X_given``.
    target_features : ndarray of int
        The other features, ascending: the last axis of ``means``.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    given_features: np.ndarray
    target_features: np.ndarray

    def predict(self, return_cov: bool = False):
        """The conditional mean of the target features per row (a regression).

        Parameters
        ----------
        return_cov : bool, default=False
            Also return the conditional covariance of each row (law of total
            covariance: ``sum_k w_k (C_k + m_k m_k^T) - m m^T``).

        Returns
        -------
        mean : ndarray (n_samples, n_targets)
        cov : ndarray (n_samples, n_targets, n_targets)
            Only with ``return_cov``.
        """
        mean = np.einsum("ik,ikm->im", self.weights, self.means)
        if not return_cov:
            return mean
        dev = self.means - mean[:, None, :]
        cov = (np.einsum("ik,kab->iab", self.weights, self.covariances)
               + np.einsum("ik,ika,ikb->iab", self.weights, dev, dev))
        return mean, cov


def condition(params: GaussianParams, X_given: np.ndarray,
              given: np.ndarray) -> ConditionalMixture:
    """The conditional mixture of the features not in ``given``, per row of ``X_given``.

    Parameters
    ----------
    params : GaussianParams
    X_given : ndarray (n, len(given)), finite, C-contiguous float32/float64
    given : ndarray of int, distinct feature indices (at least one, not all)

    Returns
    -------
    ConditionalMixture
    """
    from scipy import linalg

    check_finite_params(params)
    k, d = params.n_components, params.n_features
    target = np.setdiff1d(np.arange(d), given)
    full = params.family.to_full(params.covariances, k, d)
    gg = full[:, given][:, :, given]
    mg = full[:, target][:, :, given]
    mm = full[:, target][:, :, target]
    marginal = marginal_params(params, given)
    log_prob = point_outputs(X_given, marginal, log_prob=True,
                             out_dtype=np.float64)["log_prob"]
    top = log_prob.max(axis=1, keepdims=True)
    weights = np.exp(log_prob - top)
    weights /= weights.sum(axis=1, keepdims=True)
    gain = np.empty((k, target.size, given.size))
    cond_cov = np.empty((k, target.size, target.size))
    for j in range(k):
        # gain = Sigma_mg Sigma_gg^{-1}, through a solve with the SPD Sigma_gg.
        gain[j] = linalg.solve(gg[j], mg[j].T, assume_a="pos").T
        c = mm[j] - gain[j] @ mg[j].T
        cond_cov[j] = 0.5 * (c + c.T)
    dev = X_given.astype(np.float64)[:, None, :] - params.means[None, :, given]
    means = params.means[None, :, target] + np.einsum("kmg,ikg->ikm", gain, dev)
    return ConditionalMixture(weights, means, cond_cov, np.asarray(given), target)
