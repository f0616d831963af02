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

    Rows of one missing pattern side by side reuse the factors of
    ``Lambda_mm`` and add their conditional covariances once per run.

    Thread-safe: group ``g`` writes only slot ``g`` of each slot array.
    """
    n, d = X.shape
    n_comp = means.shape[0]
    miss = np.empty(d, dtype=np.int64)
    x = np.empty(d)
    ow = np.empty(d)
    prev = np.empty(d, dtype=np.int64)
    diff = np.empty((n_comp, d))
    chol = np.empty((n_comp, d, d))
    pinv = np.empty((n_comp, d))
    log_dets = np.empty(n_comp)
    chol_ok = np.zeros(n_comp, dtype=np.bool_)
    run_w = np.zeros(n_comp)
    linv = np.empty((d, d))
    z = np.empty(d)
    bvec = np.empty(d)
    bound = np.empty(n_comp)
    means_t = np.ascontiguousarray(means.T)
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
    logp = np.empty(n_comp)
    resp = np.empty(n_comp)
    for g in range(g_lo, g_hi):
        nk_slot[g, :] = 0.0
        t_slot[g, :, :] = 0.0
        s_slot[g, :, :, :] = 0.0
        ll_slot[g, :] = 0.0
        lo = g * rows_per_group
        hi = min(lo + rows_per_group, n)
        n_prev = -1
        # The per-row work is written out here rather than called: every
        # call with array arguments costs an atomic reference-count update
        # per array, which cost more than the arithmetic at these sizes.
        for i in range(lo, hi + 1):
            nm = 0
            if i < hi:
                # Branch-free (the positions of NaN are random): x holds zeros
                # and ow zeros at the missing entries, ones elsewhere.
                for j in range(d):
                    v = X[i, j]
                    gap = v != v
                    miss[nm] = j
                    nm += gap
                    x[j] = 0.0 if gap else v
                    ow[j] = 0.0 if gap else 1.0
            same = nm == n_prev
            if same:
                for a in range(nm):
                    if miss[a] != prev[a]:
                        same = False
                        break
            if i == hi or not same:
                # A run of rows with one pattern ends: its conditional
                # covariances enter the second moments once, weighted by the
                # run's responsibilities, and the factors are forgotten.
                for k in range(n_comp):
                    if run_w[k] > 0.0 and n_prev > 0:
                        # Lambda_mm^{-1} = L^{-T} L^{-1}, written out as the rest.
                        for a in range(n_prev):
                            inv_diag = pinv[k, a]
                            linv[a, a] = inv_diag
                            for b in range(a):
                                acc = 0.0
                                for c in range(b, a):
                                    acc -= chol[k, a, c] * linv[c, b]
                                linv[a, b] = acc * inv_diag
                        rw = run_w[k]
                        for a in range(n_prev):
                            for b in range(a, n_prev):
                                acc = 0.0
                                for c in range(b, n_prev):
                                    acc += linv[c, a] * linv[c, b]
                                s_slot[g, k, prev[a], prev[b]] += rw * acc
                    run_w[k] = 0.0
                    chol_ok[k] = False
                if i == hi:
                    break
                for a in range(nm):
                    prev[a] = miss[a]
                n_prev = nm
            wi = w[i] if weighted else 1.0
            # Upper bounds of the log densities (see Notes), from
            # squared distances over the observed features, components innermost.
            for k in range(n_comp):
                bound[k] = 0.0
            for j in range(d):
                xj = x[j]
                oj = ow[j]
                for k in range(n_comp):
                    v = xj - means_t[j, k]
                    bound[k] += oj * (v * v)
            # Branch-free, so that it vectorises: where floor is zero,
            # bound_base is infinite and the rest zero (never skipped).
            for k in range(n_comp):
                bound[k] = (bound_base[k] + nm * log_gap[k]) - half_floor[k] * bound[k]
            top = 0
            for k in range(1, n_comp):
                if bound[k] > bound[top]:
                    top = k
            best = -np.inf
            n_eval = 0
            for q in range(n_comp):
                # The component of largest bound first, then the others.
                k = top if q == 0 else (q - 1 if q - 1 < top else q)
                if q > 0 and bound[k] - best < _CUTOFF:
                    logp[k] = -np.inf
                    continue
                if q > 0 and floor[k] > 0.0:
                    # The line bound along vdir[top, k] (see Notes), for the
                    # few components the eigenvalue bound leaves.
                    lin = 0.0
                    for j in range(d):
                        lin += ow[j] * (vdir[top, k, j] * (x[j] - means[k, j]))
                    if lin > 0.0:
                        # u^T Sigma u = v^T Sigma v - 2 v_m^T (Sigma v)_m +
                        # v_m^T Sigma_mm v_m, plus the rounding margin.
                        s_o = s_full[top, k]
                        for a in range(nm):
                            ma = miss[a]
                            va = vdir[top, k, ma]
                            acc = 0.5 * va * sig[k, ma, ma] - sv[top, k, ma]
                            for c in range(a):
                                acc += vdir[top, k, miss[c]] * sig[k, ma, miss[c]]
                            s_o += 2.0 * va * acc
                        s_o += _LINE_MARGIN * ((nm + 1) * (nm + 1) * (d + 2)) / floor[k]
                        if s_o > 0.0:
                            lb = _LINE_SAFETY * lin * lin / s_o
                            if log_norm[k] + nm * log_gap[k] - 0.5 * lb - best < _CUTOFF:
                                logp[k] = -np.inf
                                continue
                # The marginal log density of component k (as _comp_full).
                for j in range(d):
                    diff[k, j] = ow[j] * (x[j] - means[k, j])
                    z[j] = 0.0
                # Full-length rows of U (zeros below the diagonal): fixed-length
                # loops vectorise, where the triangle's ragged ones do not.
                for j in range(d):
                    dj = diff[k, j]
                    for e in range(d):
                        z[e] += dj * prec_chol[k, j, e]
                if not chol_ok[k]:
                    log_det = 0.0
                    for a in range(nm):
                        ra = miss[a]
                        for b in range(a + 1):
                            acc = lam[k, ra, miss[b]]
                            for c in range(b):
                                acc -= chol[k, a, c] * chol[k, b, c]
                            if a == b:
                                piv = math.sqrt(acc) if acc > 0.0 else 1e-300
                                chol[k, a, a] = piv
                                # Reciprocals once per factor: the solves
                                # below multiply (a division per step would
                                # lengthen their chains of dependent steps).
                                pinv[k, a] = 1.0 / piv
                                log_det += math.log(piv)
                            else:
                                chol[k, a, b] = acc * pinv[k, b]
                    log_dets[k] = log_det
                    chol_ok[k] = True
                for a in range(nm):
                    ra = miss[a]
                    acc = 0.0
                    for e in range(d):
                        acc += prec_chol[k, ra, e] * z[e]
                    for c in range(a):
                        acc -= chol[k, a, c] * bvec[c]
                    bvec[a] = acc * pinv[k, a]
                for a in range(nm - 1, -1, -1):
                    acc = bvec[a]
                    for c in range(a + 1, nm):
                        acc -= chol[k, c, a] * bvec[c]
                    bvec[a] = acc * pinv[k, a]
                    diff[k, miss[a]] = -bvec[a]
                for a in range(nm):
                    ra = miss[a]
                    da = diff[k, ra]
                    for e in range(d):
                        z[e] += da * prec_chol[k, ra, e]
                maha = 0.0
                for e in range(d):
                    maha += z[e] * z[e]
                lp = log_norm[k] + 0.5 * nm * _LOG_2PI - log_dets[k] - 0.5 * maha
                logp[k] = lp
                n_eval += 1
                if lp > best:
                    best = lp
            # Responsibilities (as _normalize).
            if best == -np.inf:
                if wi != 0.0:
                    ll_slot[g, 1] += 1.0
                continue
            if n_eval == 1:
                # The only component evaluated (most rows): responsibility
                # exp(0) = 1 and log 1 = 0, the same bits as the general path
                # without its exponentials and logarithm.
                if wi == 0.0:
                    continue
                ll_slot[g, 0] += wi * best
                nk_slot[g, top] += wi
                run_w[top] += wi
                for e in range(d):
                    v = wi * diff[top, e]
                    t_slot[g, top, e] += v
                    for f in range(d):
                        s_slot[g, top, e, f] += v * diff[top, f]
                continue
            total = 0.0
            for k in range(n_comp):
                gap = logp[k] - best
                if gap < _CUTOFF:
                    resp[k] = 0.0
                else:
                    resp[k] = math.exp(gap)
                    total += resp[k]
            if wi == 0.0:
                continue
            ll_slot[g, 0] += wi * (best + math.log(total))
            scale = wi / total
            for k in range(n_comp):
                if resp[k] == 0.0:
                    continue
                wr = scale * resp[k]
                nk_slot[g, k] += wr
                run_w[k] += wr
                # The whole square (the lower triangle is never read): a
                # fixed-length inner loop vectorises, the triangle's does not.
                for e in range(d):
                    v = wr * diff[k, e]
                    t_slot[g, k, e] += v
                    for f in range(d):
                        s_slot[g, k, e, f] += v * diff[k, f]


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
