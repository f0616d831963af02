"""Compiled kernels for rows with missing entries (NaN marks a missing value).

The E-step of a row with observed coordinates ``o`` and missing ``m`` uses
the marginal density of ``x_o``; the M-step sums use the completed row
``x*_k = (x_o, x*_m)`` with the conditional mean ``x*_m`` of component ``k``
and add its conditional covariance to the second moment.

For full (and tied) covariances everything comes from the precision
``Lambda = U U^T`` (``U`` the upper-triangular ``prec_chol``), so no
``|o| x |o|`` matrix is ever factorised: with ``A = U[m, :]`` and ``z =
U^T (x - mu)`` taken with zeros at ``m``,

* ``Lambda_mm = A A^T = L L^T`` (a small ``|m| x |m|`` Cholesky),
* ``x*_m - mu_m = -Lambda_mm^{-1} A z``, the conditional covariance is
  ``Lambda_mm^{-1}``,
* the marginal Mahalanobis distance of ``x_o`` is ``|| z + A^T (x*_m -
  mu_m) ||^2`` (the full quadratic form at the completed row), and
* ``log det Sigma_oo = log det Sigma + 2 sum log diag L``.

Diagonal (and spherical, passed as diagonal) covariances make the missing
coordinates independent: ``x*_m = mu_m`` with the component's variances.

Layout
------
This file is self-contained for its compiled code (Numba's disk cache
checks only the source file of the function it loads): every function calls
only compiled functions defined above it in this file.  It takes from
:mod:`fastgmm._kernels` only two named tuples, :class:`Grid` and
:class:`Slots` (plain Python classes, part of the drivers' argument types),
so that both kernel files cut rows and hand out slots alike.  Sections:

1. Constants.
2. Named tuples: the drivers' inputs (:class:`MissingModel`,
   :class:`LineBounds`, :class:`Draws`, :class:`MissingOut`), the E-step's
   per-block scratch and their allocators.
3. Per-row helpers: responsibilities, the batched Cholesky factorisation of
   ``Lambda_mm`` (one for the E-step and the per-point outputs), the
   conditional mean of a row's missing entries.
4. The steps of the full-covariance E-step, in the order its driver runs
   them.
5. Drivers, fused E-step and statistics: :func:`em_stats_missing_full`,
   :func:`em_stats_missing_diag`.
6. Drivers, per-point outputs and imputation: :func:`point_missing_full`,
   :func:`point_missing_diag`.

Conventions follow :mod:`fastgmm._kernels`: arrays and named tuples in,
arrays out, no validation; each driver processes the row groups
``g_lo:g_hi`` (its last two arguments), group ``g`` covers the
``grid.group`` chunks of ``grid.chunk_size`` rows from row ``g *
grid.chunk_size * grid.group`` on and writes only slot ``g`` (or its own
output rows), so :func:`fastgmm._parallel.run_groups` may share the groups
between threads and the fold in group order gives the same bits whatever
the thread count.  A driver allocates its scratch once per call.  Per row,
the arithmetic runs in float64 whatever the dtype of ``X``; parameters are
float64.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from ._config import jit
from ._kernels import Grid, Slots  # noqa: F401  (named tuples: the drivers' argument types)

# ---------------------------------------------------------------------------
# 1. Constants
# ---------------------------------------------------------------------------

_LOG_2PI = math.log(2.0 * math.pi)

#: Responsibilities below ``exp(RESP_LOG_FLOOR)`` times the row's largest are
#: exact zeros, and the bounds skip every component that would get one.  The
#: role of :data:`fastgmm._kernels.RESP_LOG_FLOOR` (-50), with a value of its
#: own, for a documented reason: -37 is the largest integer for which a
#: dropped responsibility stays below half an ulp of the row's largest
#: (``exp(-37) = 8.5e-17 < 2^-53 <= exp(-36)``), so dropping one changes no
#: sum it would enter by more than rounding already does; the looser -50
#: leaves more components within reach of these kernels' bounds, which are
#: looser than the complete-data ones (marginal densities), and cost a
#: quarter more time on separated clusters.  ``tests/test_kernels_layout.py``
#: pins both values and this relation.  Written here rather than imported:
#: Numba freezes a global into the compiled code, and its disk cache, which
#: checks only this file, would not notice a change made in another one.
RESP_LOG_FLOOR = -37.0

#: The line bound's distance is shrunk by this factor so that the rounding
#: of ``U^{-1}`` and of the projections can never make it exceed the exact one.
_LINE_SAFETY = 0.999

#: Its denominator ``u_o^T Sigma_oo u_o`` is a sum of about ``(nm + 1)^2``
#: terms, each at most ``lambda_max(Sigma)`` and computed with a relative
#: error of about ``cond(U) (d + 2) eps``; ``_LINE_MARGIN (nm + 1)^2 (d + 2) /
#: floor`` (``1 / floor >= lambda_max(Sigma)``) is added to it, which covers
#: that rounding up to ``cond(U)`` near 1e6, so that the bound holds also
#: where the sum cancels (the direction mostly missing).
_LINE_MARGIN = 1e-10

#: Doubles in each per-pair array of :func:`em_stats_missing_full`: its rows
#: are taken in chunks small enough that every (row, component) pair fits
#: (the caller sizes ``grid.chunk_size`` with it).
PAIR_BUDGET = 2**18

#: A component's pairs in one round go through BLAS products (``z = U^T d``
#: and the second moments) from this many on (below it, a call costs more
#: than a loop).
_GEMM_MIN_PAIRS = 8

#: Factors of one size factorised side by side in :func:`em_stats_missing_full`.
_FACTOR_BATCH = 32


# ---------------------------------------------------------------------------
# 2. Named tuples: the drivers' inputs, the E-step's scratch
# ---------------------------------------------------------------------------

MissingModel = namedtuple("MissingModel", ["means", "prec", "log_norm", "floor"])
MissingModel.__doc__ = """A model as the missing-data kernels read it, all float64.

``means`` (k, d)
    Also the shift of the statistics.
``prec`` (k, d, d) upper-triangular precision factors (full and tied), or
(k, d) square roots of the precisions (diagonal and spherical)
``log_norm`` (k,)
``floor`` (k,), or length 0 where unused (all but the full E-step)
    Lower bounds of the smallest eigenvalue of each precision matrix (zero:
    never skip the component); see :func:`em_stats_missing_full`.
"""

LineBounds = namedtuple("LineBounds", ["vdir", "sig", "sv", "s_full"])
LineBounds.__doc__ = """Inputs of the line bound of :func:`em_stats_missing_full`, float64.

Computed once per call by :func:`fastgmm._compute.missing_line_bounds`.

``vdir`` (k, k, d)
    ``vdir[b, j]`` the unit vector from ``mu_j`` to ``mu_b`` (zero where
    the means coincide, which disables the bound).
``sig`` (k, d, d)
    The covariances ``Sigma_j = U_j^{-T} U_j^{-1}``.
``sv`` (k, k, d), ``s_full`` (k, k)
    ``Sigma_j vdir[b, j]`` and ``vdir[b, j]^T Sigma_j vdir[b, j]``.
"""

Draws = namedtuple("Draws", ["mode", "u", "eps"])
Draws.__doc__ = """What the per-point drivers complete, and the random numbers of a draw.

``mode`` int
    0: log densities only; 1: also the conditional mean of each row under
    the mixture, ``sum_k r_k x*_k``; 2: also a draw from the conditional
    distribution (component ``k`` with probability ``r_k`` chosen by
    ``u[i]``, then ``x*_k + L^{-T} eps[i, :nm]``).
``u`` (n,) float64 uniforms (mode 2, else length 0)
``eps`` (n, d) float64 standard normals (mode 2, else (0, d))
"""

MissingOut = namedtuple("MissingOut", ["logp", "x"])
MissingOut.__doc__ = """Outputs of the per-point drivers.

``logp`` (n, k) float64
    ``log w_k + log N(x_o)``.
``x`` (n, d) float64 (modes 1 and 2), else (0, d)
    The completed rows.
"""

ModelTerms = namedtuple("ModelTerms", ["lam", "log_gap", "half_floor", "bound_base", "centre",
                                       "means_c", "means_c2"])
ModelTerms.__doc__ = """Per-call terms of the full E-step's model (:func:`_model_terms`).

``lam`` (k, d, d)
    The precisions ``U U^T``: each pattern's ``Lambda_mm`` is read from them.
``log_gap``, ``half_floor``, ``bound_base`` (k,)
    The eigenvalue bound is ``bound_base + nm log_gap - half_floor
    |d_o|^2`` (``bound_base`` infinite, the others zero, where ``floor`` is
    zero: never skipped).
``centre`` (d,), ``means_c``, ``means_c2`` (k, d)
    The means' centre, the means about it and their squares.
"""

RowScratch = namedtuple("RowScratch", ["xs", "ows", "qn", "missb", "nmb", "pat", "wts", "bnd",
                                       "top", "best_b", "next_b", "pos0", "prev"])
RowScratch.__doc__ = """Per-row scratch of a chunk of the full E-step (``m`` rows, block order).

``xs`` (m, d)
    Rows less the centre, zeros at the missing entries.
``ows`` (m, d)
    The observed mask (1 observed, 0 missing).
``qn`` (m,)
    Squared norms of ``xs``.
``missb`` (m, d) int64, ``nmb`` (m,) int64
    Missing indices (ascending) and their count.
``pat`` (m,) int64
    Pattern ids: rows of one pattern side by side share one.
``wts`` (m,)
    Row weights.
``bnd`` (k, m)
    Eigenvalue bounds of every log density.
``top`` (m,) int64, ``best_b``, ``next_b`` (m,)
    Each row's component of largest bound, that bound and the second largest.
``pos0`` (m,) int64
    Where each row's first pair sits.
``prev`` (d,) int64
    The last pattern seen.
"""

PairScratch = namedtuple("PairScratch", ["xptr", "x_comp", "x_pos", "koff", "fill", "prow",
                                         "dif", "dw", "zb", "lp", "wp", "fid", "sq"])
PairScratch.__doc__ = """Per-pair scratch of a chunk of the full E-step.

A pair is a (row, component) whose log density is evaluated exactly (index
``p``): round 0 holds each row's first pair at ``p < m``, round 1 the others
after them; within a round, pairs of component ``k`` sit at ``koff[round,
k]:koff[round, k + 1]``, rows ascending.

``xptr`` (m + 1,) int64, ``x_comp``, ``x_pos`` (m k,) int64
    Round 1 in row order: row ``r``'s other components and their pairs.
``koff`` (2, k + 1) int64, ``fill`` (k,) int64
    Pairs per round and component, and insertion points.
``prow`` (m k,) int64
    The row of each pair.
``dif``, ``dw`` (m k, d)
    Completed difference ``x*_k - mu_k`` of each pair, and that times its
    weighted responsibility.
``zb`` (m k, d)
    ``U^T`` times the difference.
``lp``, ``wp`` (m k,)
    Log density and weighted responsibility of each pair.
``fid`` (m k,) int64
    The factor of ``Lambda_mm`` each pair uses (-1: none missing).
``sq`` (d, d)
    One component's second moments (BLAS output).
"""

FactorScratch = namedtuple("FactorScratch", ["fac_row", "fac_k", "fac_w", "fac_ld", "fac_off",
                                             "n_by", "by_size", "bl", "bi", "bc", "bp", "bdet"])
FactorScratch.__doc__ = """The factors of ``Lambda_mm`` of a chunk of the full E-step.

One factor per run of pairs of one component and one pattern.

``fac_row``, ``fac_k`` (m k,) int64; ``fac_w``, ``fac_ld`` (m k,); ``fac_off`` (m k,) int64
    Row, component, summed weight, log det, and where its packed lower
    triangles of ``L`` and of ``Lambda_mm^{-1}`` start in the
    :class:`Packed` arrays.
``n_by`` (d + 1,) int64, ``by_size`` (m k,) int64
    The factors sorted by size (counting sort).
``bl``, ``bi``, ``bc`` (d (d + 1) / 2, B); ``bp`` (d, B); ``bdet`` (B,)
    A batch of ``B`` factors of one size, side by side (see
    :func:`_cholesky_batch`).
"""

Packed = namedtuple("Packed", ["l", "c"])
Packed.__doc__ = """Packed lower triangles of the factors, grown as needed (:func:`_grow_packed`).

``l``
    ``L``, its diagonal as reciprocals (see :func:`_store_batch`).
``c``
    ``Lambda_mm^{-1}``, the conditional covariance.
"""


@jit(inline=True)
def _row_scratch(n_rows, n_comp, d):
    """A :class:`RowScratch` for chunks of up to ``n_rows`` rows."""
    return RowScratch(np.empty((n_rows, d)), np.empty((n_rows, d)), np.empty(n_rows),
                      np.empty((n_rows, d), dtype=np.int64), np.empty(n_rows, dtype=np.int64),
                      np.empty(n_rows, dtype=np.int64), np.empty(n_rows),
                      np.empty((n_comp, n_rows)), np.empty(n_rows, dtype=np.int64),
                      np.empty(n_rows), np.empty(n_rows), np.empty(n_rows, dtype=np.int64),
                      np.empty(d, dtype=np.int64))


@jit(inline=True)
def _pair_scratch(n_rows, n_comp, d):
    """A :class:`PairScratch` for chunks of up to ``n_rows`` rows."""
    n_pairs = n_rows * n_comp
    return PairScratch(np.empty(n_rows + 1, dtype=np.int64), np.empty(n_pairs, dtype=np.int64),
                       np.empty(n_pairs, dtype=np.int64),
                       np.empty((2, n_comp + 1), dtype=np.int64),
                       np.empty(n_comp, dtype=np.int64), np.empty(n_pairs, dtype=np.int64),
                       np.empty((n_pairs, d)), np.empty((n_pairs, d)), np.empty((n_pairs, d)),
                       np.empty(n_pairs), np.empty(n_pairs), np.empty(n_pairs, dtype=np.int64),
                       np.empty((d, d)))


@jit(inline=True)
def _factor_scratch(n_rows, n_comp, d, batch):
    """A :class:`FactorScratch` for chunks of up to ``n_rows`` rows, batches of ``batch``."""
    n_pairs = n_rows * n_comp
    n_tri = d * (d + 1) // 2
    return FactorScratch(np.empty(n_pairs, dtype=np.int64), np.empty(n_pairs, dtype=np.int64),
                         np.empty(n_pairs), np.empty(n_pairs), np.empty(n_pairs, dtype=np.int64),
                         np.empty(d + 1, dtype=np.int64), np.empty(n_pairs, dtype=np.int64),
                         np.empty((n_tri, batch)), np.empty((n_tri, batch)),
                         np.empty((n_tri, batch)), np.empty((d, batch)), np.empty(batch))


# ---------------------------------------------------------------------------
# 3. Per-row helpers
# ---------------------------------------------------------------------------


@jit()
def _missing_index(x, miss):
    """Write the indices of the NaN entries of ``x`` into ``miss`` (ascending); return the count."""
    nm = 0
    for j in range(x.shape[0]):
        if math.isnan(x[j]):
            miss[nm] = j
            nm += 1
    return nm


@jit()
def _same_pattern(miss, nm, prev, n_prev):
    """Whether ``miss[:nm]`` equals ``prev[:n_prev]``."""
    if nm != n_prev:
        return False
    for a in range(nm):
        if miss[a] != prev[a]:
            return False
    return True


@jit()
def _normalize(logp, resp):
    """``resp = exp(logp - logsumexp(logp))``, zero below the cut-off; returns logsumexp."""
    n_comp = logp.shape[0]
    best = -np.inf
    for k in range(n_comp):
        if logp[k] > best:
            best = logp[k]
    if best == -np.inf:
        for k in range(n_comp):
            resp[k] = 0.0
        return -np.inf
    # Terms under the cut-off are left out of the sum, as their statistics
    # are (and as the lists of :mod:`fastgmm._kernels` leave them out).
    total = 0.0
    for k in range(n_comp):
        gap = logp[k] - best
        if gap < RESP_LOG_FLOOR:
            resp[k] = 0.0
        else:
            resp[k] = math.exp(gap)
            total += resp[k]
    inv = 1.0 / total
    for k in range(n_comp):
        resp[k] *= inv
    return best + math.log(total)


@jit()
def _pick_component(resp, u):
    """The component a uniform draw ``u`` in [0, 1) selects from responsibilities ``resp``.

    Never one of zero responsibility, even when rounding leaves the running
    sum just below ``u`` at the end.
    """
    n_comp = resp.shape[0]
    pick = n_comp - 1
    cum = 0.0
    for k in range(n_comp):
        cum += resp[k]
        if u < cum and resp[k] > 0.0:
            pick = k
            break
    while pick > 0 and resp[pick] == 0.0:
        pick -= 1
    return pick


@jit()
def _row_diag(x, means, prec, log_norm, miss, nm, diff, logp):
    """Marginal log densities and completed differences of one row, diagonal covariances.

    ``prec`` is ``(k, d)``, the square roots of the precisions; ``diff[k]``
    is ``x - mu_k`` with zeros at the missing entries (their conditional mean
    is ``mu``).
    """
    n_comp, d = means.shape
    for k in range(n_comp):
        acc = 0.0
        for j in range(d):
            v = (x[j] - means[k, j]) * prec[k, j]
            diff[k, j] = x[j] - means[k, j]
            if not math.isnan(v):
                acc += v * v
        corr = 0.0
        for a in range(nm):
            diff[k, miss[a]] = 0.0
            corr += 0.5 * _LOG_2PI - math.log(prec[k, miss[a]])
        logp[k] = log_norm[k] + corr - 0.5 * acc


@jit()
def _cholesky_batch(nm, nb, bl, bp, bdet, bi, bc, inverse):
    """Cholesky factors of ``nb`` matrices ``Lambda_mm`` of size ``nm``, side by side.

    Parameters
    ----------
    nm, nb : int
    bl : ndarray (>= nm (nm + 1) / 2, >= nb) float64
        Column ``i`` holds the packed lower triangle of matrix ``i`` (row by
        row); overwritten with that of its factor ``L``.
    bp : ndarray (>= nm, >= nb) float64, out
        The reciprocals of the diagonal of each ``L``.
    bdet : ndarray (>= nb,) float64, out
        The product of each diagonal (see :func:`_store_batch`).
    bi, bc : ndarray like ``bl``, out when ``inverse``
        ``L^{-1}`` and ``Lambda_mm^{-1} = L^{-T} L^{-1}`` (packed lower).
    inverse : bool

    Notes
    -----
    The batch is innermost so that the short dependent chains of the
    factorisation (square roots, reciprocals) run side by side.
    ``Lambda_mm`` is positive definite whenever ``U`` is invertible; a
    non-positive pivot can only come from rounding and is replaced by 1e-300.
    """
    for i in range(nb):
        bdet[i] = 1.0
    for a in range(nm):
        ta = a * (a + 1) // 2
        for b in range(a + 1):
            tb = b * (b + 1) // 2
            for c in range(b):
                for i in range(nb):
                    bl[ta + b, i] -= bl[ta + c, i] * bl[tb + c, i]
            if a == b:
                for i in range(nb):
                    v = bl[ta + a, i]
                    piv = math.sqrt(v) if v > 0.0 else 1e-300
                    bl[ta + a, i] = piv
                    bp[a, i] = 1.0 / piv
                    bdet[i] *= piv
            else:
                for i in range(nb):
                    bl[ta + b, i] *= bp[b, i]
    if not inverse:
        return
    for a in range(nm):
        ta = a * (a + 1) // 2
        for i in range(nb):
            bi[ta + a, i] = bp[a, i]
        for b in range(a):
            for i in range(nb):
                bi[ta + b, i] = 0.0
            for c in range(b, a):
                tc = c * (c + 1) // 2
                for i in range(nb):
                    bi[ta + b, i] -= bl[ta + c, i] * bi[tc + b, i]
            for i in range(nb):
                bi[ta + b, i] *= bp[a, i]
    for a in range(nm):
        ta = a * (a + 1) // 2
        for b in range(a + 1):
            for i in range(nb):
                bc[ta + b, i] = 0.0
            for c in range(a, nm):
                tc = c * (c + 1) // 2
                for i in range(nb):
                    bc[ta + b, i] += bi[tc + a, i] * bi[tc + b, i]


@jit()
def _store_batch(nm, nb, bl, bp, bdet, bc, lfac, cfac, offs, lds, idx, i0):
    """Copy the factors of a batch (:func:`_cholesky_batch`) to their packed places.

    Factor ``i`` of the batch is number ``f = idx[i0 + i]``: its ``L`` goes to
    ``lfac[offs[f]:]``, its ``Lambda_mm^{-1}`` (``bc``) to ``cfac[offs[f]:]``
    unless ``cfac`` is empty, its ``log det L`` to ``lds[f]``.  The diagonal
    of ``L`` is kept as its reciprocals: the solves multiply (a division per
    step would lengthen their chains of dependent steps).  One logarithm of
    the product of the pivots, unless it left the normal range.
    """
    n_tri = nm * (nm + 1) // 2
    with_c = cfac.shape[0] > 0
    for i in range(nb):
        f = idx[i0 + i]
        off = offs[f]
        for t in range(n_tri):
            lfac[off + t] = bl[t, i]
        if with_c:
            for t in range(n_tri):
                cfac[off + t] = bc[t, i]
        for a in range(nm):
            lfac[off + a * (a + 1) // 2 + a] = bp[a, i]
        det = bdet[i]
        if 1e-280 < det < 1e280:
            lds[f] = math.log(det)
        else:
            acc = 0.0
            for a in range(nm):
                acc += math.log(bl[a * (a + 1) // 2 + a, i])
            lds[f] = acc


@jit()
def _back_substitute(nm, lfac, off, bvec):
    """Solve ``L^T y = bvec`` in place, ``L`` packed at ``lfac[off:]`` (:func:`_store_batch`)."""
    for a in range(nm - 1, -1, -1):
        acc = bvec[a]
        for c in range(a + 1, nm):
            acc -= lfac[off + c * (c + 1) // 2 + a] * bvec[c]
        bvec[a] = acc * lfac[off + a * (a + 1) // 2 + a]


@jit()
def _complete_row(prec_chol, k, miss, nm, lfac, off, z, diff, bvec):
    """Conditional mean of the missing entries of a row under component ``k``; its distance.

    On entry ``z[k] = U_k^T diff[k]`` with zeros at the missing entries
    ``miss[:nm]``.  ``bvec = L^{-1} A z``, then ``L^T y = bvec``: ``y =
    Lambda_mm^{-1} A z``, and ``diff[k, missing] = -y`` (``x*_m - mu_m``).
    Returns the marginal distance, the full quadratic form at the completed
    row (``|z[k]|^2`` once ``z[k]`` is brought up to date).

    The per-point drivers call this; the E-step writes the same steps out in
    its loop over pairs (:func:`_pair_log_densities`), where a call, or
    Numba's inlining of this function, cost it about 15%.
    """
    d = z.shape[1]
    for a in range(nm):
        ra = miss[a]
        ta = off + a * (a + 1) // 2
        acc = 0.0
        for e in range(ra, d):
            acc += prec_chol[k, ra, e] * z[k, e]
        for c in range(a):
            acc -= lfac[ta + c] * bvec[c]
        bvec[a] = acc * lfac[ta + a]
    _back_substitute(nm, lfac, off, bvec)
    for a in range(nm):
        diff[k, miss[a]] = -bvec[a]
    for a in range(nm):
        ra = miss[a]
        da = diff[k, ra]
        for e in range(ra, d):
            z[k, e] += da * prec_chol[k, ra, e]
    maha = 0.0
    for e in range(d):
        maha += z[k, e] * z[k, e]
    return maha


# ---------------------------------------------------------------------------
# 4. Steps of the full-covariance E-step (:func:`em_stats_missing_full`)
# ---------------------------------------------------------------------------


@jit()
def _precisions(prec_chol):
    """The precisions ``U U^T`` (k, d, d): each pattern's ``Lambda_mm`` is read from them."""
    n_comp, d = prec_chol.shape[0], prec_chol.shape[1]
    lam = np.empty((n_comp, d, d))
    for k in range(n_comp):
        for a in range(d):
            for b in range(d):
                acc = 0.0
                for e in range(max(a, b), d):
                    acc += prec_chol[k, a, e] * prec_chol[k, b, e]
                lam[k, a, b] = acc
    return lam


@jit()
def _model_terms(model):
    """The :class:`ModelTerms` of ``model``, once per call."""
    means, prec_chol, log_norm, floor = model
    n_comp, d = means.shape
    lam = _precisions(prec_chol)
    log_gap = np.zeros(n_comp)
    half_floor = np.zeros(n_comp)
    bound_base = np.full(n_comp, np.inf)
    for k in range(n_comp):
        if floor[k] > 0.0:
            bound_base[k] = log_norm[k]
            log_gap[k] = 0.5 * (_LOG_2PI - math.log(floor[k]))
            half_floor[k] = 0.5 * floor[k]
    # Rows and means are taken about the means' centre, where the expanded
    # squared distances of the bounds lose least to cancellation.
    centre = np.zeros(d)
    for k in range(n_comp):
        for j in range(d):
            centre[j] += means[k, j]
    for j in range(d):
        centre[j] /= n_comp
    means_c = np.empty((n_comp, d))
    means_c2 = np.empty((n_comp, d))
    for k in range(n_comp):
        for j in range(d):
            v = means[k, j] - centre[j]
            means_c[k, j] = v
            means_c2[k, j] = v * v
    return ModelTerms(lam, log_gap, half_floor, bound_base, centre, means_c, means_c2)


@jit()
def _load_rows(X, w, weighted, lo, m, centre, rs):
    """Step 1: rows ``lo .. lo + m - 1`` into ``rs``.

    Values less the centre with zeros at the missing entries, the observed
    mask, squared norms, missing indices, weights and pattern ids (rows of
    one pattern side by side share one).
    """
    xs, ows, qn, missb, nmb, pat, wts, prev = (rs.xs, rs.ows, rs.qn, rs.missb, rs.nmb, rs.pat,
                                               rs.wts, rs.prev)
    d = X.shape[1]
    n_prev = -1
    pid = -1
    for r in range(m):
        i = lo + r
        nm = 0
        qr = 0.0
        # Branch-free (the positions of NaN are random).
        for j in range(d):
            v = X[i, j]
            gap = v != v
            missb[r, nm] = j
            nm += gap
            xv = 0.0 if gap else v - centre[j]
            xs[r, j] = xv
            ows[r, j] = 0.0 if gap else 1.0
            qr += xv * xv
        nmb[r] = nm
        qn[r] = qr
        same = nm == n_prev
        if same:
            for a in range(nm):
                if missb[r, a] != prev[a]:
                    same = False
                    break
        if not same:
            pid += 1
            for a in range(nm):
                prev[a] = missb[r, a]
            n_prev = nm
        pat[r] = pid
        wts[r] = w[i] if weighted else 1.0


@jit()
def _eigen_bounds(m, terms, rs):
    """Step 2: eigenvalue bounds of every log density, and each row's two largest.

    The squared distances over the observed features are expanded into two
    matrix products (BLAS), less their rounding error: about the means'
    centre it is at most about ``(2 d + 6) eps (|x_o - c|^2 + |mu_ko - c|^2)``.
    Then each row's component of largest bound (its first pair, ``top``)
    and the two largest bounds.
    """
    xs, ows, qn, nmb, bnd = rs.xs, rs.ows, rs.qn, rs.nmb, rs.bnd
    top, best_b, next_b = rs.top, rs.best_b, rs.next_b
    bound_base, log_gap, half_floor = terms.bound_base, terms.log_gap, terms.half_floor
    n_comp, d = terms.means_c.shape
    dist_rel = (2 * d + 8) * 2.3e-16
    cross = np.dot(terms.means_c, xs[:m].T)
    msq = np.dot(terms.means_c2, ows[:m].T)
    for k in range(n_comp):
        # Branch-free: where floor is zero, bound_base is infinite and the
        # rest zero (never skipped).
        base = bound_base[k]
        lg = log_gap[k]
        hf = half_floor[k]
        for r in range(m):
            mk = msq[k, r]
            dist = (qn[r] - 2.0 * cross[k, r] + mk) - dist_rel * (qn[r] + mk)
            bnd[k, r] = (base + nmb[r] * lg) - hf * max(dist, 0.0)
    for r in range(m):
        top[r] = 0
        best_b[r] = bnd[0, r]
        next_b[r] = -np.inf
    for k in range(1, n_comp):
        for r in range(m):
            v = bnd[k, r]
            if v > best_b[r]:
                next_b[r] = best_b[r]
                best_b[r] = v
                top[r] = k
            elif v > next_b[r]:
                next_b[r] = v


@jit()
def _first_pairs(m, rs, ps):
    """Step 3, round 0: the pairs to evaluate, each row's component of largest bound."""
    top, pos0 = rs.top, rs.pos0
    koff, fill, prow = ps.koff, ps.fill, ps.prow
    n_comp = fill.shape[0]
    for k in range(n_comp + 1):
        koff[0, k] = 0
    for r in range(m):
        koff[0, top[r] + 1] += 1
    for k in range(n_comp):
        koff[0, k + 1] += koff[0, k]
        fill[k] = koff[0, k]
    for r in range(m):
        k = top[r]
        prow[fill[k]] = r
        pos0[r] = fill[k]
        fill[k] += 1


@jit()
def _other_pairs(m, model, lines, terms, rs, ps):
    """Step 3, round 1: the pairs to evaluate, the other components each row's bounds leave in.

    Those whose eigenvalue bound and, where it applies, line bound come
    within the cut-off of the row's first pair's exact log density; listed
    in row order (``xptr``, ``x_comp``) and by component (``prow``).  The
    line bound runs along ``vdir[kt, k]`` (see :func:`em_stats_missing_full`,
    Notes): ``u^T Sigma u = v^T Sigma v - 2 v_m^T (Sigma v)_m + v_m^T
    Sigma_mm v_m``, plus the rounding margin.
    """
    # Every field is bound once, before the loops: taking one out of a named
    # tuple costs a reference count update, too much per pair.
    xs, ows, missb, nmb, top, pos0, bnd, next_b = (rs.xs, rs.ows, rs.missb, rs.nmb, rs.top,
                                                   rs.pos0, rs.bnd, rs.next_b)
    xptr, x_comp, x_pos, koff, fill, prow, lp = (ps.xptr, ps.x_comp, ps.x_pos, ps.koff,
                                                 ps.fill, ps.prow, ps.lp)
    vdir, sig, sv, s_full = lines
    log_norm, floor = model.log_norm, model.floor
    means_c, log_gap = terms.means_c, terms.log_gap
    n_comp, d = means_c.shape
    for k in range(n_comp + 1):
        koff[1, k] = 0
    n_x = 0
    for r in range(m):
        xptr[r] = n_x
        kt = top[r]
        nm = nmb[r]
        best = lp[pos0[r]]
        if next_b[r] - best < RESP_LOG_FLOOR:
            # No other bound comes within the cut-off (most rows): nothing
            # to look at one by one.
            continue
        for k in range(n_comp):
            if k == kt or bnd[k, r] - best < RESP_LOG_FLOOR:
                continue
            if floor[k] > 0.0:
                lin = 0.0
                for j in range(d):
                    lin += ows[r, j] * (vdir[kt, k, j] * (xs[r, j] - means_c[k, j]))
                if lin > 0.0:
                    s_o = s_full[kt, k]
                    for a in range(nm):
                        ma = missb[r, a]
                        va = vdir[kt, k, ma]
                        acc = 0.5 * va * sig[k, ma, ma] - sv[kt, k, ma]
                        for c in range(a):
                            mc = missb[r, c]
                            acc += vdir[kt, k, mc] * sig[k, ma, mc]
                        s_o += 2.0 * va * acc
                    s_o += _LINE_MARGIN * ((nm + 1) * (nm + 1) * (d + 2)) / floor[k]
                    if s_o > 0.0:
                        lb = _LINE_SAFETY * lin * lin / s_o
                        ub = log_norm[k] + nm * log_gap[k] - 0.5 * lb
                        if ub - best < RESP_LOG_FLOOR:
                            continue
            x_comp[n_x] = k
            n_x += 1
            koff[1, k + 1] += 1
    xptr[m] = n_x
    koff[1, 0] = m
    for k in range(n_comp):
        koff[1, k + 1] += koff[1, k]
        fill[k] = koff[1, k]
    for r in range(m):
        for q in range(xptr[r], xptr[r + 1]):
            k = x_comp[q]
            prow[fill[k]] = r
            x_pos[q] = fill[k]
            fill[k] += 1


@jit()
def _project_pairs(rnd, prec_chol, terms, rs, ps):
    """Step 4a: the round's differences and ``z = U^T d``, one component at a time.

    One BLAS product for a component with many pairs, a loop for few.
    """
    xs, ows = rs.xs, rs.ows
    koff, prow, dif, zb = ps.koff, ps.prow, ps.dif, ps.zb
    means_c = terms.means_c
    n_comp, d = means_c.shape
    for k in range(n_comp):
        p_lo = koff[rnd, k]
        p_hi = koff[rnd, k + 1]
        if p_lo == p_hi:
            continue
        for p in range(p_lo, p_hi):
            r = prow[p]
            for j in range(d):
                dif[p, j] = ows[r, j] * (xs[r, j] - means_c[k, j])
        if p_hi - p_lo >= _GEMM_MIN_PAIRS:
            np.dot(dif[p_lo:p_hi], prec_chol[k], zb[p_lo:p_hi])
            continue
        for p in range(p_lo, p_hi):
            for e in range(d):
                zb[p, e] = 0.0
            for j in range(d):
                c0 = dif[p, j]
                for e in range(d):
                    zb[p, e] += c0 * prec_chol[k, j, e]


@jit()
def _list_factors(rnd, n_fac, tri_used, rs, ps, fs):
    """Step 4b: one factor of ``Lambda_mm`` per run of pairs of one component and pattern.

    Numbered on from the last round's ``n_fac``; returns the new count and
    the packed entries they need in all.
    """
    nmb, pat = rs.nmb, rs.pat
    koff, prow, fid = ps.koff, ps.prow, ps.fid
    fac_row, fac_k, fac_off = fs.fac_row, fs.fac_k, fs.fac_off
    tri_need = tri_used
    prev_k = -1
    prev_pat = -1
    for k in range(koff.shape[1] - 1):
        for p in range(koff[rnd, k], koff[rnd, k + 1]):
            r = prow[p]
            nm = nmb[r]
            if nm == 0:
                fid[p] = -1
                continue
            if k != prev_k or pat[r] != prev_pat:
                prev_k = k
                prev_pat = pat[r]
                fac_row[n_fac] = r
                fac_k[n_fac] = k
                fac_off[n_fac] = tri_need
                tri_need += nm * (nm + 1) // 2
                n_fac += 1
            fid[p] = n_fac - 1
    return n_fac, tri_need


@jit()
def _grow_packed(packed, tri_need, tri_used):
    """``packed`` with room for ``tri_need`` entries, its first ``tri_used`` kept."""
    if tri_need <= packed.l.shape[0]:
        return packed
    grown = max(tri_need, 2 * packed.l.shape[0])
    new_l = np.empty(grown)
    new_c = np.empty(grown)
    new_l[:tri_used] = packed.l[:tri_used]
    new_c[:tri_used] = packed.c[:tri_used]
    return Packed(new_l, new_c)


@jit()
def _factorise(f_lo, f_hi, lam, rs, fs, packed):
    """Step 4c: factors ``f_lo .. f_hi - 1``, in batches of one size (:func:`_cholesky_batch`).

    Each factor's ``L`` and ``Lambda_mm^{-1}`` go to ``packed``, its log det
    to ``fs.fac_ld``.
    """
    missb, nmb = rs.missb, rs.nmb
    fac_row, fac_k, fac_off, n_by, by_size = fs.fac_row, fs.fac_k, fs.fac_off, fs.n_by, \
        fs.by_size
    bl, bi, bc, bp, bdet, fac_ld = fs.bl, fs.bi, fs.bc, fs.bp, fs.bdet, fs.fac_ld
    lfac, cfac = packed
    d = n_by.shape[0] - 1
    # Counting sort by size.
    for nm in range(d + 1):
        n_by[nm] = 0
    for f in range(f_lo, f_hi):
        n_by[nmb[fac_row[f]]] += 1
    at = 0
    for nm in range(d + 1):
        c = n_by[nm]
        n_by[nm] = at
        at += c
    for f in range(f_lo, f_hi):
        nm = nmb[fac_row[f]]
        by_size[n_by[nm]] = f
        n_by[nm] += 1
    b_lo = 0
    while b_lo < f_hi - f_lo:
        nm = nmb[fac_row[by_size[b_lo]]]
        nb = 1
        while (nb < bl.shape[1] and b_lo + nb < f_hi - f_lo
               and nmb[fac_row[by_size[b_lo + nb]]] == nm):
            nb += 1
        for i in range(nb):
            f = by_size[b_lo + i]
            r = fac_row[f]
            k = fac_k[f]
            t = 0
            for a in range(nm):
                ra = missb[r, a]
                for b in range(a + 1):
                    bl[t, i] = lam[k, ra, missb[r, b]]
                    t += 1
        _cholesky_batch(nm, nb, bl, bp, bdet, bi, bc, True)
        _store_batch(nm, nb, bl, bp, bdet, bc, lfac, cfac, fac_off, fac_ld, by_size, b_lo)
        b_lo += nb


@jit()
def _pair_log_densities(rnd, model, rs, ps, fs, packed, bvec):
    """Step 4d: each pair's completed difference and exact marginal log density.

    Per pair, the steps of :func:`_complete_row` written out (see there why).
    """
    missb, nmb = rs.missb, rs.nmb
    koff, prow, dif, zb, lp, fid = ps.koff, ps.prow, ps.dif, ps.zb, ps.lp, ps.fid
    prec_chol, log_norm = model.prec, model.log_norm
    fac_ld, fac_off, lfac = fs.fac_ld, fs.fac_off, packed.l
    d = zb.shape[1]
    for k in range(koff.shape[1] - 1):
        for p in range(koff[rnd, k], koff[rnd, k + 1]):
            r = prow[p]
            nm = nmb[r]
            log_det = 0.0
            if nm > 0:
                f = fid[p]
                off = fac_off[f]
                log_det = fac_ld[f]
                for a in range(nm):
                    ra = missb[r, a]
                    ta = off + a * (a + 1) // 2
                    acc = 0.0
                    for e in range(d):
                        acc += prec_chol[k, ra, e] * zb[p, e]
                    for c in range(a):
                        acc -= lfac[ta + c] * bvec[c]
                    bvec[a] = acc * lfac[ta + a]
                for a in range(nm - 1, -1, -1):
                    acc = bvec[a]
                    for c in range(a + 1, nm):
                        acc -= lfac[off + c * (c + 1) // 2 + a] * bvec[c]
                    bvec[a] = acc * lfac[off + a * (a + 1) // 2 + a]
                    dif[p, missb[r, a]] = -bvec[a]
                for a in range(nm):
                    ra = missb[r, a]
                    da = dif[p, ra]
                    for e in range(d):
                        zb[p, e] += da * prec_chol[k, ra, e]
            maha = 0.0
            for e in range(d):
                maha += zb[p, e] * zb[p, e]
            lp[p] = log_norm[k] + 0.5 * nm * _LOG_2PI - log_det - 0.5 * maha


@jit()
def _responsibilities(m, rs, ps, logp, resp, ll):
    """Step 5: each pair's weighted responsibility ``wp``, and the log-likelihood into ``ll``.

    ``ll[0] += sum w log p(x)``, ``ll[1]`` counts rows of positive weight
    and zero density (their pairs get zero differences, never ``0 * inf``).
    """
    wts, top, pos0 = rs.wts, rs.top, rs.pos0
    xptr, x_comp, x_pos, dif, lp, wp = ps.xptr, ps.x_comp, ps.x_pos, ps.dif, ps.lp, ps.wp
    d = dif.shape[1]
    for r in range(m):
        wi = wts[r]
        kt = top[r]
        p0 = pos0[r]
        best = lp[p0]
        for q in range(xptr[r], xptr[r + 1]):
            best = max(best, lp[x_pos[q]])
        wp[p0] = 0.0
        for q in range(xptr[r], xptr[r + 1]):
            wp[x_pos[q]] = 0.0
        if best == -np.inf or wi == 0.0:
            if best == -np.inf and wi != 0.0:
                ll[1] += 1.0
            for j in range(d):
                dif[p0, j] = 0.0
            for q in range(xptr[r], xptr[r + 1]):
                for j in range(d):
                    dif[x_pos[q], j] = 0.0
            continue
        if xptr[r + 1] == xptr[r]:
            # Responsibility exp(0) / 1 = 1 and log 1 = 0: the same bits as
            # below without its exponentials and logarithm.
            ll[0] += wi * best
            wp[p0] = wi
            continue
        for k in range(logp.shape[0]):
            logp[k] = -np.inf
        logp[kt] = lp[p0]
        for q in range(xptr[r], xptr[r + 1]):
            logp[x_comp[q]] = lp[x_pos[q]]
        ll[0] += wi * _normalize(logp, resp)
        wp[p0] = wi * resp[kt]
        for q in range(xptr[r], xptr[r + 1]):
            wp[x_pos[q]] = wi * resp[x_comp[q]]


@jit()
def _chunk_statistics(n_fac, rs, ps, fs, packed, nk, t, s):
    """Step 6: the chunk's statistics into ``nk`` (k,), ``t`` (k, d), ``s`` (k, d, d).

    One component at a time: the second moments of longer runs of pairs as
    one matrix product (BLAS), the conditional covariances once per factor.
    """
    missb, nmb = rs.missb, rs.nmb
    koff, dif, dw, wp, fid, sq = ps.koff, ps.dif, ps.dw, ps.wp, ps.fid, ps.sq
    fac_row, fac_k, fac_off, fac_w = fs.fac_row, fs.fac_k, fs.fac_off, fs.fac_w
    cfac = packed.c
    d = dif.shape[1]
    for f in range(n_fac):
        fac_w[f] = 0.0
    for k in range(koff.shape[1] - 1):
        for rnd in range(2):
            p_lo = koff[rnd, k]
            p_hi = koff[rnd, k + 1]
            if p_lo == p_hi:
                continue
            nkk = 0.0
            for p in range(p_lo, p_hi):
                wr = wp[p]
                nkk += wr
                for e in range(d):
                    dw[p, e] = wr * dif[p, e]
                f = fid[p]
                if f >= 0:
                    fac_w[f] += wr
            nk[k] += nkk
            for p in range(p_lo, p_hi):
                for e in range(d):
                    t[k, e] += dw[p, e]
            if p_hi - p_lo >= _GEMM_MIN_PAIRS:
                np.dot(dw[p_lo:p_hi].T, dif[p_lo:p_hi], sq)
                for e in range(d):
                    for f in range(d):
                        s[k, e, f] += sq[e, f]
            else:
                for p in range(p_lo, p_hi):
                    for e in range(d):
                        v = dw[p, e]
                        for f in range(d):
                            s[k, e, f] += v * dif[p, f]
    for f in range(n_fac):
        rw = fac_w[f]
        if rw == 0.0:
            continue
        r = fac_row[f]
        k = fac_k[f]
        off = fac_off[f]
        for a in range(nmb[r]):
            ma = missb[r, a]
            for b in range(a + 1):
                # Lower triangle of the factor's inverse at (a, b): the upper
                # of the slot (the missing indices ascend).
                s[k, missb[r, b], ma] += rw * cfac[off + a * (a + 1) // 2 + b]


# ---------------------------------------------------------------------------
# 5. Drivers: fused E-step and statistics
# ---------------------------------------------------------------------------


@jit()
def em_stats_missing_full(X, w, weighted, model, lines, grid, slots, g_lo, g_hi):
    """Statistics of rows with missing entries, full covariances, groups ``g_lo:g_hi``.

    Parameters
    ----------
    X : ndarray (n, d) float32/float64, C-contiguous, NaN at missing entries
    w : ndarray (n,) float64 (ignored unless ``weighted``)
    weighted : bool
    model : MissingModel
        With ``prec`` the (k, d, d) factors and ``floor`` (see Notes).
    lines : LineBounds
    grid : Grid
        ``chunk_size`` rows are taken at once (their pairs must fit
        :data:`PAIR_BUDGET`), ``group`` such chunks per slot.
    slots : Slots
        ``nk`` (G, k), ``t`` (G, k, d), ``s`` (G, k, d, d) (upper triangle
        written), ``ll`` (G, >= 2) float64 (``g`` unused): per group, the
        statistics about the means, and ``(sum w log p, rows of positive
        weight and zero density)``.
    g_lo, g_hi : int
        The groups to process.

    Notes
    -----
    Components that cannot carry mass are skipped.  The marginal log density
    of component ``k`` at a row with observed set ``o`` and ``nm`` missing
    entries is ``log_norm[k] + nm/2 log 2pi - 1/2 log det Lambda_mm - 1/2
    maha``, ``maha = d_o^T Sigma_oo^{-1} d_o`` with ``d_o = x_o - mu_ko``.
    Two bounds of ``maha`` from below give upper bounds of it:

    * eigenvalue bound: with ``floor[k]`` a lower bound of the smallest
      eigenvalue of ``Lambda_k``, interlacing gives ``maha >= floor[k]
      ||d_o||^2`` (every eigenvalue of ``Sigma_oo`` is at most that of
      ``Sigma``) and ``log det Lambda_mm >= nm log floor[k]`` (every
      eigenvalue of a principal submatrix of ``Lambda`` is at least its
      smallest), for the cost of a squared distance;
    * line bound, for the components the first leaves: for any ``u`` with
      ``u_m = 0`` and any completion ``d`` of ``d_o``, Cauchy-Schwarz in the
      ``Lambda`` inner product gives ``(u_o . d_o)^2 = (u . d)^2 <= (u^T
      Sigma u) (d^T Lambda d)``; the minimum of ``d^T Lambda d`` over the
      completions is ``maha``, so ``maha >= (u_o . d_o)^2 / (u_o^T Sigma_oo
      u_o)`` where ``u_o . d_o > 0``.  ``u`` is the unit vector from ``mu_k``
      to the mean of the row's component of largest bound, with its missing
      entries zeroed; ``u^T Sigma u = v^T Sigma v - 2 v_m^T (Sigma v)_m +
      v_m^T Sigma_mm v_m`` costs ``O(nm^2)`` from ``Sigma``, ``Sigma v`` and
      ``v^T Sigma v`` (``lines``, formed once per call by the caller).  It
      is tight for rows near the line between the means, where the
      eigenvalue bound is loose by up to the condition number.  Against
      rounding, a margin is added to the denominator (see ``_LINE_MARGIN``)
      and the distance shrunk by ``_LINE_SAFETY``.

    The component of largest eigenvalue bound is evaluated exactly first; a
    component whose bound is more than the cut-off (:data:`RESP_LOG_FLOOR`)
    below the best exact log density would get a responsibility that
    :func:`_normalize` sets to zero, and is skipped.

    Each chunk of rows runs the steps of section 4 in order: 1. the rows
    (:func:`_load_rows`); 2. eigenvalue bounds for every (row, component)
    pair as two matrix products (:func:`_eigen_bounds`); then two rounds,
    each row's component of largest bound first (:func:`_first_pairs`), the
    pairs the bounds leave second (:func:`_other_pairs`), each round taking
    3. its pairs and 4. their exact log densities, one component at a time
    (``z = U^T d`` for all its rows as one product, :func:`_project_pairs`;
    the factors of ``Lambda_mm``, :func:`_list_factors` and
    :func:`_factorise`; the conditional means, :func:`_pair_log_densities`);
    5. the responsibilities (:func:`_responsibilities`); 6. the statistics
    (:func:`_chunk_statistics`).  Rows of one pattern side by side share a
    factor of ``Lambda_mm`` per component; the factors are computed in
    batches of one size and add their conditional covariances once each.
    BLAS runs on the calling thread (callers hold it to one thread, as for
    the dense path of :mod:`fastgmm._kernels`).

    Thread-safe: group ``g`` writes only slot ``g`` of each slot array.
    """
    n, d = X.shape
    n_comp = model.means.shape[0]
    terms = _model_terms(model)
    n_rows = grid.chunk_size
    rows_per_group = grid.chunk_size * grid.group
    rs = _row_scratch(n_rows, n_comp, d)
    ps = _pair_scratch(n_rows, n_comp, d)
    fs = _factor_scratch(n_rows, n_comp, d, _FACTOR_BATCH)
    packed = Packed(np.empty(n_rows * d), np.empty(n_rows * d))
    bvec = np.empty(d)
    logp = np.empty(n_comp)
    resp = np.empty(n_comp)
    for g in range(g_lo, g_hi):
        slots.nk[g] = 0.0
        slots.t[g] = 0.0
        slots.s[g] = 0.0
        slots.ll[g] = 0.0
        g_end = min((g + 1) * rows_per_group, n)
        for lo in range(g * rows_per_group, g_end, n_rows):
            m = min(n_rows, g_end - lo)
            _load_rows(X, w, weighted, lo, m, terms.centre, rs)
            _eigen_bounds(m, terms, rs)
            n_fac = 0
            tri_used = 0
            for rnd in range(2):
                if rnd == 0:
                    _first_pairs(m, rs, ps)
                else:
                    _other_pairs(m, model, lines, terms, rs, ps)
                _project_pairs(rnd, model.prec, terms, rs, ps)
                f_lo = n_fac
                n_fac, tri_need = _list_factors(rnd, n_fac, tri_used, rs, ps, fs)
                packed = _grow_packed(packed, tri_need, tri_used)
                tri_used = tri_need
                _factorise(f_lo, n_fac, terms.lam, rs, fs, packed)
                _pair_log_densities(rnd, model, rs, ps, fs, packed, bvec)
            _responsibilities(m, rs, ps, logp, resp, slots.ll[g])
            _chunk_statistics(n_fac, rs, ps, fs, packed, slots.nk[g], slots.t[g], slots.s[g])


@jit()
def em_stats_missing_diag(X, w, weighted, model, grid, slots, g_lo, g_hi):
    """Statistics of rows with missing entries, diagonal covariances, groups ``g_lo:g_hi``.

    Parameters
    ----------
    X, w, weighted, grid, g_lo, g_hi : as :func:`em_stats_missing_full`
    model : MissingModel
        With ``prec`` the (k, d) square roots of the precisions (spherical
        ones repeated along ``d``); ``floor`` unused.
    slots : Slots
        As :func:`em_stats_missing_full`, with ``s`` (G, k, d), the
        per-feature second moments about the means.
    """
    n, d = X.shape
    means, prec, log_norm = model.means, model.prec, model.log_norm
    n_comp = means.shape[0]
    rows_per_group = grid.chunk_size * grid.group
    miss = np.empty(d, dtype=np.int64)
    x = np.empty(d)
    diff = np.empty((n_comp, d))
    logp = np.empty(n_comp)
    resp = np.empty(n_comp)
    for g in range(g_lo, g_hi):
        slots.nk[g] = 0.0
        slots.t[g] = 0.0
        slots.s[g] = 0.0
        slots.ll[g] = 0.0
        nk, t, s, ll = slots.nk[g], slots.t[g], slots.s[g], slots.ll[g]
        lo = g * rows_per_group
        hi = min(lo + rows_per_group, n)
        for i in range(lo, hi):
            for j in range(d):
                x[j] = X[i, j]
            wi = w[i] if weighted else 1.0
            nm = _missing_index(x, miss)
            _row_diag(x, means, prec, log_norm, miss, nm, diff, logp)
            lse = _normalize(logp, resp)
            if wi == 0.0:
                continue
            if lse == -np.inf:
                ll[1] += 1.0
                continue
            ll[0] += wi * lse
            for k in range(n_comp):
                if resp[k] == 0.0:
                    continue
                wr = wi * resp[k]
                nk[k] += wr
                for e in range(d):
                    v = wr * diff[k, e]
                    t[k, e] += v
                    s[k, e] += v * diff[k, e]
                for a in range(nm):
                    p = prec[k, miss[a]]
                    s[k, miss[a]] += wr / (p * p)


# ---------------------------------------------------------------------------
# 6. Drivers: per-point outputs, imputation
# ---------------------------------------------------------------------------


@jit()
def point_missing_full(X, model, draws, grid, out, g_lo, g_hi):
    """Marginal log densities, and optionally completed rows, full covariances.

    Parameters
    ----------
    X : ndarray (n, d), NaN at missing entries
    model : MissingModel
        As :func:`em_stats_missing_full`; ``floor`` unused.
    draws : Draws
    grid : Grid
        ``chunk_size * group`` rows per group.
    out : MissingOut
    g_lo, g_hi : int
        The groups to process.

    Notes
    -----
    A row's factors of ``Lambda_mm``, one per component, are factorised as
    one batch (:func:`_cholesky_batch`) when its pattern differs from the
    previous row's.  Thread-safe: group ``g`` writes only its own rows of
    the outputs.
    """
    n, d = X.shape
    means, prec_chol, log_norm = model.means, model.prec, model.log_norm
    mode, u, eps = draws
    out_logp, out_x = out
    n_comp = means.shape[0]
    rows_per_group = grid.chunk_size * grid.group
    lam = _precisions(prec_chol)
    n_tri = d * (d + 1) // 2
    miss = np.empty(d, dtype=np.int64)
    x = np.empty(d)
    prev = np.empty(d, dtype=np.int64)
    dif = np.empty((n_comp, d))
    zb = np.empty((n_comp, d))
    bl = np.empty((n_tri, n_comp))
    bp = np.empty((d, n_comp))
    bdet = np.empty(n_comp)
    lfac = np.empty(n_comp * n_tri)
    no_c = np.empty(0)
    comps = np.arange(n_comp)
    offs = comps * n_tri
    log_dets = np.zeros(n_comp)
    bvec = np.empty(d)
    logp = np.empty(n_comp)
    resp = np.empty(n_comp)
    for g in range(g_lo, g_hi):
        lo = g * rows_per_group
        hi = min(lo + rows_per_group, n)
        n_prev = -1
        for i in range(lo, hi):
            for j in range(d):
                x[j] = X[i, j]
            nm = _missing_index(x, miss)
            if not _same_pattern(miss, nm, prev, n_prev):
                for a in range(nm):
                    prev[a] = miss[a]
                n_prev = nm
                for k in range(n_comp):
                    t = 0
                    for a in range(nm):
                        for b in range(a + 1):
                            bl[t, k] = lam[k, miss[a], miss[b]]
                            t += 1
                _cholesky_batch(nm, n_comp, bl, bp, bdet, bl, bl, False)
                _store_batch(nm, n_comp, bl, bp, bdet, bl, lfac, no_c, offs, log_dets, comps, 0)
            for k in range(n_comp):
                for j in range(d):
                    dif[k, j] = x[j] - means[k, j]
                    zb[k, j] = 0.0
                for a in range(nm):
                    dif[k, miss[a]] = 0.0
                # z = U^T diff, row by row of U so that the inner loop runs
                # along memory.
                for j in range(d):
                    dj = dif[k, j]
                    if dj != 0.0:
                        for e in range(j, d):
                            zb[k, e] += dj * prec_chol[k, j, e]
                maha = _complete_row(prec_chol, k, miss, nm, lfac, k * n_tri, zb, dif, bvec)
                logp[k] = log_norm[k] + 0.5 * nm * _LOG_2PI - log_dets[k] - 0.5 * maha
                out_logp[i, k] = logp[k]
            if mode == 0:
                continue
            _normalize(logp, resp)
            for j in range(d):
                out_x[i, j] = x[j]
            if mode == 1:
                for a in range(nm):
                    acc = 0.0
                    for k in range(n_comp):
                        if resp[k] > 0.0:
                            acc += resp[k] * (means[k, miss[a]] + dif[k, miss[a]])
                    out_x[i, miss[a]] = acc
                continue
            pick = _pick_component(resp, u[i])
            # Solve L^T y = eps: y has covariance L^{-T} L^{-1} = Lambda_mm^{-1}.
            for a in range(nm):
                bvec[a] = eps[i, a]
            _back_substitute(nm, lfac, pick * n_tri, bvec)
            for a in range(nm):
                ra = miss[a]
                out_x[i, ra] = means[pick, ra] + dif[pick, ra] + bvec[a]


@jit()
def point_missing_diag(X, model, draws, grid, out, g_lo, g_hi):
    """As :func:`point_missing_full` for diagonal covariances (``model.prec`` ``(k, d)``).

    Parameters
    ----------
    X, model, draws, grid, out, g_lo, g_hi : as :func:`point_missing_full`
    """
    n, d = X.shape
    means, prec, log_norm = model.means, model.prec, model.log_norm
    mode, u, eps = draws
    out_logp, out_x = out
    n_comp = means.shape[0]
    rows_per_group = grid.chunk_size * grid.group
    miss = np.empty(d, dtype=np.int64)
    x = np.empty(d)
    diff = np.empty((n_comp, d))
    logp = np.empty(n_comp)
    resp = np.empty(n_comp)
    for g in range(g_lo, g_hi):
        lo = g * rows_per_group
        hi = min(lo + rows_per_group, n)
        for i in range(lo, hi):
            for j in range(d):
                x[j] = X[i, j]
            nm = _missing_index(x, miss)
            _row_diag(x, means, prec, log_norm, miss, nm, diff, logp)
            for k in range(n_comp):
                out_logp[i, k] = logp[k]
            if mode == 0:
                continue
            _normalize(logp, resp)
            for j in range(d):
                out_x[i, j] = x[j]
            if mode == 1:
                for a in range(nm):
                    acc = 0.0
                    for k in range(n_comp):
                        if resp[k] > 0.0:
                            acc += resp[k] * means[k, miss[a]]
                    out_x[i, miss[a]] = acc
                continue
            pick = _pick_component(resp, u[i])
            for a in range(nm):
                ra = miss[a]
                out_x[i, ra] = means[pick, ra] + eps[i, a] / prec[pick, ra]
