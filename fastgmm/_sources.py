"""Data sources: everything the EM loop knows about the data.

The EM loop (:func:`fastgmm._em.run_em`), the initialisation and the repair
of degenerate components see the data only through a *source*, an object
with:

``n_samples``, ``n_features``, ``dtype``, ``feature_names``
    Rows (``None`` while unknown), columns, the compute dtype (float32 or
    float64), and column names when the data carried them.
``validate(estep)``
    Checks the data once (values, weights); a pass over it where needed.
``start_run()``
    Forgets what earlier passes left behind to save work (per-row hints),
    so that each EM run gives the same bits whatever ran before it.
``stats(params, estep) -> SuffStats``
    The sufficient statistics of all rows under ``params``: one pass.
``sample(rng, estep) -> (X_sample, w_sample)``
    Rows for the initialisation: a uniform sample of at most
    ``init_sample_size`` rows (all rows, in order, when there are no more).
``worst_explained(params, count, estep)``
    The ``count`` rows of lowest density under ``params`` (for re-seeding
    empty components), or ``None`` where finding them would cost a pass
    the source cannot afford.

The E-step (:mod:`fastgmm._estep`: complete rows, or marginalising missing
entries) is handed to every call that reads rows, default
:data:`~fastgmm._estep.COMPLETE`: a source delivers blocks of rows and
never knows which E-step runs on them.

:class:`ArraySource` holds an in-memory array; :class:`MemmapSource` and
:class:`IterableSource` read their rows block by block and add up the
blocks' statistics, so memory stays bounded by one block whatever the
number of rows; :class:`fastgmm._dask.DaskSource` maps the blocks of a Dask
array.  :func:`make_source` picks the source for what the user passed.
"""

from __future__ import annotations

import mmap
import os
import sys
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from . import _config
from ._compute import RowHints, point_outputs
from ._estep import COMPLETE, BlockCache, EStep
from ._params import GaussianParams
from ._source_base import (  # noqa: F401  (uniform_rows: re-exported)
    DEFAULT_INIT_SAMPLE_SIZE,
    SourceBase,
    draw_seed,
    uniform_rows,
)
from ._stats import SuffStats
from ._validation import (
    check_array,
    check_sample_weight,
    check_weight_block,
    check_weight_shape,
    check_weight_total,
    compute_dtype,
    feature_names,
)

#: Bytes of one block of rows read from a memory map (the default block size).
DEFAULT_BLOCK_BYTES = 32 * 2**20

def _as_block(xb, dtype: np.dtype) -> np.ndarray:
    """Native-order, C-contiguous block in ``dtype`` (a plain ndarray)."""
    return np.ascontiguousarray(xb, dtype=dtype).view(np.ndarray)


class _ArrayShape:
    """Rows and columns of a source that holds its data as an array ``X``."""

    X: np.ndarray

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]


# ---------------------------------------------------------------------------
# In-memory arrays
# ---------------------------------------------------------------------------


class ArraySource(_ArrayShape, SourceBase):
    """In-memory data for the EM loop.

    Parameters
    ----------
    X : ndarray (n, d), validated, C-contiguous float32/float64
    sample_weight : ndarray (n,) float64 or None, validated
    feature_names : ndarray of str, optional
        Column names of the data the user passed.

    Notes
    -----
    What an E-step prepares from the rows (for missing data, the rows
    grouped by pattern: a copy of the rows with NaN) is made on first use
    and kept, with the E-step's workspace and per-row hints, for every later
    pass with that E-step.
    """

    def __init__(self, X: np.ndarray, sample_weight: np.ndarray | None = None,
                 feature_names: np.ndarray | None = None):
        self.X = X
        self.sample_weight = sample_weight
        self.feature_names = feature_names
        self._caches: dict[EStep, BlockCache] = {}

    @property
    def dtype(self):
        return self.X.dtype

    def _cache(self, estep: EStep) -> BlockCache:
        """The E-step's cache of the rows, preparing them on first use."""
        cache = self._caches.get(estep)
        if cache is None:
            cache = BlockCache(keep=True)
            cache.prepared = estep.prepare(self.X, self.sample_weight)
            self._caches[estep] = cache
        return cache

    def validate(self, estep: EStep = COMPLETE) -> None:
        """Prepare the rows for ``estep`` and check that they are enough for a fit."""
        cache = self._cache(estep)
        estep.check_pass(estep.observed(cache.prepared), "X", self.feature_names)

    def start_run(self) -> None:
        """Drop the per-row hints of earlier passes (they only save work)."""
        for estep, cache in self._caches.items():
            cache.forget()
            estep.forget(cache.prepared)

    def stats(self, params: GaussianParams, estep: EStep = COMPLETE) -> SuffStats:
        """Sufficient statistics of all rows under ``params``.

        The slots and the per-row hints of the E-step are kept between calls
        with parameters of the same shape.
        """
        cache = self._cache(estep)
        return estep.stats(cache.prepared, params, cache)

    def sample(self, rng: np.random.RandomState,
               estep: EStep = COMPLETE) -> tuple[np.ndarray, np.ndarray | None]:
        """All rows: the initialisation subsamples them itself where it pays."""
        return self.X, self.sample_weight

    def worst_explained(self, params: GaussianParams, count: int,
                        estep: EStep = COMPLETE) -> list[tuple[int, np.ndarray]] | None:
        """``count`` rows of lowest density under ``params``, distinct where possible.

        Rows of zero weight are never chosen; once a row is chosen, every row
        equal to it is passed over, unless fewer distinct rows remain than
        asked for (then seeds are shared).

        Returns
        -------
        list of (row index, row)
        """
        if not estep.seeds_from_rows(self._cache(estep).prepared):
            # A row with NaN cannot seed a mean: split the heaviest component instead.
            return None
        X = self.X
        scores = point_outputs(X, params, score=True)["score"].astype(np.float64)
        if self.sample_weight is not None:
            scores[self.sample_weight <= 0] = np.inf
        eligible = scores.copy()
        chosen = []
        for _ in range(count):
            row = int(np.argmin(scores))  # a -inf score (zero density) is the worst
            if scores[row] == np.inf:
                row = int(np.argmin(eligible))
            chosen.append((row, X[row]))
            scores[(X == X[row]).all(axis=1)] = np.inf
        return chosen


class _BlockSource(SourceBase):
    """Statistics as the sum of per-block statistics (out-of-core sources)."""

    dtype: np.dtype
    #: Whether every pass yields the same rows in the same order, starting at
    #: the row index each block comes with (then per-row hints can be kept).
    _same_rows_each_pass = False
    _hints: RowHints | None = None
    _hints_key: tuple | None = None

    def _blocks(self, estep: EStep) -> Iterator[tuple[np.ndarray, np.ndarray | None, int]]:
        """``(X_block, w_block, first row)`` in order, checked for ``estep``."""
        raise NotImplementedError

    def _row_hints(self, params: GaussianParams) -> RowHints | None:
        """Hints of the full-covariance E-step, kept between passes.

        Only where the rows come back in the same order and the hints (one
        int32 per row) fit in :data:`fastgmm._config.HINT_BUDGET_BYTES`, so
        that memory stays bounded whatever the number of rows.
        """
        if not self._same_rows_each_pass or not params.family.pruned:
            return None
        n = self.n_samples
        if n is None or 4 * n > _config.HINT_BUDGET_BYTES:
            return None
        key = (n, params.n_components)
        if self._hints is None or self._hints_key != key:
            self._hints, self._hints_key = RowHints(n), key
        return self._hints

    def stats(self, params: GaussianParams, estep: EStep = COMPLETE) -> SuffStats:
        """Sufficient statistics of all rows under ``params`` (one pass).

        Blocks are visited in order and their statistics added in that
        order, so the result does not depend on timing or thread count (nor
        on the hints, which only save work).
        """
        cache = BlockCache(keep=False)
        hints = self._row_hints(params)
        total = None
        observed = None
        for xb, wb, lo in self._blocks(estep):
            cache.row_hints = None if hints is None else hints.rows(lo, xb.shape[0])
            block = estep.prepare(xb, wb, lo)
            seen = estep.observed(block)
            if seen is not None:
                observed = seen if observed is None else observed + seen
            part = estep.stats(block, params, cache)
            total = part if total is None else total + part
        if total is None:
            raise ValueError("the data source yielded no rows")
        estep.check_pass(observed, "X")
        if hints is not None:
            hints.valid = True
        return total


# ---------------------------------------------------------------------------
# Memory maps and .npy files
# ---------------------------------------------------------------------------


class MemmapSource(_ArrayShape, _BlockSource):
    """Rows of a ``.npy`` file or an :class:`numpy.memmap`, read block by block.

    Each EM iteration reads the rows in blocks of ``block_size``, computes
    their statistics with the same kernels as the in-memory fit and adds
    them up.  After a block is used its pages are dropped from the process
    (``madvise(MADV_DONTNEED)``; they stay in the operating system's file
    cache), so the resident memory stays bounded by about one block whatever
    the file size.  For full covariances the most probable component of each
    row is kept between iterations (one int32 per row, at most 128 MiB: up
    to 32M rows; none beyond), which makes the later E-steps faster; results
    do not depend on it.

    Parameters
    ----------
    X : str, os.PathLike or numpy.memmap
        Path of a ``.npy`` file (opened read-only as a memory map), or a 2-D
        memory map (any row order; C order reads fastest).
    sample_weight : array-like of shape (n_samples,), optional
        May itself be a memory map; it is read block by block too.
    block_size : int, optional
        Rows per block; default: about 32 MiB of rows.  Rounded up to a
        multiple of the kernels' chunk size.
    init_sample_size : int, default=100_000
        Rows drawn uniformly (without replacement) for the initialisation;
        all rows, in order, when there are no more.

    Notes
    -----
    Pages are dropped where Python's ``mmap`` offers ``madvise`` with
    ``MADV_DONTNEED`` (Linux); elsewhere, and for copy-on-write maps
    (``mode='c'``, whose private pages hold the caller's changes), the rows
    are read correctly but without the memory bound.  Rows are validated
    (finite values) on the first pass over the data.
    """

    _same_rows_each_pass = True

    def __init__(self, X, sample_weight=None, *, block_size: int | None = None,
                 init_sample_size: int = DEFAULT_INIT_SAMPLE_SIZE):
        if isinstance(X, (str, os.PathLike)):
            path = os.fspath(X)
            if not path.endswith(".npy"):
                raise ValueError(f"X is a path but not a .npy file: {path!r}; save the data "
                                 "with numpy.save, or pass a numpy.memmap")
            if not os.path.isfile(path):
                raise ValueError(f"X: no such .npy file: {path!r}")
            try:
                X = np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError as exc:
                raise ValueError(f"X: cannot memory-map {path!r}: {exc}") from None
        if not isinstance(X, np.ndarray):
            raise TypeError(f"X must be a .npy path or a numpy.memmap, got {type(X).__name__}")
        if X.ndim != 2:
            raise ValueError(f"X must be 2-dimensional (n_samples, n_features), got shape "
                             f"{X.shape}")
        n, d = X.shape
        if n < 1 or d < 1:
            raise ValueError(f"X has shape {X.shape}; at least one sample and one feature "
                             "are required")
        self.X = X
        self.dtype = compute_dtype(X.dtype)
        if sample_weight is not None:
            check_weight_shape(np.shape(sample_weight), n)
        self.sample_weight = sample_weight
        if block_size is None:
            block_size = DEFAULT_BLOCK_BYTES // (8 * d)
        if not isinstance(block_size, (int, np.integer)) or isinstance(block_size, bool) \
                or block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
        c = _config.FULL_CHUNK_SIZE  # a multiple of every type's chunk
        self.block_size = int(-(-int(block_size) // c) * c)
        if not isinstance(init_sample_size, (int, np.integer)) or init_sample_size < 1:
            raise ValueError("init_sample_size must be a positive integer, got "
                             f"{init_sample_size!r}")
        self.init_sample_size = int(init_sample_size)
        #: The E-steps whose checks a whole pass over the rows has passed.
        self._validated: set = set()
        self._weights_checked = False
        self._maps = [m for m in (_mmap_of(X), _mmap_of(sample_weight)) if m is not None]

    def _release(self) -> None:
        for mm in self._maps:
            _drop_pages(mm)

    def validate(self, estep: EStep = COMPLETE) -> None:
        """Check the weights now, a pass over them alone; the rows wait for the first pass.

        The initialisation already weighs its sample, so weights whose total
        is zero or overflows must be refused before it, by name.
        """
        if self.sample_weight is None or self._weights_checked:
            return
        n, total = self.n_samples, 0.0
        try:
            for lo in range(0, n, self.block_size):
                hi = min(lo + self.block_size, n)
                wb = check_weight_block(self.sample_weight[lo:hi], hi - lo, lo)
                with np.errstate(over="ignore"):
                    total += float(wb.sum())
        finally:
            self._release()
        check_weight_total(total)
        self._weights_checked = True

    def _rows(self, lo: int, hi: int, check: EStep | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows ``lo:hi`` and their weights, checked for the E-step ``check`` (None: not)."""
        xb = _as_block(self.X[lo:hi], self.dtype)
        if check is not None:
            check.check_block(xb, lo)
        wb = None
        if self.sample_weight is not None:
            wb = self.sample_weight[lo:hi]
            wb = (check_weight_block(wb, hi - lo, lo) if check is not None
                  else np.array(wb, dtype=np.float64))
        return xb, wb

    def _blocks(self, estep):
        check = None if estep in self._validated else estep
        n = self.n_samples
        total_w = 0.0
        try:
            for lo in range(0, n, self.block_size):
                hi = min(lo + self.block_size, n)
                xb, wb = self._rows(lo, hi, check)
                if wb is not None:
                    with np.errstate(over="ignore"):
                        total_w += float(wb.sum())
                yield xb, wb, lo
                del xb, wb
                self._release()
        finally:
            self._release()
        if check is not None:
            if self.sample_weight is not None:
                check_weight_total(total_w)
                self._weights_checked = True
            self._validated.add(estep)

    def sample(self, rng: np.random.RandomState,
               estep: EStep = COMPLETE) -> tuple[np.ndarray, np.ndarray | None]:
        """A uniform sample of rows for initialisation, read block by block.

        Parameters
        ----------
        rng : RandomState
            Not advanced (a seed is drawn from a copy).
        estep : EStep
            Checks the rows read.

        Returns
        -------
        X_sample : ndarray (m, n_features)
        w_sample : ndarray (m,) or None
        """
        n = self.n_samples
        m = min(n, self.init_sample_size)
        if m == n:
            idx = None
        else:
            idx = uniform_rows(n, m, draw_seed(rng))
        xs = np.empty((m, self.n_features), dtype=self.dtype)
        ws = None if self.sample_weight is None else np.empty(m)
        filled = 0
        try:
            for lo in range(0, n, self.block_size):
                hi = min(lo + self.block_size, n)
                if idx is None:
                    sel = slice(None)
                    count = hi - lo
                else:
                    a, b = np.searchsorted(idx, [lo, hi])
                    sel = idx[a:b] - lo
                    count = b - a
                    if count == 0:
                        continue
                xb, wb = self._rows(lo, hi, estep)
                xs[filled:filled + count] = xb[sel]
                if ws is not None:
                    ws[filled:filled + count] = wb[sel]
                filled += count
                del xb, wb
                self._release()
        finally:
            self._release()
        return xs, ws


def _mmap_of(arr):
    """The :class:`mmap.mmap` behind ``arr`` if its pages may be dropped, else None."""
    mm = getattr(arr, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return None
    if getattr(arr, "mode", "r") == "c":
        # Dropping private copy-on-write pages would discard the caller's edits.
        return None
    return mm


def _drop_pages(mm) -> None:
    """Drop the map's pages from this process; the file cache keeps them."""
    try:
        mm.madvise(mmap.MADV_DONTNEED, 0, len(mm))
    except (OSError, ValueError):  # closed map, or a platform that refuses
        pass


# ---------------------------------------------------------------------------
# Chunk iterators
# ---------------------------------------------------------------------------


class IterableSource(_BlockSource):
    """Rows delivered as chunks by a callable, one fresh iterator per pass.

    Parameters
    ----------
    chunks : callable
        ``chunks()`` returns an iterable over the data, in the same order on
        every call.  Each item is an array of shape ``(n_i, n_features)`` or a
        tuple ``(X_i, sample_weight_i)``.  Memory stays bounded by the
        largest chunk (plus the initialisation sample).
    init_sample_size : int, default=100_000
        Size of the uniform reservoir sample used for initialisation (one
        extra pass); all rows, in order, when there are no more.

    Notes
    -----
    The first chunk fixes the number of features and the compute dtype
    (float32 stays float32, anything else becomes float64).  Every pass must
    yield the same number of rows; a different count raises ``ValueError``.
    """

    def __init__(self, chunks: Callable[[], Iterable], *,
                 init_sample_size: int = DEFAULT_INIT_SAMPLE_SIZE):
        if not callable(chunks):
            raise TypeError(f"chunks must be a callable returning an iterator of arrays, "
                            f"got {type(chunks).__name__}")
        if not isinstance(init_sample_size, (int, np.integer)) or init_sample_size < 1:
            raise ValueError("init_sample_size must be a positive integer, got "
                             f"{init_sample_size!r}")
        self.chunks = chunks
        self.init_sample_size = int(init_sample_size)
        self.dtype: np.dtype | None = None
        self._n_features: int | None = None
        self._n_samples: int | None = None
        self._weighted: bool | None = None

    @property
    def n_samples(self) -> int | None:
        """Rows per pass (``None`` before the first pass)."""
        return self._n_samples

    @property
    def n_features(self) -> int:
        if self._n_features is None:
            for _ in self._iter_chunks(None, count=False):
                break
            if self._n_features is None:
                raise ValueError("the chunk factory yielded no rows")
        return self._n_features

    def _iter_chunks(self, estep: EStep | None, count: bool = True):
        """The chunks as ``(X, w, first row)``, checked for ``estep`` (None: shapes only)."""
        it = self.chunks()
        try:
            it = iter(it)
        except TypeError:
            raise TypeError("chunks() must return an iterable of arrays, got "
                            f"{type(it).__name__}") from None
        n = 0
        total_w = 0.0
        for i, item in enumerate(it):
            if isinstance(item, tuple):
                if len(item) != 2:
                    raise ValueError(f"chunk {i} is a tuple of length {len(item)}; expected "
                                     "an array or (X, sample_weight)")
                xc, wc = item
            else:
                xc, wc = item, None
            xc = check_array(xc, name=f"chunk {i}", min_samples=0,
                             allow_nan=estep is None or estep.allow_nan)
            if estep is not None and estep.allow_nan:
                # check_array refused NaN for the others, and infinity for all.
                estep.check_block(xc, n, f"chunk {i}")
            rows = xc.shape[0]
            if self._n_features is None:
                self._n_features = xc.shape[1]
                self.dtype = xc.dtype
            elif xc.shape[1] != self._n_features:
                raise ValueError(f"chunk {i} has {xc.shape[1]} features; earlier chunks "
                                 f"had {self._n_features}")
            if xc.dtype != self.dtype:
                xc = xc.astype(self.dtype)
            weighted = wc is not None
            if self._weighted is None:
                self._weighted = weighted
            elif weighted != self._weighted:
                raise ValueError(f"chunk {i} {'has' if weighted else 'lacks'} sample weights "
                                 f"unlike earlier chunks; give weights for all chunks or none")
            if weighted:
                wc = check_weight_block(wc, rows, n)
                with np.errstate(over="ignore"):
                    total_w += float(wc.sum())
            if rows == 0:
                continue
            yield xc, wc, n
            n += rows
        if not count:
            return
        if n == 0:
            raise ValueError("the chunk factory yielded no rows")
        if self._weighted:
            check_weight_total(total_w)
        if self._n_samples is None:
            self._n_samples = n
        elif n != self._n_samples:
            raise ValueError(f"the chunk factory yielded {n} rows on this pass but "
                             f"{self._n_samples} before; chunks() must return the same data "
                             "on every call")

    def _blocks(self, estep):
        return self._iter_chunks(estep)

    def sample(self, rng: np.random.RandomState,
               estep: EStep = COMPLETE) -> tuple[np.ndarray, np.ndarray | None]:
        """A uniform reservoir sample of rows (one pass over the chunks).

        Parameters
        ----------
        rng : RandomState
            Not advanced (a seed is drawn from a copy).
        estep : EStep
            Checks the rows read.

        Returns
        -------
        X_sample : ndarray (m, n_features)
        w_sample : ndarray (m,) or None
        """
        size = self.init_sample_size
        gen = np.random.default_rng(draw_seed(rng))
        res_x = res_w = None
        filled = 0
        for xc, wc, lo in self._iter_chunks(estep):
            if res_x is None:
                res_x = np.empty((size, xc.shape[1]), dtype=xc.dtype)
                res_w = None if wc is None else np.empty(size)
            rows = xc.shape[0]
            take = min(rows, size - filled)
            if take > 0:
                res_x[filled:filled + take] = xc[:take]
                if res_w is not None:
                    res_w[filled:filled + take] = wc[:take]
                filled += take
            if take < rows:
                # Algorithm R: row j (0-based, global) replaces a uniform
                # slot with probability size / (j + 1); the later of two rows
                # aiming at one slot wins, as in the sequential algorithm.
                j = lo + np.arange(take, rows)
                slot = (gen.random(j.shape[0]) * (j + 1)).astype(np.int64)
                keep = np.flatnonzero(slot < size)
                if keep.size:
                    rev = keep[::-1]
                    slots, first = np.unique(slot[rev], return_index=True)
                    rows_kept = take + rev[first]
                    res_x[slots] = xc[rows_kept]
                    if res_w is not None:
                        res_w[slots] = wc[rows_kept]
        return res_x[:filled].copy(), None if res_w is None else res_w[:filled].copy()


# ---------------------------------------------------------------------------
# Dispatch from GaussianMixture.fit
# ---------------------------------------------------------------------------


def is_dask_array(obj) -> bool:
    """Whether ``obj`` is a Dask array (without importing Dask)."""
    if "dask.array" not in sys.modules:
        return False
    import dask.array as da
    return isinstance(obj, da.Array)


def is_source(obj) -> bool:
    """Whether ``obj`` is already a data source (``stats`` and ``sample``)."""
    return callable(getattr(obj, "stats", None)) and callable(getattr(obj, "sample", None))


def make_source(X, sample_weight=None, estep: EStep = COMPLETE):
    """The source for what the user passed as ``X`` (validated for ``estep``).

    An array-like gives an :class:`ArraySource` (validated by
    :func:`~fastgmm._validation.check_array`), ``str``/``os.PathLike``
    (``.npy``) and :class:`numpy.memmap` a :class:`MemmapSource`, a callable
    an :class:`IterableSource`, a Dask array a
    :class:`fastgmm._dask.DaskSource`; a source is returned as it is (the
    E-step is handed to each of its calls, so it needs no change).
    """
    if is_source(X):
        if sample_weight is not None:
            raise ValueError("sample_weight must be given to the data source itself, "
                             "not to fit, when X is a data source")
        return X
    if isinstance(X, (str, os.PathLike, np.memmap)):
        return MemmapSource(X, sample_weight)
    if is_dask_array(X):
        from ._dask import DaskSource
        return DaskSource(X, sample_weight)
    if callable(X) and not isinstance(X, np.ndarray) and not hasattr(X, "__array__"):
        if sample_weight is not None:
            raise ValueError("sample_weight cannot be given with a chunk factory; yield "
                             "(X_chunk, weight_chunk) tuples instead")
        return IterableSource(X)
    Xa = check_array(X, allow_nan=estep.allow_nan)
    return ArraySource(Xa, check_sample_weight(sample_weight, Xa.shape[0]), feature_names(X))


def per_point(X, params: GaussianParams, n_features: int, validate: Callable,
              estep: EStep = COMPLETE, **what) -> dict:
    """Per-point outputs (``labels``, ``resp``, ``score``) for what the user passed.

    A Dask array gives lazy Dask arrays, one task per block of rows;
    anything else goes through ``validate`` (which returns a checked array)
    and the E-step's :meth:`~fastgmm._estep.EStep.point`.
    """
    if is_dask_array(X):
        from ._dask import lazy_point

        return {key: lazy_point(X, params, key, n_features, estep) for key in what}
    return estep.point(validate(X), params, **what)
