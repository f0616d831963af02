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
* Rows are processed in fixed chunks of ``chunk_size`` rows, and chunks in
  groups of ``group`` consecutive chunks.  Every kernel is serial and
  releases the GIL; a driver processes the groups ``g_lo:g_hi`` it is given
  (its last two arguments), and :func:`fastgmm._parallel.run_groups` shares
  the groups between threads.  Group ``g`` handles its chunks in order and
  writes only slot ``g`` of each ``*_slot`` array, so there are no shared
  writes; the caller then folds the slots into the accumulators serially, in
  group order (:func:`_fold`).  The summation order therefore depends
  on ``chunk_size`` and ``group`` (chosen from the number of rows), never on
  the number of threads.
* A chunk's responsibilities are per-component lists of (row, value)
  entries holding only the entries that can carry mass (see
  :func:`_normalize_lists`).  Every list builder (``_lists_*``) returns
  them normalised, with each row's most probable component and log density.
* Inside loops, arrays are indexed, not sliced: every slice costs an atomic
  reference-count update, and threads slicing a shared array contend for it.
* ``weighted`` is False when every sample weight is one; ``w`` is then ignored
  (a length-0 array may be passed).
* Precision factors follow scikit-learn: ``prec_chol`` is upper triangular and
  the precision matrix is ``prec_chol @ prec_chol.T``, so the Mahalanobis
  distance is ``|| (x - mu) @ prec_chol ||^2``.
* ``log_norm[k] = log(weight_k) + log det(prec_chol_k) - d/2 log(2 pi)``, so the
  weighted log density is ``log_norm[k] - maha / 2``.
* There is no ``prange``: a parallel Numba function would compile again,
  inside its parallel region, every helper it calls (which doubled the cold
  compile of a fit), and one build serves serial and threaded calls alike.
"""

from __future__ import annotations

import numpy as np

from ._config import jit

#: Responsibilities below ``exp(RESP_LOG_FLOOR)`` times the row's largest are
#: stored as exact zeros (and skipped by the accumulation).
RESP_LOG_FLOOR = -50.0

#: Extra columns of every (d, chunk) scratch array.  With 256-row chunks a
#: row of such an array spans 2 KiB (float64); walking down a column would
#: then touch addresses 2 KiB apart, which share few L1 sets (the transpose
#: ran 25 % slower, and 2.3x slower with 512-row chunks).
ROW_PAD = 16


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
def _sq_dist_rows(xt, m, means, k, out):
    """``out[i] = ||xt[:, i] - means[k]||^2`` for ``i < m`` (a transposed chunk).

    Four features per pass: a quarter of the loads and stores of ``out``.
    """
    n_features = xt.shape[0]
    for i in range(m):
        out[i] = 0
    e = 0
    while e + 4 <= n_features:
        m0, m1, m2, m3 = means[k, e], means[k, e + 1], means[k, e + 2], means[k, e + 3]
        for i in range(m):
            z0 = xt[e, i] - m0
            z1 = xt[e + 1, i] - m1
            z2 = xt[e + 2, i] - m2
            z3 = xt[e + 3, i] - m3
            out[i] += (z0 * z0 + z1 * z1) + (z2 * z2 + z3 * z3)
        e += 4
    for f in range(e, n_features):
        me = means[k, f]
        for i in range(m):
            z = xt[f, i] - me
            out[i] += z * z


@jit()
def _maha_triangle(dt, cnt, prec_chol, k, acc, maha):
    """``maha[j] = || U^T dt[:, j] ||^2`` for ``j < cnt``, ``U = prec_chol[k]``.

    ``y_f = sum_{e <= f} U[e, f] dt[e, j]`` is formed for all columns at once,
    two output features and four input features per pass (``acc`` is (2, >=
    cnt) scratch): each pass does eight multiply-adds per column for two
    stores, and there are a quarter as many loops over columns, which
    matters on the short runs of columns of one component.  ``d (d + 1) /
    2`` multiply-adds per column, in loops over columns that vectorise.
    """
    n_features = dt.shape[0]
    for j in range(cnt):
        maha[j] = 0
    f = 0
    while f + 1 < n_features:
        # Outputs f and g = f + 1 share the terms e < g; g adds e = g.
        g = f + 1
        e = 0
        if g >= 4:
            a0, a1, a2, a3 = prec_chol[k, 0, f], prec_chol[k, 1, f], prec_chol[k, 2, f], \
                prec_chol[k, 3, f]
            b0, b1, b2, b3 = prec_chol[k, 0, g], prec_chol[k, 1, g], prec_chol[k, 2, g], \
                prec_chol[k, 3, g]
            for j in range(cnt):
                x0, x1, x2, x3 = dt[0, j], dt[1, j], dt[2, j], dt[3, j]
                acc[0, j] = (a0 * x0 + a1 * x1) + (a2 * x2 + a3 * x3)
                acc[1, j] = (b0 * x0 + b1 * x1) + (b2 * x2 + b3 * x3)
            e = 4
            while e + 4 <= g:
                a0, a1, a2, a3 = prec_chol[k, e, f], prec_chol[k, e + 1, f], \
                    prec_chol[k, e + 2, f], prec_chol[k, e + 3, f]
                b0, b1, b2, b3 = prec_chol[k, e, g], prec_chol[k, e + 1, g], \
                    prec_chol[k, e + 2, g], prec_chol[k, e + 3, g]
                for j in range(cnt):
                    x0, x1, x2, x3 = dt[e, j], dt[e + 1, j], dt[e + 2, j], dt[e + 3, j]
                    acc[0, j] += (a0 * x0 + a1 * x1) + (a2 * x2 + a3 * x3)
                    acc[1, j] += (b0 * x0 + b1 * x1) + (b2 * x2 + b3 * x3)
                e += 4
        else:
            for j in range(cnt):
                acc[0, j] = 0
                acc[1, j] = 0
        # g is odd, so 1 or 3 shared terms remain; then g's diagonal term
        # and the squares.
        bg = prec_chol[k, g, g]
        if g - e == 1:
            a0, b0 = prec_chol[k, e, f], prec_chol[k, e, g]
            for j in range(cnt):
                x0 = dt[e, j]
                ya = acc[0, j] + a0 * x0
                yb = acc[1, j] + b0 * x0 + bg * dt[g, j]
                maha[j] += ya * ya + yb * yb
        else:
            a0, a1, a2 = prec_chol[k, e, f], prec_chol[k, e + 1, f], prec_chol[k, e + 2, f]
            b0, b1, b2 = prec_chol[k, e, g], prec_chol[k, e + 1, g], prec_chol[k, e + 2, g]
            for j in range(cnt):
                x0, x1, x2 = dt[e, j], dt[e + 1, j], dt[e + 2, j]
                ya = acc[0, j] + (a0 * x0 + a1 * x1 + a2 * x2)
                yb = acc[1, j] + (b0 * x0 + b1 * x1 + b2 * x2) + bg * dt[g, j]
                maha[j] += ya * ya + yb * yb
        f += 2
    if f < n_features:
        # Odd d: the last output alone.
        ua = prec_chol[k, 0, f]
        for j in range(cnt):
            acc[0, j] = ua * dt[0, j]
        for e in range(1, f + 1):
            ua = prec_chol[k, e, f]
            for j in range(cnt):
                acc[0, j] += ua * dt[e, j]
        for j in range(cnt):
            ya = acc[0, j]
            maha[j] += ya * ya


@jit()
def _exact_full(X, start, sel, first, cnt, gathered, means, prec_chol, k, ln, out, dt, acc,
                maha, dist):
    """``out[first + j] = ln - maha_k / 2`` for ``cnt`` rows of a chunk of ``X``.

    The rows are ``start + sel[first:first + cnt]`` when ``gathered``, else
    ``start .. start + cnt - 1``; they are read straight from ``X`` (each
    a contiguous row) into the columns of ``dt``, the mean subtracted first
    (no cancellation on data far from the origin).  Unless ``dist`` is
    empty, ``dist[first + j]`` receives the squared Euclidean distance to
    the mean.
    """
    if cnt == 0:
        return
    n_features = X.shape[1]
    want_dist = dist.shape[0] > 0
    for j in range(cnt):
        i = start + (sel[first + j] if gathered else j)
        d2 = 0.0
        for e in range(n_features):
            z = X[i, e] - means[k, e]
            dt[e, j] = z
            d2 += z * z
        if want_dist:
            dist[first + j] = d2
    # Columns padded with zeros to a multiple of 16: the triangle's loops
    # then run whole vector iterations only (no scalar remainder loops,
    # which would dominate on the short runs of a gathered component).
    cntp = min((cnt + 15) & ~15, maha.shape[0])
    for e in range(n_features):
        for j in range(cnt, cntp):
            dt[e, j] = 0
    _maha_triangle(dt, cntp, prec_chol, k, acc, maha)
    for j in range(cnt):
        out[first + j] = ln - 0.5 * maha[j]


@jit()
def _bucket_rows(kbest, m, n_components, koff, pos, order):
    """Counting sort (stable): rows of component ``k`` are ``order[koff[k]:koff[k + 1]]``."""
    for k in range(n_components + 1):
        koff[k] = 0
    for i in range(m):
        koff[kbest[i] + 1] += 1
    for k in range(n_components):
        koff[k + 1] += koff[k]
    for k in range(n_components):
        pos[k] = koff[k]
    for i in range(m):
        kb = kbest[i]
        order[pos[kb]] = i
        pos[kb] += 1


@jit()
def _list_bucket(k, koff, order, ex, rows, vals, p):
    """Append bucket ``k`` (its rows and their exact log densities) to the lists at ``p``."""
    for j in range(koff[k], koff[k + 1]):
        rows[p] = order[j]
        vals[p] = ex[j]
        p += 1
    return p


@jit()
def _lists_full_hinted(X, start, m, means, prec_chol, log_norm, pair_w, pair_c, kbest, ptr,
                       rows, vals, thr, order, koff, ex, dist, dt, acc, maha, pair_k, pair_i,
                       pcnt):
    """:func:`_lists_full` when each row's likely best component is known.

    ``kbest`` holds a guess per row (last iteration's most probable
    component); on return it holds the most probable component, ``ex`` the
    log density of each row, and the lists are normalised (as from
    :func:`_lists_full`).  Any guess gives the same lists: its exact density only sets
    the threshold, and every other component must pass the pair bounds
    against it (first with ``w . (x - mu_b) >= -|w| |x - mu_b|``, a few
    scalar operations per pair, then the bound itself) before its exact
    density is computed.  No bound is evaluated for every (row, component)
    pair, which the unhinted path needs to find the guess, and no transposed
    chunk is needed: rows are read from ``X`` (rows ``start .. start + m -
    1``).  ``dist`` (>= m,) float64, ``pair_k``, ``pair_i`` (>= m (k - 1) +
    1,) int64 and ``pcnt`` (k + 1,) int64 are scratch (allocated by the
    caller once per group: freshly allocated blocks this large would be
    mapped and unmapped by the system allocator every chunk, and threads
    would queue on that).
    """
    n_features = X.shape[1]
    n_components = means.shape[0]
    no_dist = dist[:0]
    # Rows are read below in bucket order, which hardware prefetchers cannot
    # follow: first walk the chunk in order, one load per 64-byte line.
    step = max(1, 64 // X.itemsize)
    touch = 0.0
    for i in range(start, start + m):
        for e in range(0, n_features, step):
            touch += X[i, e]
    dist[0] = touch  # a use of the loads, so that they are not optimised away
    _bucket_rows(kbest, m, n_components, koff, ptr, order)
    # Per row (in bucket order): exact density of the guess, distance to its
    # mean (into ``thr``), then threshold (``thr``) and that distance (``dist``).
    for k in range(n_components):
        a = koff[k]
        _exact_full(X, start, order, a, koff[k + 1] - a, True, means, prec_chol, k,
                    log_norm[k], ex, dt, acc, maha, thr)
    for j in range(m):
        v = ex[j]
        dist[j] = np.sqrt(thr[j])
        thr[j] = v + (RESP_LOG_FLOOR - 1.0) if v > -np.inf else np.nan
    for k in range(n_components + 1):
        pcnt[k] = 0
    n_pairs = 0
    for b in range(n_components):
        for j in range(koff[b], koff[b + 1]):
            lim = thr[j]
            dj = dist[j]
            # The most optimistic of the row's k - 1 first bounds (a loop
            # over components that vectorises); most rows stop here.
            best = -np.inf
            for k in range(n_components):
                z = max(pair_c[0, b, k] - pair_c[1, b, k] * dj, 0.0)
                v = log_norm[k] - 0.4995 * z * z
                best = max(best, v if k != b else -np.inf)
            if best <= lim:
                continue
            i = order[j]
            for k in range(n_components):
                if k == b:
                    continue
                c = pair_c[0, b, k]
                ln = log_norm[k]
                z = max(c - pair_c[1, b, k] * dj, 0.0)
                if ln - 0.4995 * z * z <= lim:
                    continue
                z = c
                for e in range(n_features):
                    z += pair_w[b, k, e] * (X[start + i, e] - means[b, e])
                z = max(z, 0.0)
                if ln - 0.4995 * z * z <= lim:
                    continue
                pair_k[n_pairs] = k
                pair_i[n_pairs] = i
                pcnt[k] += 1
                n_pairs += 1
    # Lists: each component's bucket, then its pairs.
    p = 0
    for k in range(n_components):
        ptr[k] = p
        p = _list_bucket(k, koff, order, ex, rows, vals, p)
        c = pcnt[k]
        pcnt[k] = p
        p += c
    ptr[n_components] = p
    for j in range(n_pairs):
        k = pair_k[j]
        rows[pcnt[k]] = pair_i[j]
        pcnt[k] += 1
    for k in range(n_components):
        c0 = ptr[k] + koff[k + 1] - koff[k]
        _exact_full(X, start, rows, c0, ptr[k + 1] - c0, True, means, prec_chol, k,
                    log_norm[k], vals, dt, acc, maha, no_dist)
    _normalize_lists(ptr, rows, vals, m, thr, kbest, dist, ex)


@jit()
def _lists_full(X, start, xt, m, means, prec_chol, log_norm, lam_min, pair_w, pair_c,
                lp, ptr, rows, vals, thr, kbest, order, cand, koff, ex, rowsum, dt, acc, maha):
    """Per-component lists of the log densities that matter, full covariances.

    Parameters
    ----------
    X : ndarray (n, d); start : int
        The chunk is rows ``start .. start + m - 1`` of ``X`` (exact
        densities read them from there).
    xt : ndarray (d, >= m), dtype of X
        The chunk, transposed (for the bounds).
    m : int
        Rows in the chunk.
    means : ndarray (k, d), dtype of X
    prec_chol : ndarray (k, d, d), dtype of X, upper triangular
    log_norm : ndarray (k,) float64
    lam_min : ndarray (k,) float64
        A lower bound of the smallest eigenvalue of each precision matrix.
    pair_w : ndarray (k, k, d), dtype of X, or (0, 0, d)
    pair_c : ndarray (2, k, k) float64, or (2, 0, 0)
        ``sqrt(maha_j(x)) >= pair_w[b, j] . (x - mu_b) + pair_c[0, b, j]``
        (see Notes) and ``pair_c[1, b, j] >= |pair_w[b, j]|``; empty arrays
        switch these bounds off.
    lp : ndarray (k, >= m) float64, scratch (component-major)
    ptr, rows, vals : the lists, written, normalised (see
        :func:`_normalize_lists`)
    thr : ndarray (>= m,) float64, scratch
    kbest : ndarray (>= m + 1,) int64, scratch; on return each row's most
        probable component
    order, cand : ndarray (>= m + 1,) int64, scratch
    koff : ndarray (k + 1,) int64, scratch
    ex : ndarray (>= m,) float64, scratch; on return each row's log density
    rowsum : ndarray (>= m,) float64, scratch
    dt : ndarray (d, >= m), dtype of X, scratch
    acc : ndarray (2, >= m), dtype of X, scratch
    maha : ndarray (>= m,), dtype of X, scratch

    Notes
    -----
    Pruning: ``maha >= lam_min ||x - mu||^2``, so ``ub = log_norm -
    lam_min ||x - mu||^2 / 2`` bounds the log density from above at the cost
    of ``d`` operations instead of ``d (d + 1)``.  Each row first gets the
    exact density of its most promising component (rows bucketed by that
    component, so each triangular product runs over contiguous columns); a
    component whose bound lies more than ``-RESP_LOG_FLOOR + 1`` below that
    exact value would get an exactly zero responsibility from
    :func:`_normalize_lists` anyway, so it is left out of the lists.  The
    few pairs that pass are checked once more against a bound along the
    line between the row's best mean ``mu_b`` and ``mu_j``: for any ``v``,
    ``(v . z)^2 <= (v^T Sigma_j v) maha_j`` (Cauchy-Schwarz), and with ``v``
    the unit vector from ``mu_j`` to ``mu_b``, ``v . (x - mu_j) = v . (x -
    mu_b) + ||mu_b - mu_j||``; on separated clusters this removes nearly
    every remaining pair (the eigenvalue bound is loose along the directions
    where ``Sigma_j`` is narrow).  The
    responsibilities, log-likelihoods and labels are those of the dense
    computation; on separated clusters a row costs one or two triangular
    products instead of ``k``.  A row whose best exact density is ``-inf``
    keeps every component (it gets uniform responsibilities).
    """
    n_features = xt.shape[0]
    n_components = means.shape[0]
    use_pairs = pair_w.shape[0] > 0
    no_dist = ex[:0]
    # Upper bounds of every density.
    for k in range(n_components):
        _sq_dist_rows(xt, m, means, k, maha)
        half = 0.5 * lam_min[k]
        ln = log_norm[k]
        for i in range(m):
            lp[k, i] = ln - half * maha[i]
    # The most promising component of each row (first of ties) and the
    # second-best bound (rows whose second-best cannot matter skip the
    # component scan below).
    for i in range(m):
        thr[i] = lp[0, i]
        kbest[i] = 0
        ex[i] = -np.inf
    for k in range(1, n_components):
        for i in range(m):
            v = lp[k, i]
            b = thr[i]
            up = v > b
            ex[i] = b if up else max(ex[i], v)
            thr[i] = v if up else b
            kbest[i] = k if up else kbest[i]
    # Rows bucketed by that component.
    _bucket_rows(kbest, m, n_components, koff, ptr, order)
    # Threshold per row: the exact density of its most promising component
    # minus the floor; NaN keeps every component of a row whose best is -inf.
    # (The second-best bound moves from ``ex`` to ``thr`` meanwhile.)
    for i in range(m):
        thr[i] = ex[i]
    for k in range(n_components):
        a = koff[k]
        _exact_full(X, start, order, a, koff[k + 1] - a, True, means, prec_chol, k,
                    log_norm[k], ex, dt, acc, maha, no_dist)
    n_cand = 0
    for j in range(m):
        i = order[j]
        v = ex[j]
        lim = v + (RESP_LOG_FLOOR - 1.0) if v > -np.inf else np.nan
        second = thr[i]
        thr[i] = lim
        # Rows where some other component's bound clears the threshold.
        cand[n_cand] = i
        n_cand += 0 if second <= lim else 1
    # Lists: each component's bucket, then the rows its bounds let in.
    p = 0
    for k in range(n_components):
        ptr[k] = p
        p = _list_bucket(k, koff, order, ex, rows, vals, p)
        c0 = p
        ln = log_norm[k]
        for j in range(n_cand):
            i = cand[j]
            kb = kbest[i]
            lim = thr[i]
            if kb == k or lp[k, i] <= lim:
                continue
            if use_pairs:
                # The bound along the line between the two means.
                z = pair_c[0, kb, k]
                for e in range(n_features):
                    z += pair_w[kb, k, e] * (xt[e, i] - means[kb, e])
                z = max(z, 0.0)
                if ln - 0.4995 * z * z <= lim:
                    continue
            rows[p] = i
            p += 1
        _exact_full(X, start, rows, c0, p - c0, True, means, prec_chol, k, ln, vals, dt, acc, maha,
                    no_dist)
    ptr[n_components] = p
    _normalize_lists(ptr, rows, vals, m, thr, kbest, rowsum, ex)


@jit()
def _log_prob_tied(xt, m, shift, mean_proj, prec_chol, log_norm, lp, dt, yt, maha):
    """Weighted log densities ``lp[k, i]`` of a transposed chunk, tied covariance.

    Parameters
    ----------
    shift : ndarray (d,), dtype of X
        A point near the data (the weighted mean of the means).
    mean_proj : ndarray (k, d), dtype of X
        ``(means - shift) @ prec_chol``.
    prec_chol : ndarray (d, d), dtype of X, upper triangular
    lp : ndarray (k, >= m) float64, written
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
        _sq_dist_rows(yt, m, mean_proj, k, maha)
        ln = log_norm[k]
        for i in range(m):
            lp[k, i] = ln - 0.5 * maha[i]


@jit()
def _log_prob_diag(xt, m, means, prec, log_norm, spherical, lp, maha):
    """Weighted log densities ``lp[k, i]``, diagonal or spherical covariances.

    ``prec`` is (k, d) in the dtype of X: ``1 / sqrt(variance)`` per
    feature, or (k, 1) when ``spherical`` (one variance per component).
    """
    n_features = xt.shape[0]
    n_components = means.shape[0]
    for k in range(n_components):
        ln = log_norm[k]
        if spherical:
            _sq_dist_rows(xt, m, means, k, maha)
            pk = float(prec[k, 0])
            p2 = 0.5 * pk * pk
            for i in range(m):
                lp[k, i] = ln - p2 * maha[i]
            continue
        for i in range(m):
            maha[i] = 0
        e = 0
        while e + 4 <= n_features:
            m0, m1, m2, m3 = means[k, e], means[k, e + 1], means[k, e + 2], means[k, e + 3]
            p0, p1, p2, p3 = prec[k, e], prec[k, e + 1], prec[k, e + 2], prec[k, e + 3]
            for i in range(m):
                z0 = (xt[e, i] - m0) * p0
                z1 = (xt[e + 1, i] - m1) * p1
                z2 = (xt[e + 2, i] - m2) * p2
                z3 = (xt[e + 3, i] - m3) * p3
                maha[i] += (z0 * z0 + z1 * z1) + (z2 * z2 + z3 * z3)
            e += 4
        for f in range(e, n_features):
            me = means[k, f]
            pe = prec[k, f]
            for i in range(m):
                z = (xt[f, i] - me) * pe
                maha[i] += z * z
        for i in range(m):
            lp[k, i] = ln - 0.5 * maha[i]


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


# ---------------------------------------------------------------------------
# Responsibility lists
#
# A chunk's responsibilities are kept as one list per component: the rows
# ``rows[ptr[k]:ptr[k + 1]]`` of component ``k`` and their values ``vals``.
# Only entries that can carry mass are listed (on clustered data one or two
# per row instead of ``k``), so normalisation and accumulation cost what the
# data needs, and each component's rows are gathered once, contiguously.
# ``rows`` and ``vals`` hold ``k * m + 1`` entries (the extra one lets the
# branch-free compaction loops write one past the end).
# ---------------------------------------------------------------------------


@jit()
def _lists_dense(lp, m, ptr, rows, vals, rowmax, kmax, cnt, lse):
    """Responsibility lists from weighted log densities ``lp`` (k, >= m).

    The lists hold the entries within ``RESP_LOG_FLOOR`` of their row's
    largest, normalised (see :func:`_normalize_lists`, whose results these
    are); ``kmax`` and ``lse`` receive each row's most probable component and
    log density.  ``rowmax`` and ``cnt`` (>= m,) float64 are scratch.

    Notes
    -----
    Maxima and per-row counts come from loops over rows that vectorise; a
    row with one entry (most rows of clustered data) is then placed with no
    exponential, and only rows with several entries pay for them.  Rows are
    placed in increasing order, ``ptr`` serving as the insertion points.  A
    row whose every density is ``-inf`` keeps every entry (uniform
    responsibilities, ``lse = -inf``).
    """
    n_components = lp.shape[0]
    for i in range(m):
        rowmax[i] = -np.inf
        kmax[i] = 0
        cnt[i] = 0.0
    for k in range(n_components):
        for i in range(m):
            v = lp[k, i]
            up = v > rowmax[i]
            rowmax[i] = v if up else rowmax[i]
            kmax[i] = k if up else kmax[i]
    # lse holds each row's threshold until the row is placed; NaN keeps all.
    for i in range(m):
        mx = rowmax[i]
        lse[i] = mx + RESP_LOG_FLOOR if mx > -np.inf else np.nan
    p = 0
    for k in range(n_components):
        c = 0
        for i in range(m):
            keep = 0 if lp[k, i] <= lse[i] else 1
            cnt[i] += keep
            c += keep
        ptr[k] = p
        p += c
    ptr[n_components] = p
    for i in range(m):
        mx = rowmax[i]
        if cnt[i] == 1.0:
            k = kmax[i]
            q = ptr[k]
            rows[q] = i
            vals[q] = 1.0
            ptr[k] = q + 1
            lse[i] = mx
            continue
        thr = lse[i]
        total = 0.0
        for k in range(n_components):
            v = lp[k, i]
            if v <= thr:
                continue
            e = _exp_nonpositive(max(v - mx, RESP_LOG_FLOOR)) if mx > -np.inf else 1.0
            q = ptr[k]
            rows[q] = i
            vals[q] = e
            ptr[k] = q + 1
            total += e
        lse[i] = mx + np.log(total)
        if total != 1.0:
            inv = 1.0 / total
            for k in range(n_components):
                if not lp[k, i] <= thr:
                    vals[ptr[k] - 1] *= inv
    # ptr[k] now ends list k: shift back to starts.
    for k in range(n_components - 1, 0, -1):
        ptr[k] = ptr[k - 1]
    ptr[0] = 0


@jit()
def _dense_lists_diag(X, start, stop, xt, means, prec, log_norm, spherical, lp, maha,
                      ptr, rows, vals, rowmax, kmax, cnt, lse):
    """Rows ``start:stop``: transpose, every diagonal/spherical density, normalised lists."""
    m = stop - start
    _transpose_chunk(X, start, stop, xt)
    _log_prob_diag(xt, m, means, prec, log_norm, spherical, lp, maha)
    _lists_dense(lp, m, ptr, rows, vals, rowmax, kmax, cnt, lse)


@jit()
def _dense_lists_tied(X, start, stop, xt, shift, mean_proj, prec_chol, log_norm, lp, dx, yt,
                      maha, ptr, rows, vals, rowmax, kmax, cnt, lse):
    """Rows ``start:stop``: transpose, every tied density, normalised lists."""
    m = stop - start
    _transpose_chunk(X, start, stop, xt)
    _log_prob_tied(xt, m, shift, mean_proj, prec_chol, log_norm, lp, dx, yt, maha)
    _lists_dense(lp, m, ptr, rows, vals, rowmax, kmax, cnt, lse)


@jit()
def _lists_from_labels(labels, start, m, ptr, rows, vals):
    """Lists of hard assignments: row ``i`` in component ``labels[start + i]``, value 1.

    The same lists as :func:`_lists_from_resp` on the one-hot matrix (rows
    ascending within each component), without forming it.
    """
    n_components = ptr.shape[0] - 1
    for k in range(n_components + 1):
        ptr[k] = 0
    for i in range(m):
        ptr[labels[start + i] + 1] += 1
    for k in range(n_components):
        ptr[k + 1] += ptr[k]
    # Fill each bucket from its end, rows descending, so that they ascend;
    # ptr[k + 1] then holds the start of bucket k.
    for i in range(m - 1, -1, -1):
        k1 = labels[start + i] + 1
        ptr[k1] -= 1
        rows[ptr[k1]] = i
        vals[ptr[k1]] = 1.0
    for k in range(n_components):
        ptr[k] = ptr[k + 1]
    ptr[n_components] = m


@jit()
def _resp_lists(resp, labels, start, stop, ptr, rows, vals):
    """Lists of a chunk's given responsibilities: hard ``labels`` unless empty, else ``resp``."""
    if labels.shape[0] > 0:
        _lists_from_labels(labels, start, stop - start, ptr, rows, vals)
    else:
        _lists_from_resp(resp[start:stop], stop - start, ptr, rows, vals)


@jit()
def _lists_from_resp(resp, m, ptr, rows, vals):
    """Lists of the non-zero entries of given responsibilities ``resp`` (>= m, k)."""
    n_components = resp.shape[1]
    p = 0
    for k in range(n_components):
        ptr[k] = p
        for i in range(m):
            r = resp[i, k]
            rows[p] = i
            vals[p] = r
            p += 1 if r != 0.0 else 0
    ptr[n_components] = p


@jit()
def _normalize_lists(ptr, rows, vals, m, rowmax, kmax, rowsum, lse):
    """Turn listed log densities into responsibilities, in place.

    Parameters
    ----------
    ptr, rows, vals : the lists; ``vals`` holds weighted log densities on
        entry and responsibilities on return; entries whose responsibility is
        below ``exp(RESP_LOG_FLOOR)`` of the row's largest are dropped.
    m : int
    rowmax : ndarray (>= m,) float64, scratch
    kmax : ndarray (>= m,) int64, written: the most probable component
    rowsum : ndarray (>= m,) float64, scratch
    lse : ndarray (>= m,) float64, written: ``log sum_k exp(log density)``

    Notes
    -----
    Log-sum-exp with the row maximum.  A row whose every density underflows
    to zero (maximum ``-inf``) gets ``lse = -inf`` and uniform
    responsibilities, so no NaN is produced; the caller reports the ``-inf``.
    """
    n_components = ptr.shape[0] - 1
    for i in range(m):
        rowmax[i] = -np.inf
        kmax[i] = 0
        rowsum[i] = 0.0
    for k in range(n_components):
        for j in range(ptr[k], ptr[k + 1]):
            i = rows[j]
            if vals[j] > rowmax[i]:
                rowmax[i] = vals[j]
                kmax[i] = k
    for j in range(ptr[n_components]):
        mx = rowmax[rows[j]]
        v = vals[j] - mx if mx > -np.inf else 0.0
        # exp(-50) ~ 2e-22: below one part in 1e21 of the row's mass, such a
        # responsibility cannot move any statistic by a representable amount.
        e = _exp_nonpositive(max(v, RESP_LOG_FLOOR))
        vals[j] = e if v > RESP_LOG_FLOOR else 0.0
    q = 0
    for k in range(n_components):
        a = ptr[k]
        b = ptr[k + 1]
        ptr[k] = q
        for j in range(a, b):
            v = vals[j]
            i = rows[j]
            rows[q] = i
            vals[q] = v
            rowsum[i] += v
            q += 1 if v > 0.0 else 0
    ptr[n_components] = q
    # Most rows of clustered data have a single entry (sum exactly 1): no
    # logarithm or division for them.
    n_multi = 0
    for i in range(m):
        rs = rowsum[i]
        if rs == 1.0:
            lse[i] = rowmax[i]
        else:
            lse[i] = rowmax[i] + np.log(rs)
            rowsum[i] = 1.0 / rs
            n_multi += 1
    if n_multi > 0:
        for j in range(q):
            vals[j] *= rowsum[rows[j]]


@jit()
def _full_scratch(X, n_components, m):
    """Scratch of :func:`_lists_full`: xt, dt, acc, maha, order, cand, koff."""
    n_features = X.shape[1]
    return (np.empty((n_features, m + ROW_PAD), dtype=X.dtype),
            np.empty((n_features, m + ROW_PAD), dtype=X.dtype),
            np.empty((2, m), dtype=X.dtype), np.empty(m, dtype=X.dtype),
            np.empty(m, dtype=np.int64), np.empty(m + 1, dtype=np.int64),
            np.empty(n_components + 1, dtype=np.int64))


@jit()
def _dense_scratch(X, m, tied):
    """Scratch of the dense helpers: xt, dx, yt, maha (``dx``, ``yt`` empty unless tied)."""
    n_features = X.shape[1]
    cols = m + ROW_PAD if tied else 0
    return (np.empty((n_features, m + ROW_PAD), dtype=X.dtype),
            np.empty((n_features, cols), dtype=X.dtype),
            np.empty((n_features, cols), dtype=X.dtype), np.empty(m, dtype=X.dtype))


@jit()
def _list_scratch(n_components, m):
    """Scratch of the list helpers: lp, ptr, rows, vals, rowmax, kmax, rowsum, lse."""
    return (np.empty((n_components, m)), np.empty(n_components + 1, dtype=np.int64),
            np.empty(n_components * m + 1, dtype=np.int64), np.empty(n_components * m + 1),
            np.empty(m), np.empty(m, dtype=np.int64), np.empty(m), np.empty(m))


@jit()
def _accumulate_scratch(X, m):
    """Scratch of :func:`_accumulate_full`: dr, rr, sl."""
    n_features = X.shape[1]
    return (np.empty((m, n_features), dtype=X.dtype), np.empty(m, dtype=X.dtype),
            np.empty((n_features + 1, n_features), dtype=X.dtype))


@jit()
def _accumulate_full(X, start, w, weighted, ptr, rows, vals, shift, nk, t, s, dr, rr, sl):
    """Add listed responsibilities of a chunk to full-covariance statistics.

    Parameters
    ----------
    X : ndarray (n, d), dtype of X; the chunk starts at row ``start``
    w : ndarray (n,) float64 (indexed from ``start``)
    ptr, rows, vals : the chunk's responsibility lists
    shift : ndarray (k, d), dtype of X
    nk : ndarray (k,) float64, updated
    t : ndarray (k, d) float64, updated: ``sum r w (x - shift_k)``
    s : ndarray (k, d, d) float64, updated (whole matrix; callers read the
        upper triangle): ``sum r w (x - shift_k)(x - shift_k)^T``
    dr : ndarray (>= m, d), dtype of X, scratch
    rr : ndarray (>= m,), dtype of X, scratch
    sl : ndarray (d + 1, d), dtype of X, scratch

    Notes
    -----
    Each component's rows are gathered (contiguous rows of ``X``), then
    added as rank-one updates four rows at a time: full rows of ``sl``
    vectorise, and each load and store serves four rows.  (Rows cut to the
    upper triangle, even in whole groups of four, were 10-25 % slower: the
    shorter rows fall out of LLVM's vector loop into its remainder loops.)
    One chunk's sums for a component (at most a chunk of rows) are formed in
    the dtype of ``X`` in ``sl`` -- twice the lanes per vector for float32
    input, 1.15-1.3x faster there -- and added to the float64 statistics
    once per chunk, so that across chunks everything is summed in float64.
    Arrays are indexed, never sliced, inside the loops: a slice costs an
    atomic reference count, which threads sharing ``X`` would contend for.
    """
    n_features = X.shape[1]
    n_components = shift.shape[0]
    for k in range(n_components):
        a = ptr[k]
        cnt = ptr[k + 1] - a
        if cnt == 0:
            continue
        total = 0.0
        for j in range(cnt):
            i = rows[a + j]
            r = vals[a + j]
            if weighted:
                r *= w[start + i]
            rr[j] = r
            total += r
            for e in range(n_features):
                dr[j, e] = X[start + i, e] - shift[k, e]
        nk[k] += total
        for e in range(n_features + 1):
            for f in range(n_features):
                sl[e, f] = 0
        j = 0
        while j + 4 <= cnt:
            r1, r2, r3, r4 = rr[j], rr[j + 1], rr[j + 2], rr[j + 3]
            for e in range(n_features):
                a1 = r1 * dr[j, e]
                a2 = r2 * dr[j + 1, e]
                a3 = r3 * dr[j + 2, e]
                a4 = r4 * dr[j + 3, e]
                sl[n_features, e] += (a1 + a2) + (a3 + a4)
                for f in range(n_features):
                    sl[e, f] += ((a1 * dr[j, f] + a2 * dr[j + 1, f])
                                 + (a3 * dr[j + 2, f] + a4 * dr[j + 3, f]))
            j += 4
        if j + 2 <= cnt:
            r1, r2 = rr[j], rr[j + 1]
            for e in range(n_features):
                a1 = r1 * dr[j, e]
                a2 = r2 * dr[j + 1, e]
                sl[n_features, e] += a1 + a2
                for f in range(n_features):
                    sl[e, f] += a1 * dr[j, f] + a2 * dr[j + 1, f]
            j += 2
        if j < cnt:
            r1 = rr[j]
            for e in range(n_features):
                a1 = r1 * dr[j, e]
                sl[n_features, e] += a1
                for f in range(n_features):
                    sl[e, f] += a1 * dr[j, f]
        for e in range(n_features):
            t[k, e] += sl[n_features, e]
            for f in range(n_features):
                s[k, e, f] += sl[e, f]


@jit()
def _accumulate_tied(X, start, xt, m, w, weighted, ptr, rows, vals, shift, nk, t, s, dt, rt):
    """Add a chunk to tied-covariance statistics.

    Parameters
    ----------
    xt : ndarray (d, >= m), dtype of X: the transposed chunk
    shift : ndarray (d,), dtype of X, common to all components
    t : ndarray (k, d) float64: ``sum r w (x - shift)``
    s : ndarray (d, d) float64 (upper triangle): ``sum w (x - shift)(x - shift)^T``
    dt, rt : ndarray (d, >= m) float64, scratch

    Notes
    -----
    With one shift for all components, ``sum_k r_ik = 1`` removes the
    responsibilities from the scatter: ``d^2 / 2`` per row, not ``k d^2 / 2``.
    """
    n_features = X.shape[1]
    n_components = t.shape[0]
    for e in range(n_features):
        ce = shift[e]
        for i in range(m):
            v = xt[e, i] - ce
            dt[e, i] = v
            rt[e, i] = w[start + i] * v if weighted else v
    for e in range(n_features):
        for f in range(e, n_features):
            acc = 0.0
            for i in range(m):
                acc += rt[e, i] * dt[f, i]
            s[e, f] += acc
    for k in range(n_components):
        total = 0.0
        for j in range(ptr[k], ptr[k + 1]):
            i = rows[j]
            r = vals[j] * w[start + i] if weighted else vals[j]
            total += r
            for e in range(n_features):
                t[k, e] += r * (X[start + i, e] - shift[e])
        nk[k] += total


@jit()
def _accumulate_diag(X, start, w, weighted, ptr, rows, vals, shift, nk, t, s):
    """Add listed responsibilities of a chunk to diagonal statistics.

    Parameters
    ----------
    shift : ndarray (k, d), dtype of X
    t : ndarray (k, d) float64
    s : ndarray (k, d) float64: ``sum r w (x - shift_k)^2`` per feature

    Notes
    -----
    Spherical models use the same statistics; the M-step averages features.
    """
    n_features = X.shape[1]
    n_components = shift.shape[0]
    for k in range(n_components):
        total = 0.0
        for j in range(ptr[k], ptr[k + 1]):
            i = rows[j]
            r = vals[j] * w[start + i] if weighted else vals[j]
            total += r
            for e in range(n_features):
                v = X[start + i, e] - shift[k, e]
                rv = r * v
                t[k, e] += rv
                s[k, e] += rv * v
        nk[k] += total


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


# ---------------------------------------------------------------------------
# Fused E-step + sufficient statistics (one pass over the data)
# ---------------------------------------------------------------------------


@jit()
def _chunk_bounds(c, chunk_size, n_samples):
    start = c * chunk_size
    stop = min(start + chunk_size, n_samples)
    return start, stop, stop - start


@jit()
def _clear_slots(c, nk_slot, t_slot, s_slot, ll_slot):
    nk_slot[c] = 0.0
    t_slot[c] = 0.0
    s_slot[c] = 0.0
    ll_slot[c] = 0.0


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


def _em_stats_full_py(X, w, weighted, means, prec_chol, log_norm, lam_min, pair_w, pair_c,
                      hint, use_hint, chunk_size, group, nk_slot, t_slot, s_slot, ll_slot,
                      g_lo, g_hi):
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
    pair_w, pair_c : pair bounds (pruning; see :func:`_lists_full`)
    hint : ndarray (n,) int32, or length 0
        Each row's most probable component, written on the way out (for the
        next iteration) when not empty.
    use_hint : bool
        ``hint`` already holds a guess per row (see
        :func:`_lists_full_hinted`); results do not depend on it.
    chunk_size : int
        Rows per chunk (the unit of the per-chunk helpers).
    group : int
        Chunks per slot.
    nk_slot, t_slot, s_slot, ll_slot : float64 slots, shapes ``(G, k)``,
        ``(G, k, d)``, ``(G, k, d, d)`` (upper triangle), ``(G, 2)`` with
        ``G >= ceil(n / (chunk_size * group))``; slot ``g`` receives the
        statistics of group ``g``, ``ll_slot[g, 0]`` its ``sum w log p(x)``
        and ``ll_slot[g, 1]`` its number of rows with ``p(x) = 0``.
    g_lo, g_hi : int
        The groups to process (see :func:`fastgmm._parallel.run_groups`).

    Notes
    -----
    Group ``g`` (``group`` consecutive chunks, one after another) writes only
    slot ``g`` and scratch of its own, so disjoint group ranges may run on
    different threads.  The caller folds the slots in group order
    (:func:`_fold`): the summation order depends on ``chunk_size`` and
    ``group``, never on the number of threads.
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for g in range(g_lo, g_hi):
        _clear_slots(g, nk_slot, t_slot, s_slot, ll_slot)
        mc = min(chunk_size, n_samples)
        xt, dx, acc, maha, order, cand, koff = _full_scratch(X, n_components, mc)
        lp, ptr, rows, vals, rowmax, kmax, rowsum, lse = _list_scratch(n_components, mc)
        dr, rr, sl = _accumulate_scratch(X, mc)
        hinted = use_hint and pair_w.shape[0] > 0
        pair_k = np.empty(mc * (n_components - 1) + 1 if hinted else 0, dtype=np.int64)
        pair_i = np.empty_like(pair_k)
        pcnt = np.empty(n_components + 1, dtype=np.int64)
        for c in range(g * group, min(g * group + group, n_chunks)):
            start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
            if hinted:
                for i in range(m):
                    kmax[i] = hint[start + i]
                _lists_full_hinted(X, start, m, means, prec_chol, log_norm, pair_w, pair_c,
                                   kmax, ptr, rows, vals, rowmax, order, koff, lse, rowsum, dx,
                                   acc, maha, pair_k, pair_i, pcnt)
            else:
                _transpose_chunk(X, start, stop, xt)
                _lists_full(X, start, xt, m, means, prec_chol, log_norm, lam_min, pair_w,
                            pair_c, lp, ptr, rows, vals, rowmax, kmax, order, cand, koff, lse,
                            rowsum, dx, acc, maha)
            if hint.shape[0] > 0:
                for i in range(m):
                    hint[start + i] = kmax[i]
            _sum_log_lik(lse, m, w, weighted, start, ll_slot[g])
            _accumulate_full(X, start, w, weighted, ptr, rows, vals, means,
                             nk_slot[g], t_slot[g], s_slot[g], dr, rr, sl)


def _em_stats_tied_py(X, w, weighted, shift, mean_proj, prec_chol, log_norm,
                      chunk_size, group, nk_slot, t_slot, s_slot, ll_slot, g_lo, g_hi):
    """Fused E-step and statistics for a tied covariance.

    Parameters as :func:`_em_stats_full` except ``shift`` (d,) and
    ``mean_proj`` (k, d) (see :func:`_log_prob_tied`), ``prec_chol``
    (d, d), and ``s_slot`` ``(G, d, d)``, ``s`` ``(d, d)``.

    Notes
    -----
    Thread-safe for disjoint group ranges: per-group slots and scratch.
    """
    n_samples, n_features = X.shape
    n_components = mean_proj.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for g in range(g_lo, g_hi):
        _clear_slots(g, nk_slot, t_slot, s_slot, ll_slot)
        mc = min(chunk_size, n_samples)
        xt, dx, yt, maha = _dense_scratch(X, mc, True)
        lp, ptr, rows, vals, rowmax, kmax, rowsum, lse = _list_scratch(n_components, mc)
        dt = np.empty((n_features, mc + ROW_PAD))
        rt = np.empty((n_features, mc + ROW_PAD))
        for c in range(g * group, min(g * group + group, n_chunks)):
            start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
            _dense_lists_tied(X, start, stop, xt, shift, mean_proj, prec_chol, log_norm, lp,
                              dx, yt, maha, ptr, rows, vals, rowmax, kmax, rowsum, lse)
            _sum_log_lik(lse, m, w, weighted, start, ll_slot[g])
            _accumulate_tied(X, start, xt, m, w, weighted, ptr, rows, vals, shift,
                             nk_slot[g], t_slot[g], s_slot[g], dt, rt)


def _em_stats_diag_py(X, w, weighted, means, prec, log_norm, spherical, chunk_size, group,
                      nk_slot, t_slot, s_slot, ll_slot, g_lo, g_hi):
    """Fused E-step and statistics for diagonal or spherical covariances.

    ``prec`` is (k, d) (``1 / sqrt(variance)`` per feature) or, when
    ``spherical``, (k, 1); ``s_slot`` is ``(G, k, d)`` and ``s`` ``(k, d)``
    (spherical models use the diagonal statistics; the M-step averages
    features).

    Notes
    -----
    Thread-safe for disjoint group ranges: per-group slots and scratch.
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for g in range(g_lo, g_hi):
        _clear_slots(g, nk_slot, t_slot, s_slot, ll_slot)
        mc = min(chunk_size, n_samples)
        xt, _, _, maha = _dense_scratch(X, mc, False)
        lp, ptr, rows, vals, rowmax, kmax, rowsum, lse = _list_scratch(n_components, mc)
        for c in range(g * group, min(g * group + group, n_chunks)):
            start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
            _dense_lists_diag(X, start, stop, xt, means, prec, log_norm, spherical, lp, maha,
                              ptr, rows, vals, rowmax, kmax, rowsum, lse)
            _sum_log_lik(lse, m, w, weighted, start, ll_slot[g])
            _accumulate_diag(X, start, w, weighted, ptr, rows, vals, means,
                             nk_slot[g], t_slot[g], s_slot[g])


# ---------------------------------------------------------------------------
# Statistics from given responsibilities (initialisation)
# ---------------------------------------------------------------------------


def _resp_stats_full_py(X, w, weighted, resp, labels, shift, chunk_size, group, nk_slot, t_slot,
                        s_slot, g_lo, g_hi):
    """Statistics of full covariances for given responsibilities.

    Parameters
    ----------
    resp : ndarray (n, k) float64, or (0, k) when ``labels`` is given
    labels : ndarray (n,) int64 hard assignments, or length 0 (use ``resp``)
    shift : ndarray (k, d), dtype of X
    nk_slot, t_slot, s_slot : float64 slots ``(G, k)``, ``(G, k, d)``,
        ``(G, k, d, d)`` (upper triangle)
    g_lo, g_hi : int
        The groups to process.

    Notes
    -----
    Zero responsibilities are skipped, so one-hot (hard) assignments cost one
    component per row.  One driver per covariance type (``_resp_stats_*``),
    so that a fit compiles only the accumulation it uses.  Thread-safe for
    disjoint group ranges: per-group slots.
    """
    n_samples, n_features = X.shape
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for g in range(g_lo, g_hi):
        ptr, rows, vals = _resp_scratch(g, resp.shape[1], min(chunk_size, n_samples),
                                        nk_slot, t_slot, s_slot)
        dr, rr, sl = _accumulate_scratch(X, min(chunk_size, n_samples))
        for c in range(g * group, min(g * group + group, n_chunks)):
            start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
            _resp_lists(resp, labels, start, stop, ptr, rows, vals)
            _accumulate_full(X, start, w, weighted, ptr, rows, vals, shift,
                             nk_slot[g], t_slot[g], s_slot[g], dr, rr, sl)


def _resp_stats_tied_py(X, w, weighted, resp, labels, shift, chunk_size, group, nk_slot, t_slot,
                        s_slot, g_lo, g_hi):
    """:func:`_resp_stats_full_py` for a tied covariance: ``shift`` (d,), ``s_slot`` (G, d, d)."""
    n_samples, n_features = X.shape
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for g in range(g_lo, g_hi):
        ptr, rows, vals = _resp_scratch(g, resp.shape[1], min(chunk_size, n_samples),
                                        nk_slot, t_slot, s_slot)
        mc = min(chunk_size, n_samples)
        xt = np.empty((n_features, mc + ROW_PAD), dtype=X.dtype)
        dt = np.empty((n_features, mc + ROW_PAD))
        rt = np.empty((n_features, mc + ROW_PAD))
        for c in range(g * group, min(g * group + group, n_chunks)):
            start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
            _resp_lists(resp, labels, start, stop, ptr, rows, vals)
            _transpose_chunk(X, start, stop, xt)
            _accumulate_tied(X, start, xt, m, w, weighted, ptr, rows, vals, shift,
                             nk_slot[g], t_slot[g], s_slot[g], dt, rt)


def _resp_stats_diag_py(X, w, weighted, resp, labels, shift, chunk_size, group, nk_slot, t_slot,
                        s_slot, g_lo, g_hi):
    """:func:`_resp_stats_full_py` for diagonal statistics: ``s_slot`` (G, k, d)."""
    n_samples = X.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for g in range(g_lo, g_hi):
        ptr, rows, vals = _resp_scratch(g, resp.shape[1], min(chunk_size, n_samples),
                                        nk_slot, t_slot, s_slot)
        for c in range(g * group, min(g * group + group, n_chunks)):
            start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
            _resp_lists(resp, labels, start, stop, ptr, rows, vals)
            _accumulate_diag(X, start, w, weighted, ptr, rows, vals, shift,
                             nk_slot[g], t_slot[g], s_slot[g])


@jit()
def _resp_scratch(g, n_components, m, nk_slot, t_slot, s_slot):
    """Clear slot ``g``; list scratch for chunks of ``m`` rows: ptr, rows, vals."""
    nk_slot[g] = 0.0
    t_slot[g] = 0.0
    s_slot[g] = 0.0
    return (np.empty(n_components + 1, dtype=np.int64),
            np.empty(n_components * m + 1, dtype=np.int64), np.empty(n_components * m + 1))


# ---------------------------------------------------------------------------
# Per-point outputs (predict, predict_proba, score_samples)
# ---------------------------------------------------------------------------


@jit()
def _point_outputs_chunk(lp, m, start, ptr, rows, vals, kmax, lse, want_resp, out_2d,
                         out_score, out_label):
    """Write the per-point outputs asked for from a chunk's normalised lists.

    Outputs of length 0 are not wanted.  ``out_2d`` receives the
    responsibilities when ``want_resp``, else the weighted log densities
    (which ``lp`` must then hold for every component).
    """
    n_components = lp.shape[0]
    if out_2d.shape[0] > 0 and not want_resp:
        for i in range(m):
            for k in range(n_components):
                out_2d[start + i, k] = lp[k, i]
    if out_label.shape[0] > 0:
        for i in range(m):
            out_label[start + i] = kmax[i]
    if out_score.shape[0] > 0:
        for i in range(m):
            out_score[start + i] = lse[i]
    if want_resp:
        out_2d[start:start + m] = 0.0
        for k in range(n_components):
            for j in range(ptr[k], ptr[k + 1]):
                out_2d[start + rows[j], k] = vals[j]


def _point_full_py(X, means, prec_chol, log_norm, lam_min, pair_w, pair_c, chunk_size,
                   group, want_resp, out_2d, out_score, out_label, g_lo, g_hi):
    """Per-point outputs for full covariances.

    Parameters
    ----------
    out_2d : ndarray (n, k) or (0, k)
        Responsibilities (``want_resp``) or weighted log densities.
    out_score : ndarray (n,) or (0,)
        Log density of each row.
    out_label : ndarray (n,) int64 or (0,)
        Most probable component.
    g_lo, g_hi : int
        The groups of chunks to process.

    Notes
    -----
    Thread-safe for disjoint group ranges: each group writes its own rows and
    scratch only.
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    # Weighted log densities are wanted exactly for every component.
    prune = want_resp or out_2d.shape[0] == 0
    for g in range(g_lo, g_hi):
        mc = min(chunk_size, n_samples)
        xt, dx, acc, maha, order, cand, koff = _full_scratch(X, n_components, mc)
        lp, ptr, rows, vals, rowmax, kmax, rowsum, lse = _list_scratch(n_components, mc)
        no_dist = lse[:0]
        for c in range(g * group, min(g * group + group, n_chunks)):
            start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
            if prune:
                _transpose_chunk(X, start, stop, xt)
                _lists_full(X, start, xt, m, means, prec_chol, log_norm, lam_min, pair_w,
                            pair_c, lp, ptr, rows, vals, rowmax, kmax, order, cand, koff, lse,
                            rowsum, dx, acc, maha)
            else:
                for k in range(n_components):
                    _exact_full(X, start, kmax, 0, m, False, means, prec_chol, k, log_norm[k],
                                lp[k], dx, acc, maha, no_dist)
                _lists_dense(lp, m, ptr, rows, vals, rowmax, kmax, rowsum, lse)
            _point_outputs_chunk(lp, m, start, ptr, rows, vals, kmax, lse, want_resp, out_2d,
                                 out_score, out_label)


def _point_tied_py(X, shift, mean_proj, prec_chol, log_norm, chunk_size, group, want_resp,
                   out_2d, out_score, out_label, g_lo, g_hi):
    """Per-point outputs for a tied covariance (see :func:`_point_full`)."""
    n_samples, n_features = X.shape
    n_components = mean_proj.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for g in range(g_lo, g_hi):
        mc = min(chunk_size, n_samples)
        xt, dx, yt, maha = _dense_scratch(X, mc, True)
        lp, ptr, rows, vals, rowmax, kmax, rowsum, lse = _list_scratch(n_components, mc)
        for c in range(g * group, min(g * group + group, n_chunks)):
            start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
            _dense_lists_tied(X, start, stop, xt, shift, mean_proj, prec_chol, log_norm, lp,
                              dx, yt, maha, ptr, rows, vals, rowmax, kmax, rowsum, lse)
            _point_outputs_chunk(lp, m, start, ptr, rows, vals, kmax, lse, want_resp, out_2d,
                                 out_score, out_label)


def _point_diag_py(X, means, prec, log_norm, spherical, chunk_size, group, want_resp,
                   out_2d, out_score, out_label, g_lo, g_hi):
    """Per-point outputs for diagonal or spherical covariances (see :func:`_point_full`)."""
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    n_chunks = (n_samples + chunk_size - 1) // chunk_size
    for g in range(g_lo, g_hi):
        mc = min(chunk_size, n_samples)
        xt, _, _, maha = _dense_scratch(X, mc, False)
        lp, ptr, rows, vals, rowmax, kmax, rowsum, lse = _list_scratch(n_components, mc)
        for c in range(g * group, min(g * group + group, n_chunks)):
            start, stop, m = _chunk_bounds(c, chunk_size, n_samples)
            _dense_lists_diag(X, start, stop, xt, means, prec, log_norm, spherical, lp, maha,
                              ptr, rows, vals, rowmax, kmax, rowsum, lse)
            _point_outputs_chunk(lp, m, start, ptr, rows, vals, kmax, lse, want_resp, out_2d,
                                 out_score, out_label)


# ---------------------------------------------------------------------------
# k-means (initialisation)
# ---------------------------------------------------------------------------


def _update_min_dist_py(X, center, closest, chunk_size, c_lo, c_hi):
    """``closest[i] = min(closest[i], ||X[i] - center||^2)`` for chunks ``c_lo:c_hi``.

    Notes
    -----
    Thread-safe for disjoint chunk ranges: each row is written once.
    """
    n_samples, n_features = X.shape
    for i in range(c_lo * chunk_size, min(c_hi * chunk_size, n_samples)):
        d2 = 0.0
        for e in range(n_features):
            z = X[i, e] - center[e]
            d2 += z * z
        if d2 < closest[i]:
            closest[i] = d2


def _candidate_potential_py(X, w, weighted, candidates, closest, chunk_size, slot, c_lo, c_hi):
    """Potential ``sum_i w_i min(closest_i, ||x_i - cand||^2)`` per candidate and chunk.

    Parameters
    ----------
    candidates : ndarray (m, d), dtype of X
    closest : ndarray (n,) float64
    slot : ndarray (n_chunks, m) float64; row ``c`` receives chunk ``c``'s
        potentials (the caller folds them in chunk order)
    c_lo, c_hi : int
        The chunks to process.

    Notes
    -----
    Thread-safe for disjoint chunk ranges.
    """
    n_samples, n_features = X.shape
    n_cand = candidates.shape[0]
    for c in range(c_lo, c_hi):
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


def _lloyd_step_py(X, w, weighted, centers, labels, chunk_size, sum_slot, count_slot,
                   c_lo, c_hi):
    """One Lloyd iteration over chunks ``c_lo:c_hi``: nearest centres, sums.

    Parameters
    ----------
    centers : ndarray (k, d), dtype of X
    labels : ndarray (n,) int64, written
    sum_slot, count_slot : float64 ``(n_chunks, k, d)``, ``(n_chunks, k)``;
        row ``c`` receives chunk ``c``'s ``sum w (x - centre)`` per cluster
        (shifted by the old centre, for accuracy far from the origin) and
        ``sum w`` per cluster
    c_lo, c_hi : int
        The chunks to process.

    Notes
    -----
    Thread-safe for disjoint chunk ranges; the caller folds the slots in
    chunk order.
    """
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    for c in range(c_lo, c_hi):
        start = c * chunk_size
        stop = min(start + chunk_size, n_samples)
        sum_slot[c] = 0.0
        count_slot[c] = 0.0
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
            for e in range(n_features):
                sum_slot[c, best, e] += wi * (X[i, e] - centers[best, e])


# ---------------------------------------------------------------------------
# Dispatchers, built once here; each compiles on first use.
# ---------------------------------------------------------------------------

_DRIVERS = {
    "em_stats_full": _em_stats_full_py,
    "em_stats_tied": _em_stats_tied_py,
    "em_stats_diag": _em_stats_diag_py,
    "resp_stats_full": _resp_stats_full_py,
    "resp_stats_tied": _resp_stats_tied_py,
    "resp_stats_diag": _resp_stats_diag_py,
    "point_full": _point_full_py,
    "point_tied": _point_tied_py,
    "point_diag": _point_diag_py,
    "update_min_dist": _update_min_dist_py,
    "candidate_potential": _candidate_potential_py,
    "lloyd_step": _lloyd_step_py,
}

#: name -> dispatcher.  Drivers take the range of groups (or chunks) to
#: process last; :func:`fastgmm._parallel.run_groups` shares them between
#: threads, and the caller folds the slots with ``fold``.
KERNELS = {name: jit()(fn) for name, fn in _DRIVERS.items()}
KERNELS["fold"] = _fold

EM_STATS = {t: KERNELS["em_stats_" + f] for t, f in
            (("full", "full"), ("tied", "tied"), ("diag", "diag"), ("spherical", "diag"))}
RESP_STATS = {t: KERNELS["resp_stats_" + f] for t, f in
              (("full", "full"), ("tied", "tied"), ("diag", "diag"), ("spherical", "diag"))}
POINT = {t: KERNELS["point_" + f] for t, f in
         (("full", "full"), ("tied", "tied"), ("diag", "diag"), ("spherical", "diag"))}
fold = _fold
