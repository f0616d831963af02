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

Layout and conventions follow :mod:`fastgmm._kernels`: arrays in, arrays
out, no validation; each driver processes the row groups ``g_lo:g_hi`` (its
last two arguments), group ``g`` covers rows ``g * rows_per_group`` onwards
and writes only slot ``g`` (or its own output rows), so
:func:`fastgmm._parallel.run_groups` may share the groups between threads and
the fold in group order gives the same bits whatever the thread count.  Per
row, the arithmetic runs in float64 whatever the dtype of ``X``; parameters
are float64.  This file is self-contained (Numba's disk cache checks only the
source file of the function it loads): every function calls only functions
defined above it in this file.
"""

from __future__ import annotations

import math

import numpy as np

from ._config import jit

_LOG_2PI = math.log(2.0 * math.pi)

#: Components whose log density is this far below the row's best carry a
#: responsibility under exp(-37), about 8.5e-17 of the best one's: below the
#: rounding of any sum it would enter, so their statistics are skipped (and
#: a looser cut-off would make the pruning bound evaluate more components).
_CUTOFF = -37.0

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

#: Doubles in each per-pair array of :func:`em_stats_missing_full` (its rows
#: are taken in blocks small enough that every (row, component) pair fits).
_PAIR_BUDGET = 2**18

#: A component's pairs in one round go through BLAS products (``z = U^T d``
#: and the second moments) from this many on (below it, a call costs more
#: than a loop).
_GEMM_MIN_PAIRS = 8

#: Factors of one size factorised side by side in :func:`em_stats_missing_full`.
_FACTOR_BATCH = 32


# ---------------------------------------------------------------------------
# Per-row helpers
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
def _comp_full(x, means, prec_chol, log_norm, miss, nm, k, diff, z, chol, bvec, log_dets,
               chol_ok):
    """Completed difference, factor of ``Lambda_mm`` and marginal log density of one row.

    Parameters
    ----------
    x : ndarray (d,) float32/float64, NaN at the missing entries
    means : ndarray (k, d) float64
    prec_chol : ndarray (k, d, d) float64, upper triangular
    log_norm : ndarray (k,) float64
    miss : ndarray (>= nm,) int64, the missing indices, ascending
    nm : int
    k : int
        The component.
    diff : ndarray (k, d) float64, out: ``diff[k] = x*_k - mu_k``
    z, bvec : ndarray (d,) float64, scratch
    chol : ndarray (k, d, d) float64, out: lower Cholesky factor of
        ``Lambda_mm`` in ``chol[k, :nm, :nm]``
    log_dets : ndarray (k,) float64, out: ``log det L`` of ``chol[k]``
    chol_ok : ndarray (k,) bool
        ``chol[k]`` and ``log_dets[k]`` already hold the factor of this
        row's missing pattern (rows sorted by pattern reuse it); set here.

    Returns
    -------
    float
        ``log w_k + log N(x_o; mu_o, Sigma_oo)``.
    """
    d = means.shape[1]
    for j in range(d):
        diff[k, j] = x[j] - means[k, j]
        z[j] = 0.0
    for a in range(nm):
        diff[k, miss[a]] = 0.0
    # z = U^T diff, row by row of U so that the inner loop runs along memory.
    for j in range(d):
        dj = diff[k, j]
        if dj != 0.0:
            for e in range(j, d):
                z[e] += dj * prec_chol[k, j, e]
    if not chol_ok[k]:
        log_det = 0.0
        for a in range(nm):
            ra = miss[a]
            for b in range(a + 1):
                rb = miss[b]
                acc = 0.0
                for e in range(ra, d):  # ra >= rb: U[ra, e] is zero before ra
                    acc += prec_chol[k, ra, e] * prec_chol[k, rb, e]
                for c in range(b):
                    acc -= chol[k, a, c] * chol[k, b, c]
                if a == b:
                    # Lambda_mm is positive definite whenever U is invertible;
                    # a non-positive pivot can only come from rounding.
                    piv = math.sqrt(acc) if acc > 0.0 else 1e-300
                    chol[k, a, a] = piv
                    log_det += math.log(piv)
                else:
                    chol[k, a, b] = acc / chol[k, b, b]
        log_dets[k] = log_det
        chol_ok[k] = True
    # bvec = L^{-1} A z, then L^T y = bvec: y = Lambda_mm^{-1} A z.
    for a in range(nm):
        ra = miss[a]
        acc = 0.0
        for e in range(ra, d):
            acc += prec_chol[k, ra, e] * z[e]
        for c in range(a):
            acc -= chol[k, a, c] * bvec[c]
        bvec[a] = acc / chol[k, a, a]
    for a in range(nm - 1, -1, -1):
        acc = bvec[a]
        for c in range(a + 1, nm):
            acc -= chol[k, c, a] * bvec[c]
        bvec[a] = acc / chol[k, a, a]
        diff[k, miss[a]] = -bvec[a]
    # The marginal distance is the full quadratic form at the completed row.
    for a in range(nm):
        ra = miss[a]
        da = diff[k, ra]
        for e in range(ra, d):
            z[e] += da * prec_chol[k, ra, e]
    maha = 0.0
    for e in range(d):
        maha += z[e] * z[e]
    return log_norm[k] + 0.5 * nm * _LOG_2PI - log_dets[k] - 0.5 * maha


@jit()
def _row_full(x, means, prec_chol, log_norm, miss, nm, diff, z, chol, bvec, log_dets, chol_ok,
              logp):
    """:func:`_comp_full` for every component: ``logp[k]`` and ``diff[k]``, ``chol[k]``."""
    for k in range(means.shape[0]):
        logp[k] = _comp_full(x, means, prec_chol, log_norm, miss, nm, k, diff, z, chol, bvec,
                             log_dets, chol_ok)


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
    # Terms under the cut-off change the sum by less than exp(-37) each:
    # they are left out of it, as their statistics are.
    total = 0.0
    for k in range(n_comp):
        gap = logp[k] - best
        if gap < _CUTOFF:
            resp[k] = 0.0
        else:
            resp[k] = math.exp(gap)
            total += resp[k]
    inv = 1.0 / total
    for k in range(n_comp):
        resp[k] *= inv
    return best + math.log(total)


# ---------------------------------------------------------------------------
# Drivers: fused E-step and statistics
# ---------------------------------------------------------------------------


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
def em_stats_missing_full(X, w, weighted, means, prec_chol, log_norm, floor, rows_per_group,
                          nk_slot, t_slot, s_slot, ll_slot, g_lo, g_hi):
    """Statistics of rows with missing entries, full covariances, groups ``g_lo:g_hi``.

    Parameters
    ----------
    X : ndarray (n, d) float32/float64, C-contiguous, NaN at missing entries
    w : ndarray (n,) float64 (ignored unless ``weighted``)
    weighted : bool
    means : ndarray (k, d) float64; also the shift of the statistics
    prec_chol : ndarray (k, d, d) float64
    log_norm : ndarray (k,) float64
    floor : ndarray (k,) float64
        Lower bounds of the smallest eigenvalue of each precision matrix
        (zero: never skip the component); see Notes.
    rows_per_group : int
    nk_slot, t_slot, s_slot, ll_slot : ndarray
        ``(G, k)``, ``(G, k, d)``, ``(G, k, d, d)`` (upper triangle written),
        ``(G, 2)`` float64: per group, ``nk``, ``t``, ``s`` about the means,
        and ``(sum w log p, rows of positive weight and zero density)``.

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
      ``v^T Sigma v`` formed once per call.  It is tight for rows near the line between the means,
      where the eigenvalue bound is loose by up to the condition number.
      Against rounding, a margin is added to the denominator (see
      ``_LINE_MARGIN``) and the distance shrunk by ``_LINE_SAFETY``.

    The component of largest eigenvalue bound is evaluated exactly first; a
    component whose bound is more than the cut-off below the best exact log
    density would get a responsibility under exp(-37) of the largest (zero
    in :func:`_normalize` too), and is skipped.

    Rows are taken in blocks (see the comments of each step): bounds for
    every (row, component) pair as two matrix products, each row's component
    of largest bound evaluated first, one component at a time (``z = U^T
    d`` for all its rows as one product), then the pairs the bounds leave,
    the same way.  Rows of one pattern side by side share a factor of
    ``Lambda_mm`` per component; the factors are computed in batches of one
    size and add their conditional covariances once each.  BLAS runs on the
    calling thread (callers hold it to one thread, as for the dense path of
    :mod:`fastgmm._kernels`).

    Thread-safe: group ``g`` writes only slot ``g`` of each slot array.
    """
    n, d = X.shape
    n_comp = means.shape[0]
    # The precisions U U^T, once per call: each pattern's Lambda_mm is then
    # read from them rather than formed by a dot product per entry.
    lam = np.empty((n_comp, d, d))
    for k in range(n_comp):
        for a in range(d):
            for b in range(d):
                acc = 0.0
                for e in range(max(a, b), d):
                    acc += prec_chol[k, a, e] * prec_chol[k, b, e]
                lam[k, a, b] = acc
    log_gap = np.zeros(n_comp)
    half_floor = np.zeros(n_comp)
    bound_base = np.full(n_comp, np.inf)
    for k in range(n_comp):
        if floor[k] > 0.0:
            bound_base[k] = log_norm[k]
            log_gap[k] = 0.5 * (_LOG_2PI - math.log(floor[k]))
            half_floor[k] = 0.5 * floor[k]
    # For the line bound (see Notes): uinv_t[k, a] is column a of U_k^{-1},
    # vdir[b, k] the unit vector from mu_k to mu_b and pvec[b, k] = U_k^{-1}
    # vdir[b, k] (zero when the means coincide, which disables the bound).
    uinv_t = np.zeros((n_comp, d, d))
    for k in range(n_comp):
        for a in range(d):
            uinv_t[k, a, a] = 1.0 / prec_chol[k, a, a]
            for e in range(a - 1, -1, -1):
                acc = 0.0
                for f in range(e + 1, a + 1):
                    acc += prec_chol[k, e, f] * uinv_t[k, a, f]
                uinv_t[k, a, e] = -acc / prec_chol[k, e, e]
    vdir = np.zeros((n_comp, n_comp, d))
    pvec = np.zeros((n_comp, n_comp, d))
    for b in range(n_comp):
        for k in range(n_comp):
            dist2 = 0.0
            for e in range(d):
                dist2 += (means[b, e] - means[k, e]) ** 2
            if b == k or not dist2 > 0.0:
                continue
            inv_dist = 1.0 / math.sqrt(dist2)
            for e in range(d):
                vdir[b, k, e] = (means[b, e] - means[k, e]) * inv_dist
            for a in range(d):
                va = vdir[b, k, a]
                for e in range(d):
                    pvec[b, k, e] += va * uinv_t[k, a, e]
    # sig[k] = Sigma_k = U_k^{-T} U_k^{-1}; sv[b, k] = Sigma_k vdir[b, k] and
    # s_full[b, k] = vdir^T Sigma_k vdir: the line bound's denominator is
    # then a sum over the missing entries only (see Notes).
    sig = np.empty((n_comp, d, d))
    sv = np.zeros((n_comp, n_comp, d))
    s_full = np.zeros((n_comp, n_comp))
    for k in range(n_comp):
        for a in range(d):
            for b in range(d):
                acc = 0.0
                for e in range(d):
                    acc += uinv_t[k, a, e] * uinv_t[k, b, e]
                sig[k, a, b] = acc
    for b in range(n_comp):
        for k in range(n_comp):
            acc = 0.0
            for e in range(d):
                acc += pvec[b, k, e] * pvec[b, k, e]
            s_full[b, k] = acc
            for a in range(d):
                acc = 0.0
                for e in range(d):
                    acc += pvec[b, k, e] * uinv_t[k, a, e]
                sv[b, k, a] = acc
    # Rows are processed in blocks of up to n_rows within a group.  Scratch
    # per row (index r, block order) and per (row, component) pair whose log
    # density is evaluated exactly (index p): round 0 holds each row's first
    # pair at p < m, round 1 the others after them; within a round, pairs of
    # component k sit at koff[round, k]:koff[round, k + 1], rows ascending.
    n_rows = max(8, min(rows_per_group, _PAIR_BUDGET // max(1, n_comp * d)))
    n_pairs = n_rows * n_comp
    xs = np.empty((n_rows, d))
    ows = np.empty((n_rows, d))
    qn = np.empty(n_rows)
    # Rows and means are taken about the means' centre, where the expanded
    # squared distances of step 2 lose least to cancellation; their rounding
    # error is at most about (2 d + 6) eps (|x_o - c|^2 + |mu_ko - c|^2).
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
    dist_rel = (2 * d + 8) * 2.3e-16
    missb = np.empty((n_rows, d), dtype=np.int64)
    nmb = np.empty(n_rows, dtype=np.int64)
    pat = np.empty(n_rows, dtype=np.int64)
    wts = np.empty(n_rows)
    bnd = np.empty((n_comp, n_rows))
    top = np.empty(n_rows, dtype=np.int64)
    best_b = np.empty(n_rows)
    next_b = np.empty(n_rows)
    pos0 = np.empty(n_rows, dtype=np.int64)
    xptr = np.empty(n_rows + 1, dtype=np.int64)
    x_comp = np.empty(n_pairs, dtype=np.int64)
    x_pos = np.empty(n_pairs, dtype=np.int64)
    koff = np.empty((2, n_comp + 1), dtype=np.int64)
    fill = np.empty(n_comp, dtype=np.int64)
    prow = np.empty(n_pairs, dtype=np.int64)
    dif = np.empty((n_pairs, d))
    dw = np.empty((n_pairs, d))
    sq = np.empty((d, d))
    zb = np.empty((n_pairs, d))
    lp = np.empty(n_pairs)
    wp = np.empty(n_pairs)
    fid = np.empty(n_pairs, dtype=np.int64)
    # Factors of Lambda_mm (one per run of pairs of one component and one
    # pattern): row, component, weight, log det, and where the packed lower
    # triangles of L and of Lambda_mm^{-1} (the conditional covariance) start
    # in fac_l and fac_c, which grow as needed.
    fac_row = np.empty(n_pairs, dtype=np.int64)
    fac_k = np.empty(n_pairs, dtype=np.int64)
    fac_w = np.empty(n_pairs)
    fac_ld = np.empty(n_pairs)
    fac_off = np.empty(n_pairs, dtype=np.int64)
    fac_l = np.empty(n_rows * d)
    fac_c = np.empty(n_rows * d)
    n_by = np.empty(d + 1, dtype=np.int64)
    by_size = np.empty(n_pairs, dtype=np.int64)
    n_tri_max = d * (d + 1) // 2
    bl = np.empty((n_tri_max, _FACTOR_BATCH))
    bi = np.empty((n_tri_max, _FACTOR_BATCH))
    bc = np.empty((n_tri_max, _FACTOR_BATCH))
    bp = np.empty((d, _FACTOR_BATCH))
    bdet = np.empty(_FACTOR_BATCH)
    bvec = np.empty(d)
    logp = np.empty(n_comp)
    resp = np.empty(n_comp)
    prev = np.empty(d, dtype=np.int64)
    for g in range(g_lo, g_hi):
        nk_slot[g, :] = 0.0
        t_slot[g, :, :] = 0.0
        s_slot[g, :, :, :] = 0.0
        ll_slot[g, :] = 0.0
        g_end = min((g + 1) * rows_per_group, n)
        for lo in range(g * rows_per_group, g_end, n_rows):
            m = min(n_rows, g_end - lo)
            # 1. Rows: values less the centre with zeros at the missing
            # entries, the observed mask, squared norms, missing indices,
            # pattern ids (rows of one pattern side by side share one).
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
            # 2. Eigenvalue bounds of every log density (see Notes), the
            # squared distances over the observed features expanded into two
            # matrix products (BLAS), less their rounding error.
            cross = np.dot(means_c, xs[:m].T)
            msq = np.dot(means_c2, ows[:m].T)
            for k in range(n_comp):
                # Branch-free: where floor is zero, bound_base is infinite
                # and the rest zero (never skipped).
                base = bound_base[k]
                lg = log_gap[k]
                hf = half_floor[k]
                for r in range(m):
                    mk = msq[k, r]
                    dist = (qn[r] - 2.0 * cross[k, r] + mk) - dist_rel * (qn[r] + mk)
                    bnd[k, r] = (base + nmb[r] * lg) - hf * max(dist, 0.0)
            # 3. Each row's component of largest bound (its first pair) and
            # the second largest bound.
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
            n_fac = 0
            tri_used = 0
            for rnd in range(2):
                for k in range(n_comp + 1):
                    koff[rnd, k] = 0
                if rnd == 0:
                    for r in range(m):
                        koff[0, top[r] + 1] += 1
                    koff[0, 0] = 0
                    for k in range(n_comp):
                        koff[0, k + 1] += koff[0, k]
                        fill[k] = koff[0, k]
                    for r in range(m):
                        k = top[r]
                        prow[fill[k]] = r
                        pos0[r] = fill[k]
                        fill[k] += 1
                else:
                    # 5. The other components of each row whose bounds
                    # leave them within the cut-off of its first pair's
                    # exact log density (in row order: xptr, x_comp).
                    n_x = 0
                    for r in range(m):
                        xptr[r] = n_x
                        kt = top[r]
                        nm = nmb[r]
                        best = lp[pos0[r]]
                        if next_b[r] - best < _CUTOFF:
                            # No other bound comes within the cut-off (most
                            # rows): nothing to look at one by one.
                            continue
                        for k in range(n_comp):
                            if k == kt or bnd[k, r] - best < _CUTOFF:
                                continue
                            if floor[k] > 0.0:
                                # The line bound along vdir[kt, k] (see Notes).
                                lin = 0.0
                                for j in range(d):
                                    lin += ows[r, j] * (vdir[kt, k, j] * (xs[r, j] - means_c[k, j]))
                                if lin > 0.0:
                                    # u^T Sigma u = v^T Sigma v - 2 v_m^T
                                    # (Sigma v)_m + v_m^T Sigma_mm v_m, plus
                                    # the rounding margin.
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
                                        if ub - best < _CUTOFF:
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
                # 4. Exact log densities of the round's pairs, one component
                # at a time: z = U^T d for all its rows (one BLAS product
                # where they are many), then the factors below and per row
                # the conditional mean of the missing entries.
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
                # The round's factors of Lambda_mm: one per run of pairs of
                # one component and one pattern (rows of a pattern are side
                # by side), numbered on from the last round's.
                f_lo = n_fac
                tri_need = tri_used
                prev_k = -1
                prev_pat = -1
                for k in range(n_comp):
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
                if tri_need > fac_l.shape[0]:
                    grown = max(tri_need, 2 * fac_l.shape[0])
                    new_l = np.empty(grown)
                    new_c = np.empty(grown)
                    new_l[:tri_used] = fac_l[:tri_used]
                    new_c[:tri_used] = fac_c[:tri_used]
                    fac_l = new_l
                    fac_c = new_c
                tri_used = tri_need
                # Factorised in batches of one size, the batch innermost so
                # that the short dependent chains of the Cholesky
                # factorisation (square roots, reciprocals) run side by side.
                for nm in range(d + 1):
                    n_by[nm] = 0
                for f in range(f_lo, n_fac):
                    n_by[nmb[fac_row[f]]] += 1
                at = 0
                for nm in range(d + 1):
                    c = n_by[nm]
                    n_by[nm] = at
                    at += c
                for f in range(f_lo, n_fac):
                    nm = nmb[fac_row[f]]
                    by_size[n_by[nm]] = f
                    n_by[nm] += 1
                b_lo = 0
                while b_lo < n_fac - f_lo:
                    nm = nmb[fac_row[by_size[b_lo]]]
                    nb = 1
                    while (nb < _FACTOR_BATCH and b_lo + nb < n_fac - f_lo
                           and nmb[fac_row[by_size[b_lo + nb]]] == nm):
                        nb += 1
                    n_tri = nm * (nm + 1) // 2
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
                        bdet[i] = 1.0
                    # Cholesky, L (lower) over bl in place, row by row.
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
                                    # Lambda_mm is positive definite whenever U
                                    # is invertible; a non-positive pivot can
                                    # only come from rounding.
                                    piv = math.sqrt(v) if v > 0.0 else 1e-300
                                    bl[ta + a, i] = piv
                                    bp[a, i] = 1.0 / piv
                                    bdet[i] *= piv
                            else:
                                for i in range(nb):
                                    bl[ta + b, i] *= bp[b, i]
                    # L^{-1} (lower), then Lambda_mm^{-1} = L^{-T} L^{-1}.
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
                    for i in range(nb):
                        f = by_size[b_lo + i]
                        off = fac_off[f]
                        for t in range(n_tri):
                            fac_l[off + t] = bl[t, i]
                            fac_c[off + t] = bc[t, i]
                        # The diagonal of L is kept as its reciprocals: the
                        # solves multiply (a division per step would lengthen
                        # their chains of dependent steps).
                        for a in range(nm):
                            fac_l[off + a * (a + 1) // 2 + a] = bp[a, i]
                        # One logarithm of the product of the pivots, unless
                        # it left the normal range.
                        det = bdet[i]
                        if 1e-280 < det < 1e280:
                            fac_ld[f] = math.log(det)
                        else:
                            acc = 0.0
                            for a in range(nm):
                                acc += math.log(bl[a * (a + 1) // 2 + a, i])
                            fac_ld[f] = acc
                    b_lo += nb
                # Per pair, written out (a call costs more than this): bvec =
                # L^{-1} A z, then L^T y = bvec: y = Lambda_mm^{-1} A z, the
                # conditional mean of the missing entries (see _comp_full).
                for k in range(n_comp):
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
                                    acc -= fac_l[ta + c] * bvec[c]
                                bvec[a] = acc * fac_l[ta + a]
                            for a in range(nm - 1, -1, -1):
                                acc = bvec[a]
                                for c in range(a + 1, nm):
                                    acc -= fac_l[off + c * (c + 1) // 2 + a] * bvec[c]
                                bvec[a] = acc * fac_l[off + a * (a + 1) // 2 + a]
                                dif[p, missb[r, a]] = -bvec[a]
                            # The marginal distance is the full quadratic
                            # form at the completed row.
                            for a in range(nm):
                                ra = missb[r, a]
                                da = dif[p, ra]
                                for e in range(d):
                                    zb[p, e] += da * prec_chol[k, ra, e]
                        maha = 0.0
                        for e in range(d):
                            maha += zb[p, e] * zb[p, e]
                        lp[p] = log_norm[k] + 0.5 * nm * _LOG_2PI - log_det - 0.5 * maha
            # 6. Responsibilities and the log-likelihood, per row.
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
                        ll_slot[g, 1] += 1.0
                    # Out of the statistics: zeros, never 0 * inf.
                    for j in range(d):
                        dif[p0, j] = 0.0
                    for q in range(xptr[r], xptr[r + 1]):
                        for j in range(d):
                            dif[x_pos[q], j] = 0.0
                    continue
                if xptr[r + 1] == xptr[r]:
                    # Responsibility exp(0) / 1 = 1 and log 1 = 0: the same
                    # bits as below without its exponentials and logarithm.
                    ll_slot[g, 0] += wi * best
                    wp[p0] = wi
                    continue
                for k in range(n_comp):
                    logp[k] = -np.inf
                logp[kt] = lp[p0]
                for q in range(xptr[r], xptr[r + 1]):
                    logp[x_comp[q]] = lp[x_pos[q]]
                # A call per row with several components (few rows).
                ll_slot[g, 0] += wi * _normalize(logp, resp)
                wp[p0] = wi * resp[kt]
                for q in range(xptr[r], xptr[r + 1]):
                    wp[x_pos[q]] = wi * resp[x_comp[q]]
            # 7. Statistics, one component at a time: the second moments of
            # longer runs of pairs as one matrix product (BLAS), the
            # conditional covariances once per factor.
            for f in range(n_fac):
                fac_w[f] = 0.0
            for k in range(n_comp):
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
                    nk_slot[g, k] += nkk
                    for p in range(p_lo, p_hi):
                        for e in range(d):
                            t_slot[g, k, e] += dw[p, e]
                    if p_hi - p_lo >= _GEMM_MIN_PAIRS:
                        np.dot(dw[p_lo:p_hi].T, dif[p_lo:p_hi], sq)
                        for e in range(d):
                            for f in range(d):
                                s_slot[g, k, e, f] += sq[e, f]
                    else:
                        for p in range(p_lo, p_hi):
                            for e in range(d):
                                v = dw[p, e]
                                for f in range(d):
                                    s_slot[g, k, e, f] += v * dif[p, f]
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
                        # Lower triangle of the factor's inverse at (a, b):
                        # the upper of the slot (the missing indices ascend).
                        s_slot[g, k, missb[r, b], ma] += rw * fac_c[off + a * (a + 1) // 2 + b]


@jit()
def em_stats_missing_diag(X, w, weighted, means, prec, log_norm, rows_per_group,
                          nk_slot, t_slot, s_slot, ll_slot, g_lo, g_hi):
    """Statistics of rows with missing entries, diagonal covariances, groups ``g_lo:g_hi``.

    As :func:`em_stats_missing_full` with ``prec`` ``(k, d)`` (square roots
    of the precisions; spherical ones repeated along ``d``) and ``s_slot``
    ``(G, k, d)``, the per-feature second moments about the means.
    """
    n, d = X.shape
    n_comp = means.shape[0]
    miss = np.empty(d, dtype=np.int64)
    x = np.empty(d)
    diff = np.empty((n_comp, d))
    logp = np.empty(n_comp)
    resp = np.empty(n_comp)
    for g in range(g_lo, g_hi):
        nk_slot[g, :] = 0.0
        t_slot[g, :, :] = 0.0
        s_slot[g, :, :] = 0.0
        ll_slot[g, :] = 0.0
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
                ll_slot[g, 1] += 1.0
                continue
            ll_slot[g, 0] += wi * lse
            for k in range(n_comp):
                if resp[k] == 0.0:
                    continue
                wr = wi * resp[k]
                nk_slot[g, k] += wr
                for e in range(d):
                    v = wr * diff[k, e]
                    t_slot[g, k, e] += v
                    s_slot[g, k, e] += v * diff[k, e]
                for a in range(nm):
                    p = prec[k, miss[a]]
                    s_slot[g, k, miss[a]] += wr / (p * p)


# ---------------------------------------------------------------------------
# Drivers: per-point outputs, imputation
# ---------------------------------------------------------------------------


@jit()
def point_missing_full(X, means, prec_chol, log_norm, mode, u, eps, rows_per_group,
                       out_logp, out_x, g_lo, g_hi):
    """Marginal log densities, and optionally completed rows, full covariances.

    Parameters
    ----------
    X : ndarray (n, d), NaN at missing entries
    means, prec_chol, log_norm : as :func:`em_stats_missing_full`
    mode : int
        0: log densities only; 1: also the conditional mean of each row
        under the mixture, ``sum_k r_k x*_k``, in ``out_x``; 2: also a draw
        from the conditional distribution (component ``k`` with probability
        ``r_k`` chosen by ``u[i]``, then ``x*_k + L^{-T} eps[i, :nm]``).
    u : ndarray (n,) float64, uniforms (mode 2)
    eps : ndarray (n, d) float64, standard normals (mode 2)
    rows_per_group : int
    out_logp : ndarray (n, k) float64, out: ``log w_k + log N(x_o)``
    out_x : ndarray (n, d) float64, out (modes 1 and 2)

    Notes
    -----
    Thread-safe: group ``g`` writes only its own rows of the outputs.
    """
    n, d = X.shape
    n_comp = means.shape[0]
    miss = np.empty(d, dtype=np.int64)
    x = np.empty(d)
    prev = np.empty(d, dtype=np.int64)
    diff = np.empty((n_comp, d))
    chol = np.empty((n_comp, d, d))
    log_dets = np.empty(n_comp)
    chol_ok = np.zeros(n_comp, dtype=np.bool_)
    z = np.empty(d)
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
                    chol_ok[k] = False
            _row_full(x, means, prec_chol, log_norm, miss, nm, diff, z, chol, bvec, log_dets,
                      chol_ok, logp)
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
                            acc += resp[k] * (means[k, miss[a]] + diff[k, miss[a]])
                    out_x[i, miss[a]] = acc
                continue
            pick = _pick_component(resp, u[i])
            # Solve L^T y = eps: y has covariance L^{-T} L^{-1} = Lambda_mm^{-1}.
            for a in range(nm - 1, -1, -1):
                acc = eps[i, a]
                for c in range(a + 1, nm):
                    acc -= chol[pick, c, a] * bvec[c]
                bvec[a] = acc / chol[pick, a, a]
            for a in range(nm):
                ra = miss[a]
                out_x[i, ra] = means[pick, ra] + diff[pick, ra] + bvec[a]


@jit()
def point_missing_diag(X, means, prec, log_norm, mode, u, eps, rows_per_group,
                       out_logp, out_x, g_lo, g_hi):
    """As :func:`point_missing_full` for diagonal covariances (``prec`` ``(k, d)``)."""
    n, d = X.shape
    n_comp = means.shape[0]
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
