"""Compiled kernels of the k-means initialisation (k-means++ seeding, Lloyd steps).

This module calls no compiled function defined in another file, and must stay
so: Numba's disk cache (``cache=True``) checks only the source file of the
function it loads, so a kernel here calling a helper from
:mod:`fastgmm._kernels` would keep running a stale copy of that helper after
the helper changed.  ``tests/test_kernels_layout.py`` checks this.

Conventions are those of :mod:`fastgmm._kernels`: ``X`` is C-contiguous
``(n_samples, n_features)`` float32 or float64, distances are formed in the
dtype of ``X`` and accumulated in float64 (the Lloyd step compares them
through one matrix product per chunk, in the dtype of ``X``; see
:func:`lloyd_step`), every kernel is serial, releases
the GIL and processes the chunks ``c_lo:c_hi`` given as its last two
arguments (:func:`fastgmm._parallel.run_groups` shares them between threads),
and each chunk writes only its own rows or its own slot, which the caller
folds in chunk order.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ._config import jit

Centres = namedtuple("Centres", ["centers", "shift", "offsets_t", "cnorm"])
Centres.__doc__ = """The centres of a Lloyd step (:func:`lloyd_step`) as the kernel reads them.

``centers`` (k, d), dtype of X
``shift`` (d,), dtype of X
    A point near the centres (their mean).
``offsets_t`` (d, k), dtype of X, C-contiguous
    ``(centers - shift).T``.
``cnorm`` (k,) float64
    ``||centers[k] - shift||^2``.
"""


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
def lloyd_step(X, w, weighted, centres, labels, chunk_size, sum_slot, count_slot, c_lo, c_hi):
    """One Lloyd iteration over chunks ``c_lo:c_hi``: nearest centres, per-cluster sums.

    Parameters
    ----------
    X : ndarray (n, d) float32 or float64, C-contiguous
    w : ndarray (n,) float64, or length 0 when ``weighted`` is False
    weighted : bool
    centres : Centres
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
    The nearest centre of ``x`` minimises ``||c - s||^2 - 2 (x - s) . (c - s)``
    (``s`` the shift), so a chunk's comparisons are one matrix product (BLAS,
    on this thread).  About a shift near the centres the rounding error of
    each value is about ``eps (||x - s||^2 + ||c - s||^2)``, which can only
    swap centres whose distances tie to that accuracy.

    Thread-safe for disjoint chunk ranges; the caller folds the slots in
    chunk order.
    """
    centers, shift, offsets_t, cnorm = centres
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    mc = min(chunk_size, n_samples)
    # Rows past a short last chunk keep finite values from earlier chunks.
    xs = np.zeros((mc, n_features), dtype=X.dtype)
    dots = np.empty((mc, n_clusters), dtype=X.dtype)
    for c in range(c_lo, c_hi):
        start = c * chunk_size
        m = min(start + chunk_size, n_samples) - start
        for i in range(m):
            for e in range(n_features):
                xs[i, e] = X[start + i, e] - shift[e]
        np.dot(xs, offsets_t, dots)
        sum_slot[c] = 0.0
        count_slot[c] = 0.0
        for i in range(m):
            b = 0
            bv = np.inf
            for k in range(n_clusters):
                v = cnorm[k] - 2.0 * dots[i, k]
                closer = v < bv
                bv = v if closer else bv
                b = k if closer else b
            labels[start + i] = b
            wi = w[start + i] if weighted else 1.0
            count_slot[c, b] += wi
            for e in range(n_features):
                sum_slot[c, b, e] += wi * (X[start + i, e] - centers[b, e])
