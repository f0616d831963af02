"""Every compiled kernel of fastgmm.

Kernels take arrays and scalars, never validate, and write into buffers the
caller allocated.  They live in one file because Numba's disk cache does not
notice when a helper defined in another module changes.

Conventions
-----------
* ``X`` is C-contiguous ``(n_samples, n_features)``, float32 or float64.  The
  per-point arithmetic runs in the dtype of ``X``; means and precision factors
  are passed in that same dtype.  Log-probabilities, responsibilities and all
  accumulated statistics are float64.
* Rows are processed in fixed chunks of ``chunk_size`` rows.  Chunk ``c`` (of
  the call) writes only slot ``c`` of each ``*_slot`` array, so the ``prange``
  loop has no shared writes; the slots are then folded into the ``*_acc``
  accumulators serially, in chunk order.  The summation order therefore depends
  on the chunk size only, never on the number of threads.
* ``weighted`` is False when every sample weight is one; ``w`` is then ignored
  (a length-0 array may be passed).
* Precision factors follow scikit-learn: ``prec_chol`` is upper triangular and
  the precision matrix is ``prec_chol @ prec_chol.T``, so the Mahalanobis
  distance is ``|| (x - mu) @ prec_chol ||^2``.
* ``log_norm[k] = log(weight_k) + log det(prec_chol_k) - d/2 log(2 pi)``, so the
  weighted log density is ``log_norm[k] - maha / 2``.
* Every dispatcher exists twice: ``name`` (parallel) and ``name_serial``
  (``prange`` runs as ``range``), for small inputs and for callers that run
  several fits at once from Python threads.
"""

from __future__ import annotations

import types

import numpy as np
from numba import prange

from ._config import jit

#: Responsibilities below ``exp(RESP_LOG_FLOOR)`` times the row's largest are
#: stored as exact zeros (and skipped by the accumulation).
RESP_LOG_FLOOR = -50.0

# ---------------------------------------------------------------------------
# Per-chunk helpers (serial; called from the drivers below)
#
# A chunk of m <= chunk_size rows is first transposed into ``xt`` (d, m) so
# that every inner loop below runs over rows, contiguously: LLVM vectorises
# those loops whatever d is, which it cannot do for short, variable-length
# loops over features.
# ---------------------------------------------------------------------------


@jit()
def _transpose_chunk(X, start, stop, xt):
    """``xt[e, i - start] = X[i, e]`` for rows ``start:stop``."""
    n_features = X.shape[1]
    for i in range(start, stop):
        for e in range(n_features):
            xt[e, i - start] = X[i, e]


@jit()
def _sq_dist_rows(xt, m, mu, out):
    """``out[i] = ||xt[:, i] - mu||^2`` for ``i < m`` (a transposed chunk)."""
    n_features = xt.shape[0]
    for i in range(m):
        out[i] = 0
    for e in range(n_features):
        me = mu[e]
        row = xt[e]
        for i in range(m):
            z = row[i] - me
            out[i] += z * z


@jit()
def _maha_triangle(dt, cnt, u, acc, maha):
    """``maha[j] = || U^T dt[:, j] ||^2`` for ``j < cnt`` (``U`` upper triangular).

    ``y_f = sum_{e <= f} U[e, f] dt[e, j]`` is formed one output feature at a
    time for all columns at once: ``d (d + 1) / 2`` multiply-adds per column,
    in loops over columns that vectorise.
    """
    n_features = dt.shape[0]
    for j in range(cnt):
        maha[j] = 0
    for f in range(n_features):
        u0 = u[0, f]
        r0 = dt[0]
        for j in range(cnt):
            acc[j] = u0 * r0[j]
        for e in range(1, f + 1):
            uef = u[e, f]
            r = dt[e]
            for j in range(cnt):
                acc[j] += uef * r[j]
        for j in range(cnt):
            maha[j] += acc[j] * acc[j]


@jit()
def _log_prob_chunk_full(xt, m, means, prec_chol, log_norm, lam_min, prune, logp,
                         dt, acc, maha, idx, kbest, best):
    """Weighted log densities of a transposed chunk, full covariances.

    Parameters
    ----------
    xt : ndarray (d, >= m), dtype of X
        Transposed chunk.
    m : int
        Rows in the chunk.
    means : ndarray (k, d), dtype of X
    prec_chol : ndarray (k, d, d), dtype of X, upper triangular
    log_norm : ndarray (k,) float64
    lam_min : ndarray (k,) float64
        A lower bound of the smallest eigenvalue of each precision matrix.
    prune : bool
        Skip the exact density where it cannot reach ``RESP_LOG_FLOOR`` of
        the row's best (see Notes); such entries are set to ``-inf``.
    logp : ndarray (>= m, k) float64, written
    dt : ndarray (d, >= m), dtype of X, scratch
    acc, maha : ndarray (>= m,), dtype of X, scratch
    idx, kbest : ndarray (>= m,) int64, scratch
    best : ndarray (>= m,) float64, scratch

    Notes
    -----
    Subtracts the mean before multiplying by the triangle (no cancellation on
    data far from the origin).

    Pruning: ``maha >= lam_min ||x - mu||^2``, so ``ub = log_norm -
    lam_min ||x - mu||^2 / 2`` bounds the log density from above at the cost
    of ``d`` operations instead of ``d (d + 1)``.  Each row first gets the
    exact density of its most promising component; a component whose bound
    lies more than ``-RESP_LOG_FLOOR + 1`` below that exact value would get
    an exactly zero responsibility from :func:`_normalize_rows` anyway, so its
    exact density is never needed.  Responsibilities, log-likelihoods and
    labels are the same as without pruning; on separated clusters a row
    costs one or two triangular products instead of ``k``.
    """
    n_features = xt.shape[0]
    n_components = means.shape[0]
    if not prune or n_components == 1:
        for k in range(n_components):
            mu = means[k]
            for e in range(n_features):
                me = mu[e]
                for i in range(m):
                    dt[e, i] = xt[e, i] - me
            _maha_triangle(dt, m, prec_chol[k], acc, maha)
            ln = log_norm[k]
            for i in range(m):
                logp[i, k] = ln - 0.5 * maha[i]
        return
    # Upper bounds of every density (kept in logp until replaced).
    for k in range(n_components):
        _sq_dist_rows(xt, m, means[k], maha)
        half = 0.5 * lam_min[k]
        ln = log_norm[k]
        for i in range(m):
            logp[i, k] = ln - half * maha[i]
    # Exact density of each row's most promising component ...
    for i in range(m):
        kb = 0
        for k in range(1, n_components):
            if logp[i, k] > logp[i, kb]:
                kb = k
        kbest[i] = kb
    for k in range(n_components):
        cnt = 0
        for i in range(m):
            if kbest[i] == k:
                idx[cnt] = i
                cnt += 1
        _exact_full_rows(xt, idx, cnt, means[k], prec_chol[k], log_norm[k], k,
                         logp, dt, acc, maha)
    for i in range(m):
        best[i] = logp[i, kbest[i]] + (RESP_LOG_FLOOR - 1.0)
    # ... then every other component whose bound can still matter.
    for k in range(n_components):
        cnt = 0
        for i in range(m):
            if kbest[i] != k:
                if logp[i, k] > best[i]:
                    idx[cnt] = i
                    cnt += 1
                else:
                    logp[i, k] = -np.inf
        _exact_full_rows(xt, idx, cnt, means[k], prec_chol[k], log_norm[k], k,
                         logp, dt, acc, maha)


@jit()
def _exact_full_rows(xt, idx, cnt, mu, u, ln, k, logp, dt, acc, maha):
    """Exact ``logp[idx[j], k]`` for the ``cnt`` gathered rows."""
    if cnt == 0:
        return
    n_features = xt.shape[0]
    for e in range(n_features):
        me = mu[e]
        for j in range(cnt):
            dt[e, j] = xt[e, idx[j]] - me
    _maha_triangle(dt, cnt, u, acc, maha)
    for j in range(cnt):
        logp[idx[j], k] = ln - 0.5 * maha[j]


@jit()
def _log_prob_chunk_tied(xt, m, shift, mean_proj, prec_chol, log_norm, logp, dt, yt, maha):
    """Weighted log densities of a transposed chunk, tied covariance.

    Parameters
    ----------
    shift : ndarray (d,), dtype of X
        A point near the data (the weighted mean of the means).
    mean_proj : ndarray (k, d), dtype of X
        ``(means - shift) @ prec_chol``.
    prec_chol : ndarray (d, d), dtype of X, upper triangular
    dt, yt : ndarray (d, >= m), dtype of X, scratch
    maha : ndarray (>= m,), dtype of X, scratch

    Notes
    -----
    ``(x - mu_k) @ U = (x - c) @ U - (mu_k - c) @ U``: one triangular product
    per row, then ``d`` subtractions per row and component.
    """
    n_features = xt.shape[0]
    n_components = mean_proj.shape[0]
    for e in range(n_features):
        ce = shift[e]
        for i in range(m):
            dt[e, i] = xt[e, i] - ce
    for f in range(n_features):
        u0 = prec_chol[0, f]
        for i in range(m):
            yt[f, i] = u0 * dt[0, i]
        for e in range(1, f + 1):
            uef = prec_chol[e, f]
            for i in range(m):
                yt[f, i] += uef * dt[e, i]
    for k in range(n_components):
        mp = mean_proj[k]
        for i in range(m):
            maha[i] = 0
        for f in range(n_features):
            pf = mp[f]
            for i in range(m):
                z = yt[f, i] - pf
                maha[i] += z * z
        ln = log_norm[k]
        for i in range(m):
            logp[i, k] = ln - 0.5 * maha[i]


@jit()
def _log_prob_chunk_diag(xt, m, means, prec, log_norm, logp, maha):
    """Weighted log densities of a transposed chunk, diagonal covariances.

    ``prec`` is (k, d) in the dtype of X: ``1 / sqrt(variance)``.
    """
    n_features = xt.shape[0]
    n_components = means.shape[0]
    for k in range(n_components):
        mu = means[k]
        p = prec[k]
        for i in range(m):
            maha[i] = 0
        for e in range(n_features):
            me = mu[e]
            pe = p[e]
            for i in range(m):
                z = (xt[e, i] - me) * pe
                maha[i] += z * z
        ln = log_norm[k]
        for i in range(m):
            logp[i, k] = ln - 0.5 * maha[i]


@jit()
def _log_prob_chunk_spherical(xt, m, means, prec, log_norm, logp, maha):
    """Weighted log densities of a transposed chunk, spherical covariances.

    ``prec`` is (k,) float64: ``1 / sqrt(variance)``.
    """
    n_components = means.shape[0]
    for k in range(n_components):
        _sq_dist_rows(xt, m, means[k], maha)
        ln = log_norm[k]
        p2 = 0.5 * prec[k] * prec[k]
        for i in range(m):
            logp[i, k] = ln - p2 * maha[i]


@jit(inline=True)
def _exp_nonpositive(x):
    """``exp(x)`` for ``-60 <= x <= 0``, branch-free so loops vectorise.

    ``exp(x) = exp(x / 256) ** 256``: a degree-10 Taylor polynomial for
    ``|x / 256| <= 0.24`` (truncation error below 2e-15) followed by eight
    squarings, which multiply the relative error by at most 256.  The result
    is within about 5e-13 relative of the correctly rounded value; libm's
    scalar ``exp`` cannot be vectorised without SVML.
    """
    y = x * 0.00390625
    p = 1.0 + y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (
        1.0 / 120.0 + y * (1.0 / 720.0 + y * (1.0 / 5040.0 + y * (
            1.0 / 40320.0 + y * (1.0 / 362880.0 + y * (1.0 / 3628800.0))))))))))
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    return p * p


@jit()
def _normalize_rows(logp, n_rows, lse):
    """Turn log densities into responsibilities in place.

    Parameters
    ----------
    logp : ndarray (>= n_rows, k) float64
        Weighted log densities in, responsibilities out.
    n_rows : int
    lse : ndarray (>= n_rows,) float64
        Receives ``log sum_k exp(logp[i, k])`` (the log density of the row).

    Notes
    -----
    Log-sum-exp with the row maximum.  A row whose every density underflows
    to zero (maximum ``-inf``) gets ``lse = -inf`` and uniform
    responsibilities, so no NaN is produced; the caller reports the ``-inf``.
    """
    n_components = logp.shape[1]
    for i in range(n_rows):
        mx = logp[i, 0]
        for k in range(1, n_components):
            if logp[i, k] > mx:
                mx = logp[i, k]
        if mx == -np.inf or mx != mx:
            lse[i] = mx
            for k in range(n_components):
                logp[i, k] = 1.0 / n_components
            continue
        total = 0.0
        for k in range(n_components):
            v = logp[i, k] - mx
            # exp(-50) ~ 2e-22: below one part in 1e21 of the row's mass, such
            # a responsibility cannot move any statistic by a representable
            # amount; storing an exact zero lets the accumulation skip it.
            e = _exp_nonpositive(max(v, RESP_LOG_FLOOR))
            v = e if v > RESP_LOG_FLOOR else 0.0
            logp[i, k] = v
            total += v
        lse[i] = mx + np.log(total)
        inv = 1.0 / total
        for k in range(n_components):
            logp[i, k] *= inv


@jit()
def _gather_resp(resp, m, k, w, weighted, start, idx, rr):
    """Rows of the chunk with a non-zero weighted responsibility for ``k``.

    Writes their chunk-relative indices into ``idx`` and ``r * w`` into
    ``rr``; returns how many there are.
    """
    cnt = 0
    for i in range(m):
        r = resp[i, k]
        if weighted:
            r *= w[start + i]
        if r != 0.0:
            idx[cnt] = i
            rr[cnt] = r
            cnt += 1
    return cnt


@jit()
def _accumulate_chunk_full(xt, m, w, weighted, start, resp, shift, nk, t, s,
                           dt, rt, idx, rr):
    """Add a transposed chunk to full-covariance statistics.

    Parameters
    ----------
    xt : ndarray (d, >= m), dtype of X
    w : ndarray (n,) float64 (indexed from ``start``)
    resp : ndarray (>= m, k) float64
    shift : ndarray (k, d), dtype of X
    nk : ndarray (k,) float64, updated
    t : ndarray (k, d) float64, updated: ``sum r w (x - shift_k)``
    s : ndarray (k, d, d) float64, updated (whole matrix; callers read the
        upper triangle): ``sum r w (x - shift_k)(x - shift_k)^T``
    dt : ndarray (d, m) float64, scratch (reshaped to (m, d))
    rt : unused
    idx : ndarray (>= m,) int64, scratch
    rr : ndarray (>= m,) float64, scratch

    Notes
    -----
    Only rows with a non-zero responsibility are gathered, so on clustered
    data each row costs ``d^2 / 2`` for the one or two components it belongs
    to instead of for all ``k``.
    """
    n_features = xt.shape[0]
    n_components = shift.shape[0]
    # Gathered rows in row layout (the scratch reshaped): each has d
    # contiguous values, so the rank-one update below runs over full rows of
    # s[k] and vectorises, which short dot products over the few rows a
    # component gets per chunk do not.
    dr = dt.reshape((dt.shape[1], n_features))
    for k in range(n_components):
        cnt = _gather_resp(resp, m, k, w, weighted, start, idx, rr)
        if cnt == 0:
            continue
        c = shift[k]
        tk = t[k]
        sk = s[k]
        total = 0.0
        for j in range(cnt):
            i = idx[j]
            row = dr[j]
            for e in range(n_features):
                row[e] = xt[e, i] - c[e]
            r = rr[j]
            total += r
            for e in range(n_features):
                a = r * row[e]
                tk[e] += a
                se = sk[e]
                for f in range(n_features):
                    se[f] += a * row[f]
        nk[k] += total


@jit()
def _accumulate_chunk_tied(xt, m, w, weighted, start, resp, shift, nk, t, s,
                           dt, rt, idx, rr):
    """Add a transposed chunk to tied-covariance statistics.

    Parameters
    ----------
    shift : ndarray (d,), dtype of X, common to all components
    t : ndarray (k, d) float64: ``sum r w (x - shift)``
    s : ndarray (d, d) float64 (upper triangle): ``sum w (x - shift)(x - shift)^T``

    Notes
    -----
    With one shift for all components, ``sum_k r_ik = 1`` removes the
    responsibilities from the scatter: ``d^2 / 2`` per row, not ``k d^2 / 2``.
    """
    n_features = xt.shape[0]
    n_components = t.shape[0]
    for i in range(m):
        rr[i] = w[start + i] if weighted else 1.0
    for e in range(n_features):
        ce = shift[e]
        for i in range(m):
            v = xt[e, i] - ce
            dt[e, i] = v
            rt[e, i] = rr[i] * v
    for e in range(n_features):
        for f in range(e, n_features):
            acc = 0.0
            for i in range(m):
                acc += rt[e, i] * dt[f, i]
            s[e, f] += acc
    for k in range(n_components):
        cnt = _gather_resp(resp, m, k, w, weighted, start, idx, rr)
        total = 0.0
        for j in range(cnt):
            total += rr[j]
        nk[k] += total
        for e in range(n_features):
            te = 0.0
            for j in range(cnt):
                te += rr[j] * dt[e, idx[j]]
            t[k, e] += te


@jit()
def _accumulate_chunk_diag(xt, m, w, weighted, start, resp, shift, nk, t, s,
                           dt, rt, idx, rr):
    """Add a transposed chunk to diagonal statistics.

    Parameters
    ----------
    shift : ndarray (k, d), dtype of X
    t : ndarray (k, d) float64
    s : ndarray (k, d) float64: ``sum r w (x - shift_k)^2`` per feature

    Notes
    -----
    Spherical models use the same statistics; the M-step averages features.
    ``dt`` and ``rt`` are unused (same signature as the other types).
    """
    n_features = xt.shape[0]
    n_components = shift.shape[0]
    for k in range(n_components):
        cnt = _gather_resp(resp, m, k, w, weighted, start, idx, rr)
        if cnt == 0:
            continue
        total = 0.0
        for j in range(cnt):
            total += rr[j]
        nk[k] += total
        c = shift[k]
        for e in range(n_features):
            ce = c[e]
            te = 0.0
            se = 0.0
            for j in range(cnt):
                v = xt[e, idx[j]] - ce
                rv = rr[j] * v
                te += rv
                se += rv * v
            t[k, e] += te
            s[k, e] += se


# ---------------------------------------------------------------------------
# Folding per-chunk slots in a fixed order
# ---------------------------------------------------------------------------


@jit()
def _fold(slot, n_used, acc):
    """``acc += slot[0] + slot[1] + ... + slot[n_used - 1]``, in that order.

    Parameters
    ----------
    slot : ndarray (n_slots, m) float64, C-contiguous
    n_used : int
    acc : ndarray (m,) float64, updated
    """
    for c in range(n_used):
        row = slot[c]
        for j in range(acc.shape[0]):
            acc[j] += row[j]


@jit()
def _fold_stats(nk_slot, t_slot, s_slot, ll_slot, n_used, nk, t, s, ll):
    """Fold the four slot arrays of a statistics call into the accumulators."""
    n_slots = nk_slot.shape[0]
    _fold(nk_slot.reshape((n_slots, nk.size)), n_used, nk.reshape(nk.size))
    _fold(t_slot.reshape((n_slots, t.size)), n_used, t.reshape(t.size))
    _fold(s_slot.reshape((n_slots, s.size)), n_used, s.reshape(s.size))
    _fold(ll_slot.reshape((n_slots, ll.size)), n_used, ll.reshape(ll.size))


# ---------------------------------------------------------------------------
# Fused E-step + sufficient statistics (one pass over the data)
# ---------------------------------------------------------------------------


@jit()
def _chunk_bounds(c, chunk_size, n_samples):
    start = c * chunk_size
    stop = min(start + chunk_size, n_samples)
    return start, stop, stop - start


@jit()
def _accumulation_scratch(n_features, m):
    """Float64 scratch of the accumulation helpers: dt, rt, idx, rr."""
    return (np.empty((n_features, m)), np.empty((n_features, m)),
            np.empty(m, dtype=np.int64), np.empty(m))


def _em_stats_full_py(X, w, weighted, means, prec_chol, log_norm, lam_min, chunk_size,
                      nk_slot, t_slot, s_slot, ll_slot, nk, t, s, ll):
    """Fused E-step and statistics for full covariances.

    Parameters
    ----------
    X : ndarray (n, d) float32/float64, C-contiguous
    w : ndarray (n,) float64 (or length 0 when ``weighted`` is False)
    weighted : bool
    means : ndarray (k, d), dtype of X; also the shift of the statistics
    prec_chol : ndarray (k, d, d), dtype of X
    log_norm : ndarray (k,) float64
    lam_min : ndarray (k,) float64
        Lower bounds of the precisions' smallest eigenvalues (pruning).
    chunk_size : int
    nk_slot, t_slot, s_slot, ll_slot : float64 scratch, shapes ``(G, k)``,
        ``(G, k, d)``, ``(G, k, d, d)``, ``(G, 2)`` with
        ``G >= ceil(n / chunk_size)``
    nk, t, s, ll : float64 accumulators, shapes ``(k,)``, ``(k, d)``,
        ``(k, d, d)`` (upper triangle), ``(2,)``; ``ll[0]`` receives
        ``sum w log p(x)``, ``ll[1]`` the number of rows with ``p(x) = 0``.

    Notes
    -----
    Thread-safe: chunk ``c`` writes only slot ``c`` and its own scratch;
    slots are folded after the parallel loop, in chunk order.
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for c in prange(n_chunks):
        start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
        nk_slot[c] = 0.0
        t_slot[c] = 0.0
        s_slot[c] = 0.0
        ll_slot[c] = 0.0
        xt = np.empty((n_features, m), dtype=X.dtype)
        dx = np.empty((n_features, m), dtype=X.dtype)
        acc = np.empty(m, dtype=X.dtype)
        maha = np.empty(m, dtype=X.dtype)
        logp = np.empty((m, n_components))
        lse = np.empty(m)
        _transpose_chunk(X, start, stop, xt)
        idx = np.empty(m, dtype=np.int64)
        kbest = np.empty(m, dtype=np.int64)
        _log_prob_chunk_full(xt, m, means, prec_chol, log_norm, lam_min, True, logp,
                             dx, acc, maha, idx, kbest, lse)
        _normalize_rows(logp, m, lse)
        _sum_log_lik(lse, m, w, weighted, start, ll_slot[c])
        dt, rt, idx, rr = _accumulation_scratch(n_features, m)
        _accumulate_chunk_full(xt, m, w, weighted, start, logp, means,
                               nk_slot[c], t_slot[c], s_slot[c], dt, rt, idx, rr)
    _fold_stats(nk_slot, t_slot, s_slot, ll_slot, n_chunks, nk, t, s, ll)


def _em_stats_tied_py(X, w, weighted, shift, mean_proj, prec_chol, log_norm,
                      chunk_size, nk_slot, t_slot, s_slot, ll_slot, nk, t, s, ll):
    """Fused E-step and statistics for a tied covariance.

    Parameters as :func:`_em_stats_full` except ``shift`` (d,) and
    ``mean_proj`` (k, d) (see :func:`_log_prob_chunk_tied`), ``prec_chol``
    (d, d), and ``s_slot`` ``(G, d, d)``, ``s`` ``(d, d)``.

    Notes
    -----
    Thread-safe: per-chunk slots and scratch, folded in chunk order.
    """
    n_samples, n_features = X.shape
    n_components = mean_proj.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for c in prange(n_chunks):
        start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
        nk_slot[c] = 0.0
        t_slot[c] = 0.0
        s_slot[c] = 0.0
        ll_slot[c] = 0.0
        xt = np.empty((n_features, m), dtype=X.dtype)
        dx = np.empty((n_features, m), dtype=X.dtype)
        yt = np.empty((n_features, m), dtype=X.dtype)
        maha = np.empty(m, dtype=X.dtype)
        logp = np.empty((m, n_components))
        lse = np.empty(m)
        _transpose_chunk(X, start, stop, xt)
        _log_prob_chunk_tied(xt, m, shift, mean_proj, prec_chol, log_norm, logp, dx, yt, maha)
        _normalize_rows(logp, m, lse)
        _sum_log_lik(lse, m, w, weighted, start, ll_slot[c])
        dt, rt, idx, rr = _accumulation_scratch(n_features, m)
        _accumulate_chunk_tied(xt, m, w, weighted, start, logp, shift,
                               nk_slot[c], t_slot[c], s_slot[c], dt, rt, idx, rr)
    _fold_stats(nk_slot, t_slot, s_slot, ll_slot, n_chunks, nk, t, s, ll)


def _em_stats_diag_py(X, w, weighted, means, prec, log_norm, chunk_size,
                      nk_slot, t_slot, s_slot, ll_slot, nk, t, s, ll):
    """Fused E-step and statistics for diagonal covariances.

    ``prec`` is (k, d); ``s_slot`` is ``(G, k, d)`` and ``s`` ``(k, d)``.

    Notes
    -----
    Thread-safe: per-chunk slots and scratch, folded in chunk order.
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for c in prange(n_chunks):
        start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
        nk_slot[c] = 0.0
        t_slot[c] = 0.0
        s_slot[c] = 0.0
        ll_slot[c] = 0.0
        xt = np.empty((n_features, m), dtype=X.dtype)
        maha = np.empty(m, dtype=X.dtype)
        logp = np.empty((m, n_components))
        lse = np.empty(m)
        _transpose_chunk(X, start, stop, xt)
        _log_prob_chunk_diag(xt, m, means, prec, log_norm, logp, maha)
        _normalize_rows(logp, m, lse)
        _sum_log_lik(lse, m, w, weighted, start, ll_slot[c])
        dt, rt, idx, rr = _accumulation_scratch(0, m)
        _accumulate_chunk_diag(xt, m, w, weighted, start, logp, means,
                               nk_slot[c], t_slot[c], s_slot[c], dt, rt, idx, rr)
    _fold_stats(nk_slot, t_slot, s_slot, ll_slot, n_chunks, nk, t, s, ll)


def _em_stats_spherical_py(X, w, weighted, means, prec, log_norm, chunk_size,
                           nk_slot, t_slot, s_slot, ll_slot, nk, t, s, ll):
    """Fused E-step and statistics for spherical covariances.

    ``prec`` is (k,); the statistics are the diagonal ones
    (``s`` is ``(k, d)``), averaged over features by the M-step.

    Notes
    -----
    Thread-safe: per-chunk slots and scratch, folded in chunk order.
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for c in prange(n_chunks):
        start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
        nk_slot[c] = 0.0
        t_slot[c] = 0.0
        s_slot[c] = 0.0
        ll_slot[c] = 0.0
        xt = np.empty((n_features, m), dtype=X.dtype)
        maha = np.empty(m, dtype=X.dtype)
        logp = np.empty((m, n_components))
        lse = np.empty(m)
        _transpose_chunk(X, start, stop, xt)
        _log_prob_chunk_spherical(xt, m, means, prec, log_norm, logp, maha)
        _normalize_rows(logp, m, lse)
        _sum_log_lik(lse, m, w, weighted, start, ll_slot[c])
        dt, rt, idx, rr = _accumulation_scratch(0, m)
        _accumulate_chunk_diag(xt, m, w, weighted, start, logp, means,
                               nk_slot[c], t_slot[c], s_slot[c], dt, rt, idx, rr)
    _fold_stats(nk_slot, t_slot, s_slot, ll_slot, n_chunks, nk, t, s, ll)


@jit()
def _sum_log_lik(lse, m, w, weighted, start, out):
    """``out[0] += sum w_i lse_i``; ``out[1]`` counts rows with ``lse = -inf``.

    Rows of zero weight are left out so that a zero density there does not
    poison the total.
    """
    total = 0.0
    n_zero = 0.0
    for i in range(m):
        wi = w[start + i] if weighted else 1.0
        if wi == 0.0:
            continue
        if lse[i] == -np.inf:
            n_zero += 1.0
        else:
            total += wi * lse[i]
    out[0] += total
    out[1] += n_zero


# ---------------------------------------------------------------------------
# Statistics from given responsibilities (initialisation)
# ---------------------------------------------------------------------------


def _resp_stats_full_py(X, w, weighted, resp, shift, chunk_size,
                        nk_slot, t_slot, s_slot, nk, t, s):
    """Full-covariance statistics for given responsibilities ``resp`` (n, k).

    Notes
    -----
    Zero responsibilities are skipped, so one-hot (hard) assignments cost
    ``d^2 / 2`` per row.  Thread-safe: per-chunk slots, folded in order.
    """
    n_samples, n_features = X.shape
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for c in prange(n_chunks):
        start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
        nk_slot[c] = 0.0
        t_slot[c] = 0.0
        s_slot[c] = 0.0
        xt = np.empty((n_features, m), dtype=X.dtype)
        _transpose_chunk(X, start, stop, xt)
        dt, rt, idx, rr = _accumulation_scratch(n_features, m)
        _accumulate_chunk_full(xt, m, w, weighted, start, resp[start:stop], shift,
                               nk_slot[c], t_slot[c], s_slot[c], dt, rt, idx, rr)
    n_slots = nk_slot.shape[0]
    _fold(nk_slot.reshape((n_slots, nk.size)), n_chunks, nk.reshape(nk.size))
    _fold(t_slot.reshape((n_slots, t.size)), n_chunks, t.reshape(t.size))
    _fold(s_slot.reshape((n_slots, s.size)), n_chunks, s.reshape(s.size))


def _resp_stats_tied_py(X, w, weighted, resp, shift, chunk_size,
                        nk_slot, t_slot, s_slot, nk, t, s):
    """Tied statistics for given responsibilities; ``shift`` is (d,)."""
    n_samples, n_features = X.shape
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for c in prange(n_chunks):
        start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
        nk_slot[c] = 0.0
        t_slot[c] = 0.0
        s_slot[c] = 0.0
        xt = np.empty((n_features, m), dtype=X.dtype)
        _transpose_chunk(X, start, stop, xt)
        dt, rt, idx, rr = _accumulation_scratch(n_features, m)
        _accumulate_chunk_tied(xt, m, w, weighted, start, resp[start:stop], shift,
                               nk_slot[c], t_slot[c], s_slot[c], dt, rt, idx, rr)
    n_slots = nk_slot.shape[0]
    _fold(nk_slot.reshape((n_slots, nk.size)), n_chunks, nk.reshape(nk.size))
    _fold(t_slot.reshape((n_slots, t.size)), n_chunks, t.reshape(t.size))
    _fold(s_slot.reshape((n_slots, s.size)), n_chunks, s.reshape(s.size))


def _resp_stats_diag_py(X, w, weighted, resp, shift, chunk_size,
                        nk_slot, t_slot, s_slot, nk, t, s):
    """Diagonal (and spherical) statistics for given responsibilities."""
    n_samples, n_features = X.shape
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for c in prange(n_chunks):
        start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
        nk_slot[c] = 0.0
        t_slot[c] = 0.0
        s_slot[c] = 0.0
        xt = np.empty((n_features, m), dtype=X.dtype)
        _transpose_chunk(X, start, stop, xt)
        dt, rt, idx, rr = _accumulation_scratch(0, m)
        _accumulate_chunk_diag(xt, m, w, weighted, start, resp[start:stop], shift,
                               nk_slot[c], t_slot[c], s_slot[c], dt, rt, idx, rr)
    n_slots = nk_slot.shape[0]
    _fold(nk_slot.reshape((n_slots, nk.size)), n_chunks, nk.reshape(nk.size))
    _fold(t_slot.reshape((n_slots, t.size)), n_chunks, t.reshape(t.size))
    _fold(s_slot.reshape((n_slots, s.size)), n_chunks, s.reshape(s.size))


# ---------------------------------------------------------------------------
# Per-point outputs (predict, predict_proba, score_samples)
# ---------------------------------------------------------------------------


@jit()
def _write_point_outputs(logp, lse, m, start, want_resp, out_2d, out_score, out_label):
    """Write whichever per-point outputs were asked for (length > 0).

    ``out_2d`` receives responsibilities when ``want_resp`` else the weighted
    log densities (which ``logp`` must still hold).
    """
    n_components = logp.shape[1]
    if out_label.shape[0] > 0:
        for i in range(m):
            best = 0
            for k in range(1, n_components):
                if logp[i, k] > logp[i, best]:
                    best = k
            out_label[start + i] = best
    if out_2d.shape[0] > 0 and not want_resp:
        for i in range(m):
            for k in range(n_components):
                out_2d[start + i, k] = logp[i, k]
    if want_resp or out_score.shape[0] > 0:
        _normalize_rows(logp, m, lse)
        if out_score.shape[0] > 0:
            for i in range(m):
                out_score[start + i] = lse[i]
        if want_resp:
            for i in range(m):
                for k in range(n_components):
                    out_2d[start + i, k] = logp[i, k]


def _point_full_py(X, means, prec_chol, log_norm, lam_min, chunk_size, want_resp,
                   out_2d, out_score, out_label):
    """Per-point outputs for full covariances.

    Parameters
    ----------
    out_2d : ndarray (n, k) or (0, k)
        Responsibilities (``want_resp``) or weighted log densities.
    out_score : ndarray (n,) or (0,)
        Log density of each row.
    out_label : ndarray (n,) int64 or (0,)
        Most probable component.

    Notes
    -----
    Thread-safe: each chunk writes its own rows and scratch only.
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for c in prange(n_chunks):
        start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
        xt = np.empty((n_features, m), dtype=X.dtype)
        dx = np.empty((n_features, m), dtype=X.dtype)
        acc = np.empty(m, dtype=X.dtype)
        maha = np.empty(m, dtype=X.dtype)
        logp = np.empty((m, n_components))
        lse = np.empty(m)
        _transpose_chunk(X, start, stop, xt)
        idx = np.empty(m, dtype=np.int64)
        kbest = np.empty(m, dtype=np.int64)
        # Weighted log densities are wanted exactly for every component.
        prune = want_resp or out_2d.shape[0] == 0
        _log_prob_chunk_full(xt, m, means, prec_chol, log_norm, lam_min, prune, logp,
                             dx, acc, maha, idx, kbest, lse)
        _write_point_outputs(logp, lse, m, start, want_resp, out_2d, out_score, out_label)


def _point_tied_py(X, shift, mean_proj, prec_chol, log_norm, chunk_size, want_resp,
                   out_2d, out_score, out_label):
    """Per-point outputs for a tied covariance (see :func:`_point_full`)."""
    n_samples, n_features = X.shape
    n_components = mean_proj.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for c in prange(n_chunks):
        start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
        xt = np.empty((n_features, m), dtype=X.dtype)
        dx = np.empty((n_features, m), dtype=X.dtype)
        yt = np.empty((n_features, m), dtype=X.dtype)
        maha = np.empty(m, dtype=X.dtype)
        logp = np.empty((m, n_components))
        lse = np.empty(m)
        _transpose_chunk(X, start, stop, xt)
        _log_prob_chunk_tied(xt, m, shift, mean_proj, prec_chol, log_norm, logp, dx, yt, maha)
        _write_point_outputs(logp, lse, m, start, want_resp, out_2d, out_score, out_label)


def _point_diag_py(X, means, prec, log_norm, chunk_size, want_resp,
                   out_2d, out_score, out_label):
    """Per-point outputs for diagonal covariances (see :func:`_point_full`)."""
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for c in prange(n_chunks):
        start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
        xt = np.empty((n_features, m), dtype=X.dtype)
        maha = np.empty(m, dtype=X.dtype)
        logp = np.empty((m, n_components))
        lse = np.empty(m)
        _transpose_chunk(X, start, stop, xt)
        _log_prob_chunk_diag(xt, m, means, prec, log_norm, logp, maha)
        _write_point_outputs(logp, lse, m, start, want_resp, out_2d, out_score, out_label)


def _point_spherical_py(X, means, prec, log_norm, chunk_size, want_resp,
                        out_2d, out_score, out_label):
    """Per-point outputs for spherical covariances (see :func:`_point_full`)."""
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for c in prange(n_chunks):
        start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
        xt = np.empty((n_features, m), dtype=X.dtype)
        maha = np.empty(m, dtype=X.dtype)
        logp = np.empty((m, n_components))
        lse = np.empty(m)
        _transpose_chunk(X, start, stop, xt)
        _log_prob_chunk_spherical(xt, m, means, prec, log_norm, logp, maha)
        _write_point_outputs(logp, lse, m, start, want_resp, out_2d, out_score, out_label)


# ---------------------------------------------------------------------------
# k-means (initialisation)
# ---------------------------------------------------------------------------


def _update_min_dist_py(X, center, closest):
    """``closest[i] = min(closest[i], ||X[i] - center||^2)``.

    Notes
    -----
    Thread-safe: each row is written by one iteration only.
    """
    n_samples, n_features = X.shape
    for i in prange(n_samples):
        d2 = 0.0
        for e in range(n_features):
            z = X[i, e] - center[e]
            d2 += z * z
        if d2 < closest[i]:
            closest[i] = d2


def _candidate_potential_py(X, w, weighted, candidates, closest, chunk_size, slot, acc):
    """Potential ``sum_i w_i min(closest_i, ||x_i - cand||^2)`` per candidate.

    Parameters
    ----------
    candidates : ndarray (m, d), dtype of X
    closest : ndarray (n,) float64
    slot : ndarray (G, m) float64 scratch
    acc : ndarray (m,) float64, updated

    Notes
    -----
    Thread-safe: per-chunk slots, folded in chunk order.
    """
    n_samples, n_features = X.shape
    n_cand = candidates.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for c in prange(n_chunks):
        start = c * chunk_size
        stop = min(start + chunk_size, n_samples)
        slot[c] = 0.0
        for j in range(n_cand):
            cand = candidates[j]
            total = 0.0
            for i in range(start, stop):
                d2 = 0.0
                for e in range(n_features):
                    z = X[i, e] - cand[e]
                    d2 += z * z
                if closest[i] < d2:
                    d2 = closest[i]
                total += (w[i] if weighted else 1.0) * d2
            slot[c, j] = total
    _fold(slot, n_chunks, acc)


def _lloyd_step_py(X, w, weighted, centers, labels, chunk_size,
                   sum_slot, count_slot, inertia_slot, sums, counts, inertia):
    """One Lloyd iteration: assign rows to the nearest centre, accumulate.

    Parameters
    ----------
    centers : ndarray (k, d), dtype of X
    labels : ndarray (n,) int64, written
    sum_slot, count_slot, inertia_slot : float64 scratch ``(G, k, d)``,
        ``(G, k)``, ``(G, 1)``
    sums : ndarray (k, d) float64, updated with ``sum w (x - centre)``
        (shifted by the old centre, for accuracy far from the origin)
    counts : ndarray (k,) float64, updated with ``sum w``
    inertia : ndarray (1,) float64, updated with ``sum w ||x - centre||^2``

    Notes
    -----
    Thread-safe: per-chunk slots, folded in chunk order.
    """
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for c in prange(n_chunks):
        start = c * chunk_size
        stop = min(start + chunk_size, n_samples)
        sum_slot[c] = 0.0
        count_slot[c] = 0.0
        inertia_slot[c] = 0.0
        for i in range(start, stop):
            best = 0
            best_d2 = np.inf
            for k in range(n_clusters):
                d2 = 0.0
                for e in range(n_features):
                    z = X[i, e] - centers[k, e]
                    d2 += z * z
                if d2 < best_d2:
                    best_d2 = d2
                    best = k
            labels[i] = best
            wi = w[i] if weighted else 1.0
            count_slot[c, best] += wi
            inertia_slot[c, 0] += wi * best_d2
            for e in range(n_features):
                sum_slot[c, best, e] += wi * (X[i, e] - centers[best, e])
    n_slots = sum_slot.shape[0]
    _fold(sum_slot.reshape((n_slots, sums.size)), n_chunks, sums.reshape(sums.size))
    _fold(count_slot, n_chunks, counts)
    _fold(inertia_slot, n_chunks, inertia)


# ---------------------------------------------------------------------------
# Dispatchers: one parallel and one serial of each driver, built once here.
# ---------------------------------------------------------------------------

_DRIVERS = {
    "em_stats_full": _em_stats_full_py,
    "em_stats_tied": _em_stats_tied_py,
    "em_stats_diag": _em_stats_diag_py,
    "em_stats_spherical": _em_stats_spherical_py,
    "resp_stats_full": _resp_stats_full_py,
    "resp_stats_tied": _resp_stats_tied_py,
    "resp_stats_diag": _resp_stats_diag_py,
    "point_full": _point_full_py,
    "point_tied": _point_tied_py,
    "point_diag": _point_diag_py,
    "point_spherical": _point_spherical_py,
    "update_min_dist": _update_min_dist_py,
    "candidate_potential": _candidate_potential_py,
    "lloyd_step": _lloyd_step_py,
}



def _serial_twin(fn):
    """A copy of ``fn`` under another qualified name.

    Numba's cache index is keyed by the function's qualified name and
    bytecode, not by the ``parallel`` flag; without a distinct name the serial
    and parallel builds would overwrite each other's cache entries.
    """
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                              fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_serial"
    twin.__doc__ = fn.__doc__
    return twin


PARALLEL = {name: jit(parallel=True)(fn) for name, fn in _DRIVERS.items()}
SERIAL = {name: jit(parallel=False)(_serial_twin(fn)) for name, fn in _DRIVERS.items()}


def kernels(parallel: bool) -> dict:
    """The dispatcher table: parallel kernels, or their serial twins."""
    return PARALLEL if parallel else SERIAL
