"""Compiled EM kernels: fused E-step and statistics, given responsibilities, per-point outputs.

Kernels take arrays, scalars and named tuples of them (section 2), never
validate, and write into buffers the caller allocated.  Callers pick a
driver by covariance type from the tables at the bottom (:data:`EM_STATS`,
:data:`RESP_STATS`, :data:`POINT`) and fold the per-group slots with
:func:`fold`.  The k-means kernels, which share
nothing with these, are in :mod:`fastgmm._kernels_kmeans`.

Layout
------
All kernels of complete rows stay in this one file (the k-means ones and
those of rows with missing entries have theirs) because Numba's disk
cache checks only the source file of the function it loads: a driver calling
a helper defined in another file would keep running a stale copy of that
helper after it changed.  The sections come in this fixed order, and every
function calls only functions defined above it:

1. Constants.
2. Named tuples: the drivers' inputs (:class:`FullModel`, :class:`TiedModel`,
   :class:`DiagModel`, :class:`DensePath`, :class:`Hints`, :class:`Grid`,
   :class:`Slots`, :class:`Given`, :class:`PointOut`), the scratch buffers,
   and the scratch allocators.
3. Chunk helpers: transpose, squared distances, exponential.
4. Log densities: ``_log_prob_full`` (some rows of one component),
   ``_log_prob_tied``, ``_log_prob_diag``.
5. Pruning bounds of the full covariance type.
6. Responsibility lists: the builders ``_lists_*`` and
   :func:`_normalize_lists`.
7. Statistics: ``_accumulate_full``, ``_accumulate_tied``,
   ``_accumulate_diag``.
7b. The dense path: log densities and statistics as two matrix products
    (``_gemm_features``, ``_gemm_block``, ``_dense_next``, ``_gemm_chunk``).
8. Folding slots: :func:`fold`.
9. Drivers, fused E-step and statistics: ``em_stats_full``,
   ``em_stats_tied``, ``em_stats_diag``, and their one loop over a group's
   chunks (``_group_chunks``, ``_chunk_bounds``).
10. Drivers, statistics of given responsibilities: ``resp_stats_full``,
    ``resp_stats_tied``, ``resp_stats_diag``.
11. Drivers, per-point outputs: ``point_full``, ``point_tied``,
    ``point_diag``.
12. Tables by covariance type.

Functions of one covariance type are named ``<stage>_<covariance type>``
(``em_stats_full``, ``_lists_tied``, ``_accumulate_diag``); the others after
their input (``_lists_from_labels``) or their work (``_bucket_rows``).
Drivers (the functions called from outside) and :func:`fold` have no leading
underscore, the helpers they call have one.  Drivers are decorated directly,
like the helpers: they were once wrapped from plain functions to build a
parallel and a serial twin of each, and one build now serves both (the plain
function stays reachable as ``driver.py_func``).

Conventions
-----------
* ``X`` is C-contiguous ``(n_samples, n_features)``, float32 or float64.  The
  per-point arithmetic runs in the dtype of ``X``; means and precision factors
  are passed in that same dtype.  Log-probabilities, responsibilities and all
  accumulated statistics are float64.
* Drivers take their inputs as a few named tuples (section 2): the data
  ``X, w, weighted``, then the model of their covariance type, the dense
  path, the hints, the :class:`Grid`, the :class:`Slots` or outputs, and
  last the range of groups ``g_lo, g_hi``; no compiled function takes more
  than 12 positional arguments (``tests/test_kernel_interface.py``).
* Rows are processed in fixed chunks of ``grid.chunk_size`` rows, and chunks
  in groups of ``grid.group`` consecutive chunks (:func:`_group_chunks`).
  Every kernel is serial and releases the GIL; a driver processes the
  groups ``g_lo:g_hi`` it is given (its last two arguments), and
  :func:`fastgmm._parallel.run_groups` shares the groups between threads.
  Group ``g`` handles its chunks in order and writes only slot ``g`` of
  each array of :class:`Slots`, so there are no shared writes; the caller
  then folds the slots into the accumulators serially, in group order
  (:func:`fold`).  The summation order therefore depends on
  ``chunk_size`` and ``group`` (chosen from the number of rows), never on
  the number of threads.  A driver allocates its scratch once per call,
  before its loop over groups.
* A chunk is rows ``start .. start + m - 1`` of ``X``; helpers take
  ``start`` and ``m``.
* Per-group scratch travels in named tuples (:class:`ListScratch`,
  :class:`FullScratch`, :class:`BucketScratch`, :class:`HintScratch`,
  :class:`DenseScratch`, :class:`FullStatsScratch`,
  :class:`TiedStatsScratch`), so that each buffer has one name from its
  allocation to its last use; a helper takes the whole tuple and binds the
  fields it uses to locals of the same names before its loops.
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
  inside its parallel region, every helper it calls, and one build serves
  serial and threaded calls alike.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ._config import jit

# ---------------------------------------------------------------------------
# 1. Constants
# ---------------------------------------------------------------------------

#: Responsibilities below ``exp(RESP_LOG_FLOOR)`` times the row's largest are
#: stored as exact zeros (and skipped by the accumulation).
RESP_LOG_FLOOR = -50.0

#: The full builders leave out an entry whose log-density bound lies below
#: its row's best exact log density plus this: one nat beyond
#: :data:`RESP_LOG_FLOOR`, so that rounding can never prune an entry that
#: normalisation would keep.
PRUNE_LOG_FLOOR = RESP_LOG_FLOOR - 1.0

#: The pair bounds use ``ln - BOUND_HALF z^2`` for ``ln - z^2 / 2``: one part
#: in a thousand looser (as ``lam_min`` is for the eigenvalue bound), so that
#: rounding in the data's dtype cannot make a bound fall below the density.
BOUND_HALF = 0.4995

#: Extra columns of every (d, chunk) scratch array, so that the rows of such
#: an array do not start a power of two bytes apart: walking down a column
#: would otherwise touch addresses that map to the same few L1 cache sets.
ROW_PAD = 16

#: Bytes per cache line: the hinted builder touches each line of its chunk
#: once, in order, before reading the rows out of order.
CACHE_LINE_BYTES = 64

#: Rows per block of the dense path (:func:`_gemm_block`): a block's
#: features, log densities and responsibilities stay in L2 while BLAS runs
#: over them.
GEMM_ROWS = 256


# ---------------------------------------------------------------------------
# 2. Named tuples: the drivers' inputs, and per-group scratch
#
# Drivers take their inputs as a few named tuples rather than two dozen
# positional arguments: the data (``X``, ``w``, ``weighted``), the model of
# one covariance type, the dense path, the hints, the grid of chunks and
# groups, the slots.  The callers (:mod:`fastgmm._compute`) build them in
# Python; Numba types a named tuple by its class and its fields' types, so
# each field keeps one dtype and dimension (an absent input is an empty
# array of that same dtype and dimension) and a call compiles nothing new.
# ---------------------------------------------------------------------------

FullModel = namedtuple("FullModel", ["means", "prec_chol", "log_norm", "lam_min", "pair_w",
                                     "pair_c"])
FullModel.__doc__ = """A full-covariance model as the kernels read it.

``means`` (k, d), dtype of X
    Also the shift of the statistics.
``prec_chol`` (k, d, d), dtype of X, upper triangular
``log_norm`` (k,) float64
``lam_min`` (k,) float64
    Lower bounds of the precisions' smallest eigenvalues (pruning).
``pair_w`` (k, k, d), dtype of X, or (0, 0, d); ``pair_c`` (2, k, k) float64, or (2, 0, 0)
    Pair bounds (pruning; see :func:`_lists_full`); empty to switch them off.
"""

TiedModel = namedtuple("TiedModel", ["shift", "mean_proj", "prec_chol", "log_norm"])
TiedModel.__doc__ = """A tied-covariance model as the kernels read it.

``shift`` (d,), dtype of X
    The shift of the statistics, a point near the data (see
    :func:`_log_prob_tied`).
``mean_proj`` (k, d), dtype of X
    ``(means - shift) @ prec_chol``.
``prec_chol`` (d, d), dtype of X, upper triangular
``log_norm`` (k,) float64
"""

DiagModel = namedtuple("DiagModel", ["means", "prec", "log_norm", "spherical"])
DiagModel.__doc__ = """A diagonal or spherical model as the kernels read it.

``means`` (k, d), dtype of X
    Also the shift of the statistics.
``prec`` (k, d), dtype of X, or (k, 1) when ``spherical``
    ``1 / sqrt(variance)`` per feature (or per component).
``log_norm`` (k,) float64
``spherical`` bool
"""

DensePath = namedtuple("DensePath", ["shift", "wt", "const", "on", "first", "up", "down"])
DensePath.__doc__ = """The dense path of the E-step (section 7b) and when to take it.

``shift`` (d,), dtype of X
    The shift of the dense path's features.
``wt`` (k, p), dtype of X; ``const`` (k,) float64
    The dense model: ``p = d + d (d + 1) / 2`` (full), ``2 d`` (diagonal)
    or ``d + 1`` (spherical).
``on`` bool
    Whether the dense path may be used at all.
``first`` bool
    Whether each group starts on it.
``up``, ``down`` float
    The switching thresholds of :func:`_dense_next`.
"""

Hints = namedtuple("Hints", ["best", "use"])
Hints.__doc__ = """Each row's most probable component, kept between iterations (full type).

``best`` (n,) int32, or length 0
    Written on the way out (for the next iteration) when not empty.
``use`` bool
    ``best`` already holds a guess per row (see :func:`_lists_full_hinted`;
    used only with pair bounds); results do not depend on it.
"""

Grid = namedtuple("Grid", ["chunk_size", "group"])
Grid.__doc__ = """How a driver cuts its rows: ``chunk_size`` rows a chunk, ``group`` chunks a slot.

Group ``g`` is chunks ``g * group .. g * group + group - 1`` (see
:func:`_group_chunks`).
"""

Slots = namedtuple("Slots", ["nk", "t", "s", "g", "ll"])
Slots.__doc__ = """Per-group statistics slots, ``G`` of each (slot ``g`` for group ``g``).

``nk`` (G, k) float64
``t`` (G, k, d) float64
``s`` (G, k, d, d) (full), (G, d, d) (tied), both upper triangle only, or
(G, k, d) (diagonal, spherical) float64
``g`` (G, p + 1, k) float64
    The dense path's sums (see :func:`_gemm_block`), their
    responsibilities in the last row; unused by the tied and the
    given-responsibility drivers.
``ll`` (G, 4) float64
    ``ll[g, 0]`` the group's ``sum w log p(x)``, ``ll[g, 1]`` its number of
    rows with ``p(x) = 0``, ``ll[g, 2]`` its rows on the dense path and
    ``ll[g, 3]`` 1 if its next chunk would have taken it (else 0); unused
    by the given-responsibility drivers.
"""

Given = namedtuple("Given", ["resp", "labels"])
Given.__doc__ = """Given responsibilities (initialisation): one of the two is empty.

``resp`` (n, k) float64, or (0, k) when ``labels`` is given
``labels`` (n,) int64 hard assignments, or length 0 (use ``resp``)
"""

PointOut = namedtuple("PointOut", ["want_resp", "out_2d", "out_score", "out_label"])
PointOut.__doc__ = """The per-point outputs asked for; outputs of length 0 are not computed.

``want_resp`` bool
    ``out_2d`` receives responsibilities rather than log densities.
``out_2d`` (n, k) or (0, k), float32/float64
    Responsibilities (``want_resp``) or weighted log densities.
``out_score`` (n,) or (0,), float32/float64
    Log density of each row.
``out_label`` (n,) int64 or (0,)
    Most probable component.
"""

# Scratch.  Every driver call allocates its scratch once, before its loop
# over groups, and its groups reuse it (each buffer is overwritten before
# every use; a call runs on one thread, so no two groups share it at once).
# Freshly allocated blocks this large every chunk would be mapped and
# unmapped by the system allocator, and threads would queue on that.  The
# scratch reaches the helpers as named tuples.  The allocators are inlined
# into the drivers: compiled on their own, each would carry a Python
# wrapper boxing its tuple and be linked and optimised again in every
# caller, for a longer cold compile.
# ``m`` below is the rows of the largest chunk, ``k`` the components.
# ---------------------------------------------------------------------------

ListScratch = namedtuple("ListScratch",
                         ["lp", "ptr", "rows", "vals", "rowmax", "kmax", "rowsum", "lse"])
ListScratch.__doc__ = """A chunk's responsibility lists and the per-row buffers of their builders.

``lp`` (k, m) float64
    Weighted log densities of every component and row (dense builders and
    per-point outputs), or their upper bounds (:func:`_lists_full`).
``ptr`` (k + 1,) int64, ``rows`` (k m + 1,) int64, ``vals`` (k m + 1,) float64
    The lists: component ``k`` holds rows ``rows[ptr[k]:ptr[k + 1]]`` with
    values ``vals[ptr[k]:ptr[k + 1]]``, log densities while being built and
    responsibilities once normalised.  The extra entry lets branch-free
    compaction loops write one past the end.
``rowmax`` (m,) float64
    Each row's largest log density.  Until normalisation the full builders
    keep each row's pruning threshold here, and before it bounds
    (:func:`_lists_full`) or squared distances to the guessed means
    (:func:`_lists_full_hinted`, in bucket order).
``kmax`` (m,) int64
    Each row's most probable component; until normalisation the full
    builders keep the most promising one here (on entry to
    :func:`_lists_full_hinted`, the row hints).
``rowsum`` (m,) float64
    Normalisation's per-row sum of responsibilities, then its inverse;
    before that :func:`_lists_from_log_prob` counts each row's entries here
    and :func:`_lists_full_hinted` keeps the distance to the guessed mean.
``lse`` (m,) float64
    Each row's log density ``log sum_k exp(log density)``.  Until
    normalisation the full builders keep here the exact log density of each
    row's most promising component, in bucket order, and
    :func:`_lists_from_log_prob` each row's threshold.
"""

FullScratch = namedtuple("FullScratch", ["xt", "dt", "acc", "maha"])
FullScratch.__doc__ = """Scratch of the full-covariance builders in the dtype of X.

``xt`` (d, m + ROW_PAD), dtype of X
    The chunk, transposed (for the eigenvalue bounds).
``dt`` (d, m + ROW_PAD), dtype of X
    Rows minus one component's mean, transposed (:func:`_maha_triangle`).
``acc`` (2, m), dtype of X
    Two outputs of the triangular product, summed over columns.
``maha`` (m,), dtype of X
    Squared Mahalanobis distances (squared Euclidean ones for the bounds).
"""

BucketScratch = namedtuple("BucketScratch", ["order", "koff", "cand"])
BucketScratch.__doc__ = """The full builders' buckets: a chunk's rows by most promising component.

``order`` (m,) int64, ``koff`` (k + 1,) int64
    Bucket ``k`` is ``order[koff[k]:koff[k + 1]]``.
``cand`` (m + 1,) int64
    Rows where some other component's bound clears the threshold
    (:func:`_lists_full`).
"""

HintScratch = namedtuple("HintScratch", ["pair_k", "pair_i", "pcnt"])
HintScratch.__doc__ = """Pairs (component, row) that pass the bounds of the hinted builder.

``pair_k``, ``pair_i`` (m (k - 1) + 1,) int64, length 0 without hints
    Component and row of each pair.
``pcnt`` (k + 1,) int64
    Pairs per component, then their insertion points.
"""

DenseScratch = namedtuple("DenseScratch", ["xt", "dt", "yt", "maha"])
DenseScratch.__doc__ = """Scratch of the tied, diagonal and spherical builders.

``xt`` (d, m + ROW_PAD), dtype of X
    The chunk, transposed.
``dt``, ``yt`` (d, m + ROW_PAD), dtype of X; (d, 0) unless tied
    The chunk minus the shift, and that times the precision factor.
``maha`` (m,), dtype of X
    Squared Mahalanobis distances.
"""

FullStatsScratch = namedtuple("FullStatsScratch", ["dr", "rr", "sl"])
FullStatsScratch.__doc__ = """Scratch of :func:`_accumulate_full`, all in the dtype of X.

``dr`` (m, dp)
    One component's rows minus the shift, gathered, zeros past column ``d``.
``rr`` (m,)
    Their weighted responsibilities.
``sl`` (d + 1, dp)
    The chunk's sums for the component: rows ``0 .. d - 1`` the scatter,
    row ``d`` the first moment (columns past ``d`` unused).

``dp`` is ``d`` rounded up to whole 64-byte vectors when ``d`` is over
four: the rank-one updates then run whole vector iterations only (a scalar
remainder of up to seven columns cost more than the vectors before it).
"""

TiedStatsScratch = namedtuple("TiedStatsScratch", ["xc", "wxc"])
TiedStatsScratch.__doc__ = """Scratch of :func:`_accumulate_tied`.

``xc``, ``wxc`` (d, m + ROW_PAD) float64
    The chunk minus the shift, transposed, and that times the row weights.
"""


GemmScratch = namedtuple("GemmScratch", ["pt", "lt", "gt", "rowmax", "rowsum", "kbest"])
GemmScratch.__doc__ = """Scratch of the dense path (:func:`_gemm_block`); empty when it is off.

``pt`` (p, GEMM_ROWS), dtype of X
    The block's features, one column per row (see :func:`_gemm_features`).
``lt`` (k, GEMM_ROWS), dtype of X
    Their products with the model: log densities, then weighted
    responsibilities (zero in the columns past the block's rows).
``gt`` (p, k), dtype of X
    The block's sums of features times responsibilities.
``rowmax``, ``rowsum`` (GEMM_ROWS,) float64; ``kbest`` (GEMM_ROWS,) int64
    Each row's largest log density, sum of exponentials (then its inverse
    times the row's weight) and most probable component.
"""


@jit(inline=True)
def _list_scratch(n_components, m):
    """A :class:`ListScratch` for chunks of up to ``m`` rows."""
    return ListScratch(np.empty((n_components, m)), np.empty(n_components + 1, dtype=np.int64),
                       np.empty(n_components * m + 1, dtype=np.int64),
                       np.empty(n_components * m + 1), np.empty(m),
                       np.empty(m, dtype=np.int64), np.empty(m), np.empty(m))


@jit(inline=True)
def _full_scratch(X, m):
    """A :class:`FullScratch` for chunks of up to ``m`` rows."""
    n_features = X.shape[1]
    return FullScratch(np.empty((n_features, m + ROW_PAD), dtype=X.dtype),
                       np.empty((n_features, m + ROW_PAD), dtype=X.dtype),
                       np.empty((2, m), dtype=X.dtype), np.empty(m, dtype=X.dtype))


@jit(inline=True)
def _bucket_scratch(n_components, m):
    """A :class:`BucketScratch` for chunks of up to ``m`` rows."""
    return BucketScratch(np.empty(m, dtype=np.int64), np.empty(n_components + 1, dtype=np.int64),
                         np.empty(m + 1, dtype=np.int64))


@jit(inline=True)
def _hint_scratch(n_components, m, hinted):
    """A :class:`HintScratch` for chunks of up to ``m`` rows (no pairs unless ``hinted``)."""
    pair_k = np.empty(m * (n_components - 1) + 1 if hinted else 0, dtype=np.int64)
    return HintScratch(pair_k, np.empty_like(pair_k), np.empty(n_components + 1, dtype=np.int64))


@jit(inline=True)
def _dense_scratch(X, m, tied):
    """A :class:`DenseScratch` for chunks of up to ``m`` rows (``dt``, ``yt`` empty unless tied)."""
    n_features = X.shape[1]
    cols = m + ROW_PAD if tied else 0
    return DenseScratch(np.empty((n_features, m + ROW_PAD), dtype=X.dtype),
                        np.empty((n_features, cols), dtype=X.dtype),
                        np.empty((n_features, cols), dtype=X.dtype), np.empty(m, dtype=X.dtype))


@jit(inline=True)
def _full_stats_scratch(X, m):
    """A :class:`FullStatsScratch` for chunks of up to ``m`` rows."""
    n_features = X.shape[1]
    lanes = 64 // X.itemsize
    dp = n_features if n_features <= 4 else (n_features + lanes - 1) // lanes * lanes
    return FullStatsScratch(np.zeros((m, dp), dtype=X.dtype), np.empty(m, dtype=X.dtype),
                            np.empty((n_features + 1, dp), dtype=X.dtype))


@jit(inline=True)
def _gemm_scratch(X, wt, on):
    """A :class:`GemmScratch` for the model ``wt`` (k, p); every buffer empty unless ``on``.

    Groups start with the empty one and allocate the real one at their first
    dense chunk: on separated data it is never needed, and with many
    features it is megabytes per group.
    """
    n_components, n_terms = wt.shape
    rows = GEMM_ROWS if on else 0
    return GemmScratch(np.empty((n_terms, rows), dtype=X.dtype),
                       np.empty((n_components, rows), dtype=X.dtype),
                       np.empty((n_terms, n_components if on else 0), dtype=X.dtype),
                       np.empty(rows), np.empty(rows), np.empty(rows, dtype=np.int64))


@jit(inline=True)
def _tied_stats_scratch(n_features, m):
    """A :class:`TiedStatsScratch` for chunks of up to ``m`` rows."""
    return TiedStatsScratch(np.empty((n_features, m + ROW_PAD)),
                            np.empty((n_features, m + ROW_PAD)))


# ---------------------------------------------------------------------------
# 3. Chunk helpers
#
# A chunk of m <= chunk_size rows is first transposed into ``xt`` (d, m) so
# that every inner loop below runs over rows, contiguously: LLVM vectorises
# those loops whatever d is, which it cannot do for short, variable-length
# loops over features.
# ---------------------------------------------------------------------------


@jit()
def _transpose_chunk(X, start, m, xt):
    """``xt[e, i] = X[start + i, e]`` for ``i < m``."""
    n_features = X.shape[1]
    stop = start + m
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
# 4. Log densities
# ---------------------------------------------------------------------------


@jit()
def _maha_triangle(cnt, prec_chol, k, fs):
    """``fs.maha[j] = || U^T fs.dt[:, j] ||^2`` for ``j < cnt``, ``U = prec_chol[k]``.

    ``y_f = sum_{e <= f} U[e, f] dt[e, j]`` is formed for all columns at once,
    two output features and four input features per pass (into ``fs.acc``):
    each pass does eight multiply-adds per column for two stores, and there
    are a quarter as many loops over columns, which matters on the short
    runs of columns of one component.  ``d (d + 1) / 2`` multiply-adds per
    column, in loops over columns that vectorise.
    """
    dt, acc, maha = fs.dt, fs.acc, fs.maha
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
def _log_prob_full(X, start, sel, first, cnt, gathered, model, k, out, dist, fs):
    """``out[first + j] = log_norm[k] - maha_k / 2`` for ``cnt`` rows of a chunk.

    Parameters
    ----------
    X : ndarray (n, d); start : int
        The chunk starts at row ``start``.
    sel : ndarray (>= first + cnt,) int64
        When ``gathered``, the rows are ``start + sel[first:first + cnt]``;
        otherwise they are ``start .. start + cnt - 1`` and ``sel`` is unused.
    first, cnt : int
    gathered : bool
    model : FullModel
        ``means``, ``prec_chol`` and ``log_norm`` are used.
    k : int
        The component.
    out : ndarray (>= first + cnt,) float64, written
    dist : ndarray float64, length 0 or (>= first + cnt,)
        Unless empty, ``dist[first + j]`` receives the squared Euclidean
        distance to the mean.
    fs : FullScratch
        ``dt``, ``acc`` and ``maha`` are used.

    Notes
    -----
    The rows are read straight from ``X`` (each a contiguous row) into the
    columns of ``fs.dt``, the mean subtracted first (no cancellation on data
    far from the origin).
    """
    if cnt == 0:
        return
    means, prec_chol, log_norm = model.means, model.prec_chol, model.log_norm
    dt, maha = fs.dt, fs.maha
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
    _maha_triangle(cntp, prec_chol, k, fs)
    ln = log_norm[k]
    for j in range(cnt):
        out[first + j] = ln - 0.5 * maha[j]


@jit()
def _log_prob_tied(m, shift, mean_proj, prec_chol, log_norm, lp, ds):
    """Weighted log densities ``lp[k, i]`` of the transposed chunk ``ds.xt``, tied covariance.

    Parameters
    ----------
    m : int
        Rows in the chunk.
    shift : ndarray (d,), dtype of X
        A point near the data (the weighted mean of the means).
    mean_proj : ndarray (k, d), dtype of X
        ``(means - shift) @ prec_chol``.
    prec_chol : ndarray (d, d), dtype of X, upper triangular
    log_norm : ndarray (k,) float64
    lp : ndarray (k, >= m) float64, written
    ds : DenseScratch
        ``xt`` holds the chunk; ``dt``, ``yt`` and ``maha`` are used.

    Notes
    -----
    ``(x - mu_k) @ U = (x - c) @ U - (mu_k - c) @ U``: one triangular product
    per row, then ``d`` subtractions per row and component.
    """
    xt, dt, yt, maha = ds.xt, ds.dt, ds.yt, ds.maha
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
def _log_prob_diag(m, means, prec, log_norm, spherical, lp, ds):
    """Weighted log densities ``lp[k, i]`` of ``ds.xt``, diagonal or spherical covariances.

    ``prec`` is (k, d) in the dtype of X: ``1 / sqrt(variance)`` per
    feature, or (k, 1) when ``spherical`` (one variance per component).
    ``ds.maha`` is scratch.
    """
    xt, maha = ds.xt, ds.maha
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


# ---------------------------------------------------------------------------
# 5. Pruning bounds (full covariances)
#
# Each bound is a lower bound ``z`` of ``sqrt(maha)``, hence an upper bound
# of the weighted log density; see :func:`_lists_full` for their derivation.
# ---------------------------------------------------------------------------


@jit(inline=True)
def _log_density_bound(ln, z):
    """Upper bound of ``ln - maha / 2`` given ``sqrt(maha) >= z``."""
    z = max(z, 0.0)
    return ln - BOUND_HALF * z * z


@jit(inline=True)
def _line_bound(X, row, means, pair_w, pair_c, b, k, ln):
    """Upper bound of component ``k``'s log density at ``X[row]``, along the line from ``mu_b``.

    ``sqrt(maha_k(x)) >= pair_w[b, k] . (x - mu_b) + pair_c[0, b, k]``; ``ln``
    is ``log_norm[k]``.
    """
    z = pair_c[0, b, k]
    for e in range(X.shape[1]):
        z += pair_w[b, k, e] * (X[row, e] - means[b, e])
    return _log_density_bound(ln, z)


# ---------------------------------------------------------------------------
# 6. Responsibility lists
#
# A chunk's responsibilities are kept as one list per component (see
# :class:`ListScratch`).  Only entries that can carry mass are listed (on
# clustered data one or two per row instead of ``k``), so normalisation and
# accumulation cost what the data needs, and each component's rows are
# gathered once, contiguously.
# ---------------------------------------------------------------------------


@jit()
def _normalize_lists(m, ls):
    """Turn listed log densities into responsibilities, in place.

    Parameters
    ----------
    m : int
        Rows in the chunk.
    ls : ListScratch
        ``vals`` holds weighted log densities on entry and responsibilities
        on return; entries whose responsibility is below
        ``exp(RESP_LOG_FLOOR)`` of the row's largest are dropped from the
        lists.  ``rowmax`` and ``rowsum`` are scratch; ``kmax`` receives each
        row's most probable component and ``lse`` its ``log sum_k exp(log
        density)``.

    Notes
    -----
    Log-sum-exp with the row maximum.  A row whose every density underflows
    to zero (maximum ``-inf``) gets ``lse = -inf`` and uniform
    responsibilities, so no NaN is produced; the caller reports the ``-inf``.
    """
    ptr, rows, vals, rowmax, kmax, rowsum, lse = ls.ptr, ls.rows, ls.vals, ls.rowmax, \
        ls.kmax, ls.rowsum, ls.lse
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
def _lists_from_log_prob(m, ls):
    """Responsibility lists from the weighted log densities ``ls.lp`` (k, >= m).

    The lists hold the entries within ``RESP_LOG_FLOOR`` of their row's
    largest, normalised (the results of :func:`_normalize_lists`); ``kmax``
    and ``lse`` receive each row's most probable component and log density.

    Notes
    -----
    Maxima and per-row counts come from loops over rows that vectorise; a
    row with one entry (most rows of clustered data) is then placed with no
    exponential, and only rows with several entries pay for them.  Rows are
    placed in increasing order, ``ptr`` serving as the insertion points.  A
    row whose every density is ``-inf`` keeps every entry (uniform
    responsibilities, ``lse = -inf``).
    """
    lp, ptr, rows, vals, rowmax, kmax, rowsum, lse = ls.lp, ls.ptr, ls.rows, ls.vals, \
        ls.rowmax, ls.kmax, ls.rowsum, ls.lse
    n_components = lp.shape[0]
    # rowsum counts each row's entries here.
    for i in range(m):
        rowmax[i] = -np.inf
        kmax[i] = 0
        rowsum[i] = 0.0
    for k in range(n_components):
        for i in range(m):
            v = lp[k, i]
            up = v > rowmax[i]
            rowmax[i] = v if up else rowmax[i]
            kmax[i] = k if up else kmax[i]
    # An entry is kept when its difference from the row's largest exceeds the
    # floor: ``mx + RESP_LOG_FLOOR`` would round back to ``mx`` for rows far
    # from every component and drop them all.  A row whose every density is
    # -inf gives NaN differences, which keep every entry.
    p = 0
    for k in range(n_components):
        c = 0
        for i in range(m):
            keep = 0 if lp[k, i] - rowmax[i] <= RESP_LOG_FLOOR else 1
            rowsum[i] += keep
            c += keep
        ptr[k] = p
        p += c
    ptr[n_components] = p
    for i in range(m):
        mx = rowmax[i]
        if rowsum[i] == 1.0:
            k = kmax[i]
            q = ptr[k]
            rows[q] = i
            vals[q] = 1.0
            ptr[k] = q + 1
            lse[i] = mx
            continue
        total = 0.0
        for k in range(n_components):
            v = lp[k, i]
            if v - mx <= RESP_LOG_FLOOR:
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
                if not lp[k, i] - mx <= RESP_LOG_FLOOR:
                    vals[ptr[k] - 1] *= inv
    # ptr[k] now ends list k: shift back to starts.
    for k in range(n_components - 1, 0, -1):
        ptr[k] = ptr[k - 1]
    ptr[0] = 0


@jit()
def _bucket_rows(m, ls, bs):
    """Counting sort (stable) of rows by ``ls.kmax``: bucket ``k`` is ``order[koff[k]:koff[k+1]]``.

    ``ls.ptr`` serves as the insertion points (the lists are written after).
    """
    kmax, ptr = ls.kmax, ls.ptr
    order, koff = bs.order, bs.koff
    n_components = koff.shape[0] - 1
    for k in range(n_components + 1):
        koff[k] = 0
    for i in range(m):
        koff[kmax[i] + 1] += 1
    for k in range(n_components):
        koff[k + 1] += koff[k]
    for k in range(n_components):
        ptr[k] = koff[k]
    for i in range(m):
        kb = kmax[i]
        order[ptr[kb]] = i
        ptr[kb] += 1


@jit()
def _append_bucket(k, ls, bs):
    """Write bucket ``k`` (its rows, their exact log densities from ``ls.lse``) at ``ls.ptr[k]``.

    Returns the position after the last entry written.
    """
    ptr, rows, vals, lse = ls.ptr, ls.rows, ls.vals, ls.lse
    order, koff = bs.order, bs.koff
    p = ptr[k]
    for j in range(koff[k], koff[k + 1]):
        rows[p] = order[j]
        vals[p] = lse[j]
        p += 1
    return p


@jit()
def _lists_full(X, start, m, model, ls, fs, bs):
    """Per-component lists of the log densities that matter, full covariances.

    Parameters
    ----------
    X : ndarray (n, d); start, m : int
        The chunk is rows ``start .. start + m - 1`` of ``X``.
    model : FullModel
        Its ``lam_min`` bounds the smallest eigenvalue of each precision
        matrix from below; its pair bounds give ``sqrt(maha_j(x)) >=
        pair_w[b, j] . (x - mu_b) + pair_c[0, b, j]`` (see Notes) and
        ``pair_c[1, b, j] >= |pair_w[b, j]|``, empty arrays switching them
        off.
    ls : ListScratch
        On return the normalised lists, with ``kmax`` and ``lse`` (see
        :func:`_normalize_lists`).
    fs : FullScratch
    bs : BucketScratch

    Returns
    -------
    int
        The exact densities computed (the work the bounds left), before
        normalisation drops the negligible ones.

    Notes
    -----
    Pruning: ``maha >= lam_min ||x - mu||^2``, so ``ub = log_norm -
    lam_min ||x - mu||^2 / 2`` bounds the log density from above at the cost
    of ``d`` operations instead of ``d (d + 1)``.  Each row first gets the
    exact density of its most promising component (rows bucketed by that
    component, so each triangular product runs over contiguous columns); a
    component whose bound lies below that exact value plus
    :data:`PRUNE_LOG_FLOOR` would get an exactly zero responsibility from
    :func:`_normalize_lists` anyway, so it is left out of the lists.  The
    few pairs that pass are checked once more against a bound along the
    line between the row's best mean ``mu_b`` and ``mu_j``: for any ``v``,
    ``(v . z)^2 <= (v^T Sigma_j v) maha_j`` (Cauchy-Schwarz), and with ``v``
    the unit vector from ``mu_j`` to ``mu_b``, ``v . (x - mu_j) = v . (x -
    mu_b) + ||mu_b - mu_j||``; on separated clusters this removes nearly
    every remaining pair (the eigenvalue bound is loose along the directions
    where ``Sigma_j`` is narrow).  The responsibilities, log-likelihoods and
    labels are those of the dense computation; on separated clusters a row
    costs one or two triangular products instead of ``k``.  A row whose best
    exact density is ``-inf`` keeps every component (it gets uniform
    responsibilities).
    """
    lp, ptr, rows, vals, rowmax, kmax, lse = ls.lp, ls.ptr, ls.rows, ls.vals, ls.rowmax, \
        ls.kmax, ls.lse
    xt, maha = fs.xt, fs.maha
    order, koff, cand = bs.order, bs.koff, bs.cand
    means, log_norm, lam_min, pair_w, pair_c = (model.means, model.log_norm, model.lam_min,
                                                model.pair_w, model.pair_c)
    n_components = means.shape[0]
    use_pairs = pair_w.shape[0] > 0
    no_dist = lse[:0]
    _transpose_chunk(X, start, m, xt)
    # Upper bounds of every density.
    for k in range(n_components):
        _sq_dist_rows(xt, m, means, k, maha)
        half = 0.5 * lam_min[k]
        ln = log_norm[k]
        for i in range(m):
            lp[k, i] = ln - half * maha[i]
    # The most promising component of each row (first of ties) into kmax,
    # its bound into rowmax and the second-best bound into lse (rows whose
    # second-best cannot matter skip the component scan below).
    for i in range(m):
        rowmax[i] = lp[0, i]
        kmax[i] = 0
        lse[i] = -np.inf
    for k in range(1, n_components):
        for i in range(m):
            v = lp[k, i]
            b = rowmax[i]
            up = v > b
            lse[i] = b if up else max(lse[i], v)
            rowmax[i] = v if up else b
            kmax[i] = k if up else kmax[i]
    # Rows bucketed by that component.
    _bucket_rows(m, ls, bs)
    # The second-best bound moves to rowmax, and lse receives the exact
    # density of each row's most promising component (in bucket order).
    for i in range(m):
        rowmax[i] = lse[i]
    for k in range(n_components):
        a = koff[k]
        _log_prob_full(X, start, order, a, koff[k + 1] - a, True, model, k, lse, no_dist, fs)
    # Threshold per row, into rowmax: that exact density plus the pruning
    # floor; NaN keeps every component of a row whose best is -inf.
    n_cand = 0
    for j in range(m):
        i = order[j]
        v = lse[j]
        lim = v + PRUNE_LOG_FLOOR if v > -np.inf else np.nan
        second = rowmax[i]
        rowmax[i] = lim
        # Rows where some other component's bound clears the threshold.
        cand[n_cand] = i
        n_cand += 0 if second <= lim else 1
    # Lists: each component's bucket, then the rows its bounds let in.
    p = 0
    for k in range(n_components):
        ptr[k] = p
        p = _append_bucket(k, ls, bs)
        c0 = p
        ln = log_norm[k]
        for j in range(n_cand):
            i = cand[j]
            kb = kmax[i]
            lim = rowmax[i]
            if kb == k or lp[k, i] <= lim:
                continue
            if use_pairs and _line_bound(X, start + i, means, pair_w, pair_c, kb, k, ln) <= lim:
                continue
            rows[p] = i
            p += 1
        _log_prob_full(X, start, rows, c0, p - c0, True, model, k, vals, no_dist, fs)
    ptr[n_components] = p
    _normalize_lists(m, ls)
    return p


@jit()
def _lists_full_hinted(X, start, m, model, ls, fs, bs, hs):
    """:func:`_lists_full` when each row's likely best component is known.

    Parameters as :func:`_lists_full`, with non-empty pair bounds; on entry
    ``ls.kmax`` holds a guess per row (last iteration's most probable
    component).  ``hs`` is a :class:`HintScratch` allocated with ``hinted``.

    Notes
    -----
    Any guess gives the same lists: its exact density only sets the
    threshold, and every other component must pass the pair bounds against
    it (first with ``w . (x - mu_b) >= -|w| |x - mu_b|``, a few scalar
    operations per pair, then the bound itself) before its exact density is
    computed.  No bound is evaluated for every (row, component) pair, which
    the unhinted path needs to find the guess, and no transposed chunk is
    needed: rows are read from ``X``.
    """
    ptr, rows, vals, rowmax, rowsum, lse = ls.ptr, ls.rows, ls.vals, ls.rowmax, ls.rowsum, \
        ls.lse
    order, koff = bs.order, bs.koff
    pair_k, pair_i, pcnt = hs.pair_k, hs.pair_i, hs.pcnt
    means, log_norm, pair_w, pair_c = model.means, model.log_norm, model.pair_w, model.pair_c
    n_features = X.shape[1]
    n_components = means.shape[0]
    no_dist = rowsum[:0]
    # Rows are read below in bucket order, which hardware prefetchers cannot
    # follow: first walk the chunk in order, one load per cache line.
    step = max(1, CACHE_LINE_BYTES // X.itemsize)
    touch = 0.0
    for i in range(start, start + m):
        for e in range(0, n_features, step):
            touch += X[i, e]
    rowsum[0] = touch  # a use of the loads, so that they are not optimised away
    _bucket_rows(m, ls, bs)
    # Per row (in bucket order): exact density of the guess into lse, squared
    # distance to its mean into rowmax; then the threshold into rowmax and
    # that distance into rowsum.
    for k in range(n_components):
        a = koff[k]
        _log_prob_full(X, start, order, a, koff[k + 1] - a, True, model, k, lse, rowmax, fs)
    for j in range(m):
        v = lse[j]
        rowsum[j] = np.sqrt(rowmax[j])
        rowmax[j] = v + PRUNE_LOG_FLOOR if v > -np.inf else np.nan
    for k in range(n_components + 1):
        pcnt[k] = 0
    n_pairs = 0
    for b in range(n_components):
        for j in range(koff[b], koff[b + 1]):
            lim = rowmax[j]
            dj = rowsum[j]
            # The most optimistic of the row's k - 1 first bounds (a loop
            # over components that vectorises); most rows stop here.
            best = -np.inf
            for k in range(n_components):
                v = _log_density_bound(log_norm[k], pair_c[0, b, k] - pair_c[1, b, k] * dj)
                best = max(best, v if k != b else -np.inf)
            if best <= lim:
                continue
            i = order[j]
            for k in range(n_components):
                if k == b:
                    continue
                ln = log_norm[k]
                if _log_density_bound(ln, pair_c[0, b, k] - pair_c[1, b, k] * dj) <= lim:
                    continue
                if _line_bound(X, start + i, means, pair_w, pair_c, b, k, ln) <= lim:
                    continue
                pair_k[n_pairs] = k
                pair_i[n_pairs] = i
                pcnt[k] += 1
                n_pairs += 1
    # Lists: each component's bucket, then its pairs.
    p = 0
    for k in range(n_components):
        ptr[k] = p
        p = _append_bucket(k, ls, bs)
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
        _log_prob_full(X, start, rows, c0, ptr[k + 1] - c0, True, model, k, vals, no_dist, fs)
    _normalize_lists(m, ls)
    return ptr[n_components]


@jit()
def _lists_full_dense(X, start, m, model, ls, fs):
    """Every exact full-covariance log density of the chunk into ``ls.lp``, then the lists.

    For per-point outputs that need every weighted log density (no pruning).
    """
    no_dist = ls.lse[:0]
    for k in range(model.means.shape[0]):
        _log_prob_full(X, start, ls.kmax, 0, m, False, model, k, ls.lp[k], no_dist, fs)
    _lists_from_log_prob(m, ls)


@jit()
def _lists_tied(X, start, m, model, ls, ds):
    """Transpose the chunk, every tied log density into ``ls.lp``, the lists.

    ``model`` is a :class:`TiedModel`.
    """
    _transpose_chunk(X, start, m, ds.xt)
    _log_prob_tied(m, model.shift, model.mean_proj, model.prec_chol, model.log_norm, ls.lp, ds)
    _lists_from_log_prob(m, ls)


@jit()
def _lists_diag(X, start, m, model, ls, ds):
    """Transpose the chunk, every diagonal or spherical log density into ``ls.lp``, the lists.

    ``model`` is a :class:`DiagModel`.
    """
    _transpose_chunk(X, start, m, ds.xt)
    _log_prob_diag(m, model.means, model.prec, model.log_norm, model.spherical, ls.lp, ds)
    _lists_from_log_prob(m, ls)


@jit()
def _lists_from_labels(labels, start, m, ls):
    """Lists of hard assignments: row ``i`` in component ``labels[start + i]``, value 1.

    The same lists as :func:`_lists_from_resp` on the one-hot matrix (rows
    ascending within each component), without forming it.
    """
    ptr, rows, vals = ls.ptr, ls.rows, ls.vals
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
def _lists_from_resp(resp, start, m, ls):
    """Lists of the non-zero entries of given responsibilities ``resp[start:start + m]``."""
    ptr, rows, vals = ls.ptr, ls.rows, ls.vals
    n_components = resp.shape[1]
    p = 0
    for k in range(n_components):
        ptr[k] = p
        for i in range(m):
            r = resp[start + i, k]
            rows[p] = i
            vals[p] = r
            p += 1 if r != 0.0 else 0
    ptr[n_components] = p


@jit()
def _lists_given(resp, labels, start, m, ls):
    """Lists of a chunk's given responsibilities: hard ``labels`` unless empty, else ``resp``."""
    if labels.shape[0] > 0:
        _lists_from_labels(labels, start, m, ls)
    else:
        _lists_from_resp(resp, start, m, ls)


# ---------------------------------------------------------------------------
# 7. Statistics
# ---------------------------------------------------------------------------


@jit()
def _accumulate_full(X, start, w, weighted, ls, shift, nk, t, s, ss):
    """Add listed responsibilities of a chunk to full-covariance statistics.

    Parameters
    ----------
    X : ndarray (n, d), dtype of X; the chunk starts at row ``start``
    w : ndarray (n,) float64 (indexed from ``start``)
    weighted : bool
    ls : ListScratch
        The chunk's responsibility lists (``ptr``, ``rows``, ``vals``).
    shift : ndarray (k, d), dtype of X
    nk : ndarray (k,) float64, updated
    t : ndarray (k, d) float64, updated: ``sum r w (x - shift_k)``
    s : ndarray (k, d, d) float64, updated (whole matrix; callers read the
        upper triangle): ``sum r w (x - shift_k)(x - shift_k)^T``
    ss : FullStatsScratch

    Notes
    -----
    Each component's rows are gathered (contiguous rows of ``X``), then
    added as rank-one updates four rows at a time: full rows of ``sl``
    vectorise, and each load and store serves four rows (rows cut to the
    upper triangle would be shorter than LLVM's vector loop and fall into
    its scalar remainder).  One chunk's sums for a component (at most a
    chunk of rows) are formed in the dtype of ``X`` in ``sl``, twice the
    lanes per vector for float32 input, and added to the float64 statistics
    once per chunk, so that across chunks everything is summed in float64.
    """
    ptr, rows, vals = ls.ptr, ls.rows, ls.vals
    dr, rr, sl = ss.dr, ss.rr, ss.sl
    n_features = X.shape[1]
    # Columns past n_features of dr stay zero (allocated so, never written).
    n_pad = dr.shape[1]
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
            for f in range(n_pad):
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
                for f in range(n_pad):
                    sl[e, f] += ((a1 * dr[j, f] + a2 * dr[j + 1, f])
                                 + (a3 * dr[j + 2, f] + a4 * dr[j + 3, f]))
            j += 4
        if j + 2 <= cnt:
            r1, r2 = rr[j], rr[j + 1]
            for e in range(n_features):
                a1 = r1 * dr[j, e]
                a2 = r2 * dr[j + 1, e]
                sl[n_features, e] += a1 + a2
                for f in range(n_pad):
                    sl[e, f] += a1 * dr[j, f] + a2 * dr[j + 1, f]
            j += 2
        if j < cnt:
            r1 = rr[j]
            for e in range(n_features):
                a1 = r1 * dr[j, e]
                sl[n_features, e] += a1
                for f in range(n_pad):
                    sl[e, f] += a1 * dr[j, f]
        for e in range(n_features):
            t[k, e] += sl[n_features, e]
            for f in range(n_features):
                s[k, e, f] += sl[e, f]


@jit()
def _accumulate_tied(X, start, m, xt, w, weighted, ls, shift, nk, t, s, ts):
    """Add a chunk to tied-covariance statistics.

    Parameters
    ----------
    X, start, m : the chunk, rows ``start .. start + m - 1`` of ``X``
    xt : ndarray (d, >= m), dtype of X: the chunk, transposed
    w, weighted : as :func:`_accumulate_full`
    ls : ListScratch
        The chunk's responsibility lists (``ptr``, ``rows``, ``vals``).
    shift : ndarray (d,), dtype of X, common to all components
    nk : ndarray (k,) float64, updated
    t : ndarray (k, d) float64, updated: ``sum r w (x - shift)``
    s : ndarray (d, d) float64, updated (upper triangle):
        ``sum w (x - shift)(x - shift)^T``
    ts : TiedStatsScratch

    Notes
    -----
    With one shift for all components, ``sum_k r_ik = 1`` removes the
    responsibilities from the scatter: ``d^2 / 2`` per row, not ``k d^2 / 2``.
    """
    ptr, rows, vals = ls.ptr, ls.rows, ls.vals
    xc, wxc = ts.xc, ts.wxc
    n_features = X.shape[1]
    n_components = t.shape[0]
    for e in range(n_features):
        ce = shift[e]
        for i in range(m):
            v = xt[e, i] - ce
            xc[e, i] = v
            wxc[e, i] = w[start + i] * v if weighted else v
    for e in range(n_features):
        for f in range(e, n_features):
            acc = 0.0
            for i in range(m):
                acc += wxc[e, i] * xc[f, i]
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
def _accumulate_diag(X, start, w, weighted, ls, shift, nk, t, s):
    """Add listed responsibilities of a chunk to diagonal statistics.

    Parameters
    ----------
    X, start, w, weighted, ls : as :func:`_accumulate_full`
    shift : ndarray (k, d), dtype of X
    nk : ndarray (k,) float64, updated
    t : ndarray (k, d) float64, updated: ``sum r w (x - shift_k)``
    s : ndarray (k, d) float64, updated: ``sum r w (x - shift_k)^2`` per
        feature

    Notes
    -----
    Spherical models use the same statistics; the M-step averages features.
    """
    ptr, rows, vals = ls.ptr, ls.rows, ls.vals
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
# 7b. The dense path: log densities and statistics as two matrix products
#
# With ``z = x - c`` about one shift ``c`` shared by all components (the
# mixture's mean), the weighted log density of component ``k`` is linear in
# the features ``phi(z) = [z, z_a z_b for a <= b]`` (diagonal type:
# ``[z, z_a^2]``; spherical: ``[z, |z|^2]``):
#
#     log_norm_k - (z - e_k)^T P_k (z - e_k) / 2
#         = const_k + phi(z) . W_k,     e_k = mu_k - c,
#
# with ``W_k = [P_k e_k, -P_k[a, a] / 2, -P_k[a, b] for a < b]`` and
# ``const_k = log_norm_k - e_k^T P_k e_k / 2``.  A block's log densities are
# then one product ``W phi^T`` and its statistics about ``c`` another,
# ``phi^T R`` (R the weighted responsibilities): both run in BLAS at close to
# its peak rate, where the per-pair loops of the listed path cannot.  The
# caller moves the statistics from ``c`` to the means afterwards
# (:meth:`SuffStats.recenter`).  Rounding: the products carry errors of
# about ``eps (|z|^2_P + |e_k|^2_P)`` in the metric of ``P_k``, so the caller
# enables this path only while every ``|e_k|^2_P`` stays small (see
# :func:`fastgmm._compute.dense_inputs`).
# ---------------------------------------------------------------------------


@jit()
def _gemm_features(X, start, m, shift, full, pt):
    """Features of rows ``start .. start + m - 1`` into the columns of ``pt`` (p, GEMM_ROWS).

    Columns ``m ..`` are zero, so that whole-block products need no
    remainder handling.  ``full``: every product ``z_a z_b`` (``a <= b``, row
    by row of the upper triangle); otherwise the squares ``z_a^2`` when ``pt``
    has ``2 d`` rows (diagonal) or their sum ``|z|^2`` when it has ``d + 1``
    (spherical; for ``d = 1`` the two coincide).
    """
    n_features = X.shape[1]
    rows = pt.shape[1]
    for i in range(m):
        for a in range(n_features):
            pt[a, i] = X[start + i, a] - shift[a]
    for a in range(n_features):
        for i in range(m, rows):
            pt[a, i] = 0
    q = n_features
    if full:
        for a in range(n_features):
            for b in range(a, n_features):
                for i in range(rows):
                    pt[q, i] = pt[a, i] * pt[b, i]
                q += 1
    elif pt.shape[0] == n_features + 1:
        for i in range(rows):
            pt[q, i] = 0
        for a in range(n_features):
            for i in range(rows):
                pt[q, i] += pt[a, i] * pt[a, i]
    else:
        for a in range(n_features):
            for i in range(rows):
                pt[q + a, i] = pt[a, i] * pt[a, i]


@jit()
def _gemm_block(X, start, m, w, weighted, dense, full, gs, g, ll, hint):
    """Dense E-step and statistics of the block of rows ``start .. start + m - 1``.

    Parameters
    ----------
    X, w, weighted : as :func:`em_stats_full`
    start, m : int
        The block; ``m <= GEMM_ROWS``.
    dense : DensePath
        Its ``shift``, ``wt`` and ``const`` are the model (see the section
        comment); ``wt`` is (k, p), where ``p`` is ``d + d (d + 1) / 2``
        (full), ``2 d`` (diagonal) or ``d + 1`` (spherical, whose squares all
        carry one weight per component: the features are ``z`` and
        ``|z|^2``).
    full : bool
        Features of the full type (else diagonal).
    gs : GemmScratch
    g : ndarray (p + 1, k) float64
        Row ``q < p`` updated with ``sum_i w_i r_ik phi_q(z_i)``, row ``p``
        with ``sum_i w_i r_ik``.
    ll : ndarray (>= 2,) float64
        ``ll[0] += sum w log p(x)``, ``ll[1]`` counts rows of zero density
        (as :func:`_sum_log_lik`).
    hint : ndarray (n,) int32 or length 0
        Unless empty, receives each row's most probable component.

    Returns
    -------
    float
        The number of responsibilities kept (at least ``exp(RESP_LOG_FLOOR)``
        of their row's largest; smaller ones are set to zero, as the lists do).
    """
    pt, lt, gt, rowmax, rowsum, kbest = gs.pt, gs.lt, gs.gt, gs.rowmax, gs.rowsum, gs.kbest
    shift, wt, const = dense.shift, dense.wt, dense.const
    n_components, n_terms = wt.shape
    rows = pt.shape[1]
    _gemm_features(X, start, m, shift, full, pt)
    np.dot(wt, pt, lt)
    for i in range(m):
        rowmax[i] = -np.inf
        kbest[i] = 0
    for k in range(n_components):
        ck = const[k]
        for i in range(m):
            v = lt[k, i] + ck
            up = v > rowmax[i]
            rowmax[i] = v if up else rowmax[i]
            kbest[i] = k if up else kbest[i]
    for i in range(m):
        rowsum[i] = 0.0
        # Zero density under every component: no NaN from -inf - -inf.
        rowmax[i] = 0.0 if rowmax[i] == -np.inf else rowmax[i]
    kept = 0.0
    for k in range(n_components):
        ck = const[k]
        for i in range(m):
            v = lt[k, i] + ck - rowmax[i]
            on = v > RESP_LOG_FLOOR
            e = _exp_nonpositive(max(v, RESP_LOG_FLOOR))
            e = e if on else 0.0
            kept += 1.0 if on else 0.0
            lt[k, i] = e
            # The stored (perhaps float32) value, so that the responsibilities
            # below sum to one in float64.
            rowsum[i] += lt[k, i]
    total = 0.0
    n_zero = 0.0
    for i in range(m):
        wi = w[start + i] if weighted else 1.0
        rs = rowsum[i]
        if rs > 0.0:
            if wi != 0.0:
                total += wi * (rowmax[i] + np.log(rs))
            rowsum[i] = wi / rs
        else:
            # Only a row of zero density has no entry at its maximum:
            # uniform responsibilities, as the lists give it.
            if wi != 0.0:
                n_zero += 1.0
            rowsum[i] = wi / n_components
            for k in range(n_components):
                lt[k, i] = 1.0
    ll[0] += total
    ll[1] += n_zero
    for k in range(n_components):
        total = 0.0
        for i in range(m):
            # The float64 value into the counts: each row's responsibilities
            # sum to one there even when lt is float32.
            r = lt[k, i] * rowsum[i]
            lt[k, i] = r
            total += r
        for i in range(m, rows):
            lt[k, i] = 0
        g[n_terms, k] += total
    np.dot(pt, lt.T, gt)
    for q in range(n_terms):
        for k in range(n_components):
            g[q, k] += gt[q, k]
    if hint.shape[0] > 0:
        for i in range(m):
            hint[start + i] = kbest[i]
    return kept


@jit(inline=True)
def _dense_next(dense, work, m, n_components, up, down):
    """Whether the next chunk takes the dense path, from what this chunk of ``m`` rows cost.

    After a listed chunk ``work`` counts the (row, component) pairs the
    bounds did not skip (full: exact densities computed; diagonal and
    spherical: entries kept), and the dense path is taken once they exceed
    the fraction ``up`` of all ``m k`` pairs.  After a dense chunk ``work``
    counts its kept entries, and the listed path is taken again once they
    fall below ``down`` per row: nearly every row then belongs to one
    component alone (separated clusters), where the bounds skip the most.
    """
    if dense:
        return work >= down * m
    return work > up * m * n_components


@jit()
def _gemm_chunk(X, start, m, w, weighted, dense, full, gs, g, ll, hint):
    """:func:`_gemm_block` over a chunk of any length, block by block.

    ``gs`` may be the empty scratch, allocated here on first use; ``ll[2]``
    counts the chunk's rows, ``dense.up`` and ``dense.down`` are the
    thresholds of :func:`_dense_next`.  Returns the scratch and whether the
    next chunk stays on the dense path.
    """
    if gs.pt.shape[1] == 0:
        gs = _gemm_scratch(X, dense.wt, True)
    kept = 0.0
    for b in range(0, m, GEMM_ROWS):
        kept += _gemm_block(X, start + b, min(GEMM_ROWS, m - b), w, weighted, dense, full, gs,
                            g, ll, hint)
    ll[2] += m
    return gs, _dense_next(True, kept, m, dense.wt.shape[0], dense.up, dense.down)


# ---------------------------------------------------------------------------
# 8. Folding slots in a fixed order
# ---------------------------------------------------------------------------


@jit()
def fold(slot, n_used, acc):
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
# 9. Drivers: fused E-step and statistics (one pass over the data)
# ---------------------------------------------------------------------------


# Tiny helpers of the drivers, inlined for the reason the allocators are.


@jit(inline=True)
def _group_chunks(g, grid, n_samples):
    """Chunks ``c_lo .. c_hi - 1`` of group ``g``: every driver's loop over a group."""
    n_chunks = (n_samples + grid.chunk_size - 1) // grid.chunk_size
    c_lo = g * grid.group
    return c_lo, min(c_lo + grid.group, n_chunks)


@jit(inline=True)
def _chunk_bounds(c, chunk_size, n_samples):
    """First row and number of rows of chunk ``c``."""
    start = c * chunk_size
    return start, min(start + chunk_size, n_samples) - start


@jit(inline=True)
def _clear_slots(g, slots):
    """Zero slot ``g`` of the statistics (``nk``, ``t``, ``s``) of ``slots``."""
    slots.nk[g] = 0.0
    slots.t[g] = 0.0
    slots.s[g] = 0.0


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


@jit()
def em_stats_full(X, w, weighted, model, dense, hints, grid, slots, g_lo, g_hi):
    """Fused E-step and statistics for full covariances.

    Parameters
    ----------
    X : ndarray (n, d) float32/float64, C-contiguous
    w : ndarray (n,) float64 (or length 0 when ``weighted`` is False)
    weighted : bool
    model : FullModel
    dense : DensePath
        With ``p = d + d (d + 1) / 2``.
    hints : Hints
    grid : Grid
    slots : Slots
        ``G >= ceil(n / (chunk_size * group))``.  Slot ``g`` receives the
        statistics of group ``g``: of its listed chunks about the means in
        ``t`` and ``s`` (see :func:`_accumulate_full`), of its dense chunks
        about ``dense.shift`` in ``g`` (see :func:`_gemm_block`), and its
        ``ll`` row.
    g_lo, g_hi : int
        The groups to process (see :func:`fastgmm._parallel.run_groups`).

    Notes
    -----
    Group ``g`` (``group`` consecutive chunks, one after another) writes only
    slot ``g`` and scratch of its own, so disjoint group ranges may run on
    different threads.  The caller folds the slots in group order
    (:func:`fold`): the summation order depends on ``chunk_size`` and
    ``group``, never on the number of threads.  Each chunk takes the listed
    or the dense path as the previous chunk of its group decided
    (:func:`_dense_next`), so the choice too depends on the data and the
    model only.
    """
    n_samples = X.shape[0]
    n_components = model.means.shape[0]
    hint = hints.best
    hinted = hints.use and model.pair_w.shape[0] > 0
    mc = min(grid.chunk_size, n_samples)
    ls = _list_scratch(n_components, mc)
    fs = _full_scratch(X, mc)
    bs = _bucket_scratch(n_components, mc)
    hs = _hint_scratch(n_components, mc, hinted)
    ss = _full_stats_scratch(X, mc)
    gs = _gemm_scratch(X, dense.wt, False)
    kmax = ls.kmax
    for g in range(g_lo, g_hi):
        _clear_slots(g, slots)
        slots.g[g] = 0.0
        slots.ll[g] = 0.0
        on_dense = dense.on and dense.first
        c_lo, c_hi = _group_chunks(g, grid, n_samples)
        for c in range(c_lo, c_hi):
            start, m = _chunk_bounds(c, grid.chunk_size, n_samples)
            if on_dense:
                gs, on_dense = _gemm_chunk(X, start, m, w, weighted, dense, True, gs, slots.g[g],
                                           slots.ll[g], hint)
                continue
            if hinted:
                for i in range(m):
                    kmax[i] = hint[start + i]
                work = _lists_full_hinted(X, start, m, model, ls, fs, bs, hs)
            else:
                work = _lists_full(X, start, m, model, ls, fs, bs)
            if hint.shape[0] > 0:
                for i in range(m):
                    hint[start + i] = kmax[i]
            _sum_log_lik(ls.lse, m, w, weighted, start, slots.ll[g])
            _accumulate_full(X, start, w, weighted, ls, model.means, slots.nk[g], slots.t[g],
                             slots.s[g], ss)
            on_dense = dense.on and _dense_next(False, work, m, n_components, dense.up,
                                                dense.down)
        slots.ll[g, 3] = 1.0 if on_dense else 0.0


@jit()
def em_stats_tied(X, w, weighted, model, grid, slots, g_lo, g_hi):
    """Fused E-step and statistics for a tied covariance.

    Parameters
    ----------
    X : ndarray (n, d) float32/float64, C-contiguous
    w : ndarray (n,) float64 (or length 0 when ``weighted`` is False)
    weighted : bool
    model : TiedModel
    grid : Grid
    slots : Slots
        Slot ``g`` receives the statistics of group ``g`` (see
        :func:`_accumulate_tied`) and its log-likelihood (``ll[g, :2]``),
        as in :func:`em_stats_full`; ``g`` is unused.
    g_lo, g_hi : int
        The groups to process.

    Notes
    -----
    Thread-safe for disjoint group ranges: per-group slots and scratch.
    """
    n_samples, n_features = X.shape
    n_components = model.mean_proj.shape[0]
    mc = min(grid.chunk_size, n_samples)
    ls = _list_scratch(n_components, mc)
    ds = _dense_scratch(X, mc, True)
    ts = _tied_stats_scratch(n_features, mc)
    for g in range(g_lo, g_hi):
        _clear_slots(g, slots)
        slots.ll[g] = 0.0
        c_lo, c_hi = _group_chunks(g, grid, n_samples)
        for c in range(c_lo, c_hi):
            start, m = _chunk_bounds(c, grid.chunk_size, n_samples)
            _lists_tied(X, start, m, model, ls, ds)
            _sum_log_lik(ls.lse, m, w, weighted, start, slots.ll[g])
            _accumulate_tied(X, start, m, ds.xt, w, weighted, ls, model.shift, slots.nk[g],
                             slots.t[g], slots.s[g], ts)


@jit()
def em_stats_diag(X, w, weighted, model, dense, grid, slots, g_lo, g_hi):
    """Fused E-step and statistics for diagonal or spherical covariances.

    Parameters
    ----------
    X : ndarray (n, d) float32/float64, C-contiguous
    w : ndarray (n,) float64 (or length 0 when ``weighted`` is False)
    weighted : bool
    model : DiagModel
    dense : DensePath
        As in :func:`em_stats_full`, with ``p = 2 d`` (diagonal) or ``d + 1``
        (spherical).
    grid : Grid
    slots : Slots
        Slot ``g`` receives the statistics of group ``g`` (see
        :func:`_accumulate_diag`; spherical models use the diagonal
        statistics, the M-step averages features) and its log-likelihood,
        as in :func:`em_stats_full`.
    g_lo, g_hi : int
        The groups to process.

    Notes
    -----
    Thread-safe for disjoint group ranges: per-group slots and scratch.
    """
    n_samples = X.shape[0]
    n_components = model.means.shape[0]
    no_hint = np.empty(0, dtype=np.int32)
    mc = min(grid.chunk_size, n_samples)
    ls = _list_scratch(n_components, mc)
    ds = _dense_scratch(X, mc, False)
    gs = _gemm_scratch(X, dense.wt, False)
    for g in range(g_lo, g_hi):
        _clear_slots(g, slots)
        slots.g[g] = 0.0
        slots.ll[g] = 0.0
        on_dense = dense.on and dense.first
        c_lo, c_hi = _group_chunks(g, grid, n_samples)
        for c in range(c_lo, c_hi):
            start, m = _chunk_bounds(c, grid.chunk_size, n_samples)
            if on_dense:
                gs, on_dense = _gemm_chunk(X, start, m, w, weighted, dense, False, gs,
                                           slots.g[g], slots.ll[g], no_hint)
                continue
            _lists_diag(X, start, m, model, ls, ds)
            _sum_log_lik(ls.lse, m, w, weighted, start, slots.ll[g])
            _accumulate_diag(X, start, w, weighted, ls, model.means, slots.nk[g], slots.t[g],
                             slots.s[g])
            on_dense = dense.on and _dense_next(False, ls.ptr[n_components], m, n_components,
                                                dense.up, dense.down)
        slots.ll[g, 3] = 1.0 if on_dense else 0.0


# ---------------------------------------------------------------------------
# 10. Drivers: statistics of given responsibilities (initialisation)
#
# One driver per covariance type, so that a fit compiles only the
# accumulation it uses.  Zero responsibilities are skipped, so one-hot
# (hard) assignments cost one component per row.
# ---------------------------------------------------------------------------


@jit()
def resp_stats_full(X, w, weighted, given, shift, grid, slots, g_lo, g_hi):
    """Statistics of full covariances for given responsibilities.

    Parameters
    ----------
    X : ndarray (n, d) float32/float64, C-contiguous
    w : ndarray (n,) float64 (or length 0 when ``weighted`` is False)
    weighted : bool
    given : Given
    shift : ndarray (k, d), dtype of X
    grid : Grid
    slots : Slots
        Slot ``g`` receives the statistics of group ``g`` (see
        :func:`_accumulate_full`); ``g`` and ``ll`` are unused.
    g_lo, g_hi : int
        The groups to process.

    Notes
    -----
    Thread-safe for disjoint group ranges: per-group slots.
    """
    n_samples = X.shape[0]
    mc = min(grid.chunk_size, n_samples)
    ls = _list_scratch(given.resp.shape[1], mc)
    ss = _full_stats_scratch(X, mc)
    for g in range(g_lo, g_hi):
        _clear_slots(g, slots)
        c_lo, c_hi = _group_chunks(g, grid, n_samples)
        for c in range(c_lo, c_hi):
            start, m = _chunk_bounds(c, grid.chunk_size, n_samples)
            _lists_given(given.resp, given.labels, start, m, ls)
            _accumulate_full(X, start, w, weighted, ls, shift, slots.nk[g], slots.t[g],
                             slots.s[g], ss)


@jit()
def resp_stats_tied(X, w, weighted, given, shift, grid, slots, g_lo, g_hi):
    """Statistics of a tied covariance for given responsibilities.

    Parameters
    ----------
    X, w, weighted, given, grid : as :func:`resp_stats_full`
    shift : ndarray (d,), dtype of X
    slots : Slots
        Slot ``g`` receives the statistics of group ``g`` (see
        :func:`_accumulate_tied`); ``g`` and ``ll`` are unused.
    g_lo, g_hi : int
        The groups to process.

    Notes
    -----
    Thread-safe for disjoint group ranges: per-group slots.
    """
    n_samples, n_features = X.shape
    mc = min(grid.chunk_size, n_samples)
    ls = _list_scratch(given.resp.shape[1], mc)
    ds = _dense_scratch(X, mc, False)
    ts = _tied_stats_scratch(n_features, mc)
    for g in range(g_lo, g_hi):
        _clear_slots(g, slots)
        c_lo, c_hi = _group_chunks(g, grid, n_samples)
        for c in range(c_lo, c_hi):
            start, m = _chunk_bounds(c, grid.chunk_size, n_samples)
            _lists_given(given.resp, given.labels, start, m, ls)
            _transpose_chunk(X, start, m, ds.xt)
            _accumulate_tied(X, start, m, ds.xt, w, weighted, ls, shift, slots.nk[g],
                             slots.t[g], slots.s[g], ts)


@jit()
def resp_stats_diag(X, w, weighted, given, shift, grid, slots, g_lo, g_hi):
    """Diagonal (and spherical) statistics for given responsibilities.

    Parameters
    ----------
    X, w, weighted, given, grid : as :func:`resp_stats_full`
    shift : ndarray (k, d), dtype of X
    slots : Slots
        Slot ``g`` receives the statistics of group ``g`` (see
        :func:`_accumulate_diag`); ``g`` and ``ll`` are unused.
    g_lo, g_hi : int
        The groups to process.

    Notes
    -----
    Thread-safe for disjoint group ranges: per-group slots.
    """
    n_samples = X.shape[0]
    ls = _list_scratch(given.resp.shape[1], min(grid.chunk_size, n_samples))
    for g in range(g_lo, g_hi):
        _clear_slots(g, slots)
        c_lo, c_hi = _group_chunks(g, grid, n_samples)
        for c in range(c_lo, c_hi):
            start, m = _chunk_bounds(c, grid.chunk_size, n_samples)
            _lists_given(given.resp, given.labels, start, m, ls)
            _accumulate_diag(X, start, w, weighted, ls, shift, slots.nk[g], slots.t[g],
                             slots.s[g])


# ---------------------------------------------------------------------------
# 11. Drivers: per-point outputs (predict, predict_proba, score_samples)
# ---------------------------------------------------------------------------


@jit()
def _write_point_outputs(start, m, ls, out):
    """Write the per-point outputs ``out`` (a :class:`PointOut`) of a chunk's normalised lists.

    Outputs of length 0 are not wanted.  ``out.out_2d`` receives the
    responsibilities when ``out.want_resp``, else the weighted log densities
    (which ``ls.lp`` must then hold for every component).
    """
    want_resp, out_2d, out_score, out_label = out
    lp, ptr, rows, vals, kmax, lse = ls.lp, ls.ptr, ls.rows, ls.vals, ls.kmax, ls.lse
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


@jit()
def point_full(X, model, grid, out, g_lo, g_hi):
    """Per-point outputs for full covariances.

    Parameters
    ----------
    X : ndarray (n, d) float32/float64, C-contiguous
    model : FullModel
    grid : Grid
        Scratch is allocated once per call, whatever the groups.
    out : PointOut
    g_lo, g_hi : int
        The groups of chunks to process.

    Notes
    -----
    Outputs of length 0 are not computed.  Thread-safe for disjoint group
    ranges: each group writes its own rows and scratch only.
    """
    n_samples = X.shape[0]
    n_components = model.means.shape[0]
    # Weighted log densities are wanted exactly for every component.
    prune = out.want_resp or out.out_2d.shape[0] == 0
    mc = min(grid.chunk_size, n_samples)
    ls = _list_scratch(n_components, mc)
    fs = _full_scratch(X, mc)
    bs = _bucket_scratch(n_components, mc)
    for g in range(g_lo, g_hi):
        c_lo, c_hi = _group_chunks(g, grid, n_samples)
        for c in range(c_lo, c_hi):
            start, m = _chunk_bounds(c, grid.chunk_size, n_samples)
            if prune:
                _lists_full(X, start, m, model, ls, fs, bs)
            else:
                _lists_full_dense(X, start, m, model, ls, fs)
            _write_point_outputs(start, m, ls, out)


@jit()
def point_tied(X, model, grid, out, g_lo, g_hi):
    """Per-point outputs for a tied covariance.

    Parameters
    ----------
    X : ndarray (n, d) float32/float64, C-contiguous
    model : TiedModel
    grid, out, g_lo, g_hi
        As :func:`point_full`.
    """
    n_samples = X.shape[0]
    mc = min(grid.chunk_size, n_samples)
    ls = _list_scratch(model.mean_proj.shape[0], mc)
    ds = _dense_scratch(X, mc, True)
    for g in range(g_lo, g_hi):
        c_lo, c_hi = _group_chunks(g, grid, n_samples)
        for c in range(c_lo, c_hi):
            start, m = _chunk_bounds(c, grid.chunk_size, n_samples)
            _lists_tied(X, start, m, model, ls, ds)
            _write_point_outputs(start, m, ls, out)


@jit()
def point_diag(X, model, grid, out, g_lo, g_hi):
    """Per-point outputs for diagonal or spherical covariances.

    Parameters
    ----------
    X : ndarray (n, d) float32/float64, C-contiguous
    model : DiagModel
    grid, out, g_lo, g_hi
        As :func:`point_full`.
    """
    n_samples = X.shape[0]
    mc = min(grid.chunk_size, n_samples)
    ls = _list_scratch(model.means.shape[0], mc)
    ds = _dense_scratch(X, mc, False)
    for g in range(g_lo, g_hi):
        c_lo, c_hi = _group_chunks(g, grid, n_samples)
        for c in range(c_lo, c_hi):
            start, m = _chunk_bounds(c, grid.chunk_size, n_samples)
            _lists_diag(X, start, m, model, ls, ds)
            _write_point_outputs(start, m, ls, out)


# ---------------------------------------------------------------------------
# 12. Tables by covariance type
#
# Drivers take the range of groups to process last;
# :func:`fastgmm._parallel.run_groups` shares them between threads, and the
# caller folds the slots with :func:`fold`.  Spherical models use the
# diagonal drivers (``spherical=True``, a (k, 1) precision factor).
# ---------------------------------------------------------------------------

#: Fused E-step and statistics, by covariance type.
EM_STATS = {"full": em_stats_full, "tied": em_stats_tied, "diag": em_stats_diag,
            "spherical": em_stats_diag}

#: Statistics of given responsibilities, by covariance type.
RESP_STATS = {"full": resp_stats_full, "tied": resp_stats_tied, "diag": resp_stats_diag,
              "spherical": resp_stats_diag}

#: Per-point outputs, by covariance type.
POINT = {"full": point_full, "tied": point_tied, "diag": point_diag, "spherical": point_diag}
