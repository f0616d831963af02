"""Compiled kernels of the k-means initialisation (k-means++ seeding, Lloyd steps).

This module calls no compiled function defined in another file, and must stay
so: Numba's disk cache (``cache=True``) checks only the source file of the
function it loads, so a kernel here calling a helper from
:mod:`fastgmm._kernels` would keep running a stale copy of that helper after
the helper changed.  ``tests/test_kernels_layout.py`` checks this.

Conventions are those of :mod:`fastgmm._kernels`: ``X`` is C-contiguous
``(n_samples, n_features)`` float32 or float64, distances are formed in the
dtype of ``X`` and accumulated in float64, every kernel is serial, releases
the GIL and processes the chunks ``c_lo:c_hi`` given as its last two
arguments (:func:`fastgmm._parallel.run_groups` shares them between threads),
and each chunk writes only its own rows or its own slot, which the caller
folds in chunk order.
"""

from __future__ import annotations

import numpy as np

from ._config import jit


@jit()
def update_min_dist(X, center, closest, chunk_size, c_lo, c_hi):
    """``closest[i] = min(closest[i], ||X[i] - center||^2)`` for chunks ``c_lo:c_hi``.

    Parameters
    ----------
    X : ndarray (n, d) float32 or float64, C-contiguous
    center : ndarray (d,), dtype of X
    closest : ndarray (n,) float64, updated
        Squared distance of each row to its nearest centre so far.
    chunk_size : int
        Rows per chunk.
    c_lo, c_hi : int
        The chunks to process.

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


@jit()
def candidate_potential(X, w, weighted, candidates, closest, chunk_size, slot, c_lo, c_hi):
    """Potential ``sum_i w_i min(closest_i, ||x_i - cand||^2)`` per candidate and chunk.

    Parameters
    ----------
    X : ndarray (n, d) float32 or float64, C-contiguous
    w : ndarray (n,) float64, or length 0 when ``weighted`` is False
    weighted : bool
    candidates : ndarray (m, d), dtype of X
    closest : ndarray (n,) float64
        Squared distance of each row to its nearest centre so far.
    chunk_size : int
        Rows per chunk.
    slot : ndarray (n_chunks, m) float64, written
        Row ``c`` receives chunk ``c``'s potential of each candidate (the
        caller folds the rows in chunk order).
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


@jit()
def _sq_dist_to_center(xt, m, centers, k, out):
    """``out[i] = ||xt[:, i] - centers[k]||^2`` for ``i < m`` (a transposed chunk).

    The loop over rows is innermost so that it vectorises; four features per
    pass cut the loads and stores of ``out`` (float64) to a quarter.
    """
    n_features = xt.shape[0]
    for i in range(m):
        out[i] = 0.0
    e = 0
    while e + 4 <= n_features:
        c0, c1, c2, c3 = centers[k, e], centers[k, e + 1], centers[k, e + 2], centers[k, e + 3]
        for i in range(m):
            z0 = xt[e, i] - c0
            z1 = xt[e + 1, i] - c1
            z2 = xt[e + 2, i] - c2
            z3 = xt[e + 3, i] - c3
            out[i] += (z0 * z0 + z1 * z1) + (z2 * z2 + z3 * z3)
        e += 4
    for f in range(e, n_features):
        cf = centers[k, f]
        for i in range(m):
            z = xt[f, i] - cf
            out[i] += z * z


@jit()
def lloyd_step(X, w, weighted, centers, labels, chunk_size, sum_slot, count_slot, c_lo, c_hi):
    """One Lloyd iteration over chunks ``c_lo:c_hi``: nearest centres, per-cluster sums.

    Parameters
    ----------
    X : ndarray (n, d) float32 or float64, C-contiguous
    w : ndarray (n,) float64, or length 0 when ``weighted`` is False
    weighted : bool
    centers : ndarray (k, d), dtype of X
    labels : ndarray (n,) int64, written: the nearest centre of each row
        (the first of ties)
    chunk_size : int
        Rows per chunk.
    sum_slot : ndarray (n_chunks, k, d) float64, written
        Row ``c`` receives chunk ``c``'s ``sum w (x - centre)`` per cluster
        (shifted by the old centre, for accuracy far from the origin).
    count_slot : ndarray (n_chunks, k) float64, written
        Row ``c`` receives chunk ``c``'s ``sum w`` per cluster.
    c_lo, c_hi : int
        The chunks to process.

    Notes
    -----
    Thread-safe for disjoint chunk ranges; the caller folds the slots in
    chunk order.  Each chunk is transposed once, and its distances to one
    centre at a time are formed for all its rows together.
    """
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    mc = min(chunk_size, n_samples)
    xt = np.empty((n_features, mc), dtype=X.dtype)
    d2 = np.empty(mc)
    best_d2 = np.empty(mc)
    best = np.empty(mc, dtype=np.int64)
    for c in range(c_lo, c_hi):
        start = c * chunk_size
        m = min(start + chunk_size, n_samples) - start
        for i in range(m):
            for e in range(n_features):
                xt[e, i] = X[start + i, e]
            best_d2[i] = np.inf
            best[i] = 0
        for k in range(n_clusters):
            _sq_dist_to_center(xt, m, centers, k, d2)
            for i in range(m):
                closer = d2[i] < best_d2[i]
                best_d2[i] = d2[i] if closer else best_d2[i]
                best[i] = k if closer else best[i]
        sum_slot[c] = 0.0
        count_slot[c] = 0.0
        for i in range(m):
            b = best[i]
            labels[start + i] = b
            wi = w[start + i] if weighted else 1.0
            count_slot[c, b] += wi
            for e in range(n_features):
                sum_slot[c, b, e] += wi * (X[start + i, e] - centers[b, e])
