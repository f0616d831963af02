"""Dask arrays: distributed EM iterations and lazy, blockwise prediction.

Each EM iteration maps the same statistics kernel as the in-memory fit over
the blocks of rows of a Dask array, adds the per-block :class:`SuffStats`
up a tree (blocks are small to move: ``k d^2`` numbers), and brings one
:class:`SuffStats` back for the M-step.  The parameters enter the graph once
per iteration as a single task, so each worker receives them once.

Computations run on whatever scheduler Dask would use: the default
``distributed.Client`` if one exists (a local cluster or a remote one:
``Client("tcp://scheduler-host:8786")`` before calling ``fit``), else the
scheduler set with ``dask.config.set(scheduler=...)``, else Dask's threads.
Lost workers are harmless: Dask recomputes the lost blocks, and the fixed
reduction tree gives the same statistics to the last bit.

Dask is an optional dependency (``pip install fastgmm[dask]``); this module
imports it only when a Dask array is met.
"""

from __future__ import annotations

from functools import reduce

import numpy as np

from ._compute import compute_stats, point_outputs
from ._covariance import family
from ._estep import COMPLETE, BlockCache, EStep
from ._parallel import thread_limit
from ._params import GaussianParams
from ._source_base import DEFAULT_INIT_SAMPLE_SIZE, SourceBase, draw_seed, uniform_rows
from ._stats import SuffStats
from ._validation import (
    check_weight_shape,
    check_weight_total,
    check_weight_values,
    compute_dtype,
)


def _import_dask():
    try:
        import dask
        import dask.array as da
    except ImportError:  # pragma: no cover - dask is present whenever a dask array is
        raise ImportError("Dask input needs dask: pip install 'fastgmm[dask]'") from None
    return dask, da


def _as_rows_array(X, name: str = "X"):
    """Validate a Dask array's metadata; one chunk across the columns."""
    _, da = _import_dask()
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional (n_samples, n_features), got "
                         f"shape {X.shape}")
    dtype = compute_dtype(X.dtype, name)
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    if X.shape[1] == 0:
        raise ValueError(f"{name} has 0 features; at least one is required")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    if X.dtype != dtype:
        X = X.astype(dtype)
    return X


# ---------------------------------------------------------------------------
# Tasks (run on the workers)
# ---------------------------------------------------------------------------


def _block_stats(xb, wb, params: GaussianParams, n_threads: int | None,
                 estep: EStep = COMPLETE, start: int = 0) -> SuffStats:
    xb = np.ascontiguousarray(xb)
    wb = None if wb is None else np.ascontiguousarray(wb, dtype=np.float64)
    # BLAS on one thread as in every fit: the dense E-step calls it from
    # each kernel thread.
    with thread_limit(n_threads):
        return estep.stats(estep.prepare(xb, wb, start), params, BlockCache(keep=False))


def _sum_stats(*parts: SuffStats) -> SuffStats:
    return reduce(lambda a, b: a + b, parts)


def _check_block_task(xb, wb, estep: EStep = COMPLETE, start: int = 0):
    """``(error about X or "", weights all finite, weights all >= 0, total weight, observed)``.

    ``observed`` is what the E-step counts of the block's observed values
    per feature (None when it counts nothing); the error text names the
    first row the E-step refuses.
    """
    xb = np.asarray(xb)
    error = estep.block_error(xb, start)
    observed = None if error else estep.observed(estep.prepare(xb, None, start))
    if wb is None:
        return error, True, True, float(xb.shape[0]), observed
    with np.errstate(over="ignore"):
        total = float(wb.sum())
    return error, bool(np.isfinite(wb).all()), bool((wb >= 0).all()), total, observed


def _point_block(xb, params: GaussianParams, what: str, estep: EStep = COMPLETE):
    xb = np.ascontiguousarray(xb)
    error = estep.block_error(xb)
    if error:
        raise ValueError(error)
    return estep.point(xb, params, **{what: True})[what]


# ---------------------------------------------------------------------------
# The source
# ---------------------------------------------------------------------------


class DaskSource(SourceBase):
    """A Dask array as a data source for the EM loop.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Chunked along the rows (column chunks are merged).  float32 stays
        float32; other real dtypes are computed in float64.
    sample_weight : dask.array.Array or array-like of shape (n_samples,), optional
        Rechunked to match the rows of ``X``.
    init_sample_size : int, default=100_000
        Rows drawn uniformly (without replacement) and brought to the client
        for the initialisation; all rows when there are no more.
    parallel : bool, default=False
        Let each task share its block's rows between Numba threads.  Off by
        default (one thread per task), since Dask already runs blocks in
        parallel, one per worker thread.
    split_every : int, default=8
        Fan-in of the tree that adds the blocks' statistics.

    Notes
    -----
    Validation (finite values, non-negative weights) costs one pass, made
    once before the first iteration (:meth:`validate`).
    """

    def __init__(self, X, sample_weight=None, *,
                 init_sample_size: int = DEFAULT_INIT_SAMPLE_SIZE,
                 parallel: bool = False, split_every: int = 8):
        dask, da = _import_dask()
        if not isinstance(X, da.Array):
            raise TypeError(f"X must be a dask.array.Array, got {type(X).__name__}")
        X = _as_rows_array(X)
        n = X.shape[0]
        if n < 1:
            raise ValueError("X has 0 samples; at least 1 required")
        w = None
        if sample_weight is not None:
            if not isinstance(sample_weight, da.Array):
                arr = np.asarray(sample_weight)
                if arr.dtype.kind not in "biuf":
                    raise TypeError("sample_weight must be real numbers, got dtype "
                                    f"{arr.dtype}")
                check_weight_shape(arr.shape, n)
                sample_weight = da.from_array(arr, chunks=(X.chunks[0],))
            check_weight_shape(sample_weight.shape, n)
            if sample_weight.dtype.kind not in "biuf":
                raise TypeError("sample_weight must be real numbers, got dtype "
                                f"{sample_weight.dtype}")
            w = sample_weight.astype(np.float64).rechunk((X.chunks[0],))
        if not isinstance(init_sample_size, (int, np.integer)) or init_sample_size < 1:
            raise ValueError("init_sample_size must be a positive integer, got "
                             f"{init_sample_size!r}")
        if not isinstance(split_every, (int, np.integer)) or split_every < 2:
            raise ValueError(f"split_every must be an integer >= 2, got {split_every!r}")
        self.X = X
        self.sample_weight = w
        self.dtype = np.dtype(X.dtype)
        self.init_sample_size = int(init_sample_size)
        self.parallel = bool(parallel)
        self._task_threads = None if self.parallel else 1
        self.split_every = int(split_every)
        self._x_blocks = list(X.to_delayed().ravel())
        self._w_blocks = (None if w is None else list(w.to_delayed().ravel()))
        #: The E-steps whose checks the rows have passed.
        self._validated: set = set()

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def _starts(self) -> np.ndarray:
        """Index of the first row of each block."""
        return np.r_[0, np.cumsum(self.X.chunks[0])[:-1]]

    def validate(self, estep: EStep = COMPLETE) -> None:
        """One pass: values the E-step accepts, non-negative weights with a positive sum."""
        if estep in self._validated:
            return
        dask, _ = _import_dask()
        check = dask.delayed(_check_block_task, pure=True)
        starts = self._starts()
        parts = [check(xb, None if self._w_blocks is None else self._w_blocks[i],
                       estep, int(starts[i]))
                 for i, xb in enumerate(self._x_blocks)]
        results = dask.compute(*parts)
        for r in results:
            if r[0]:
                raise ValueError(r[0])
        seen = [r[4] for r in results if r[4] is not None]
        estep.check_pass(sum(seen) if seen else None, "X")
        if self.sample_weight is not None:
            check_weight_values(all(r[1] for r in results), all(r[2] for r in results))
            check_weight_total(sum(r[3] for r in results))
        self._validated.add(estep)

    @staticmethod
    def warm_up(covariance_types=("full",)) -> None:
        """Load the kernels of the given covariance types in the calling process.

        ``client.run(fastgmm.DaskSource.warm_up)`` runs it on every worker, so
        that the first iteration is not slowed by loading kernels from Numba's
        disk cache (or compiling them).

        Parameters
        ----------
        covariance_types : sequence of str, default=('full',)
        """
        warm_up(covariance_types)

    def stats(self, params: GaussianParams, estep: EStep = COMPLETE) -> SuffStats:
        """Sufficient statistics of all blocks: a map and a tree reduction.

        Each block task carries the E-step (it pickles as its class).
        """
        dask, _ = _import_dask()
        self.validate(estep)
        # One task holds the parameters; every block task depends on it, so
        # each worker fetches them once per iteration.
        params_task = dask.delayed(params, traverse=False)
        block = dask.delayed(_block_stats, pure=True)
        starts = self._starts()
        parts = [block(xb, None if self._w_blocks is None else self._w_blocks[i],
                       params_task, self._task_threads, estep, int(starts[i]))
                 for i, xb in enumerate(self._x_blocks)]
        add = dask.delayed(_sum_stats, pure=True)
        while len(parts) > 1:
            parts = [add(*parts[i:i + self.split_every])
                     for i in range(0, len(parts), self.split_every)]
        (total,) = dask.compute(parts[0])
        return total

    def sample(self, rng: np.random.RandomState,
               estep: EStep = COMPLETE) -> tuple[np.ndarray, np.ndarray | None]:
        """A uniform sample of rows (computed) for initialisation.

        Parameters
        ----------
        rng : RandomState
            Not advanced (a seed is drawn from a copy).
        estep : EStep
            The rows are validated for it first.
        """
        dask, _ = _import_dask()
        self.validate(estep)
        n = self.n_samples
        m = min(n, self.init_sample_size)
        if m == n:
            xs, ws = self.X, self.sample_weight
        else:
            idx = uniform_rows(n, m, draw_seed(rng))
            xs = self.X[idx]
            ws = None if self.sample_weight is None else self.sample_weight[idx]
        if ws is None:
            (xs,) = dask.compute(xs)
            return np.ascontiguousarray(xs), None
        xs, ws = dask.compute(xs, ws)
        return np.ascontiguousarray(xs), np.asarray(ws, dtype=np.float64)


# ---------------------------------------------------------------------------
# Lazy prediction
# ---------------------------------------------------------------------------


def lazy_point(X, params: GaussianParams, what: str, n_features: int,
               estep: EStep = COMPLETE):
    """Lazy per-row outputs of a Dask array, one task per block of rows.

    Parameters
    ----------
    X : dask.array.Array (n, n_features)
    params : GaussianParams
    what : {'labels', 'resp', 'score'}
    n_features : int
        The fitted number of features.
    estep : EStep
        Checks each block and computes its outputs (rows with NaN get their
        marginal densities with the missing-data E-step).

    Returns
    -------
    dask.array.Array
        ``(n,)`` int64 labels, ``(n, k)`` probabilities or ``(n,)`` log densities.
    """
    X = _as_rows_array(X)
    if X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but the model is expecting "
                         f"{n_features} features as input")
    # ``meta`` spares Dask a trial call of the kernel on an empty block.
    if what == "resp":
        k = params.n_components
        return X.map_blocks(_point_block, params, what, estep, dtype=X.dtype,
                            chunks=(X.chunks[0], (k,)), meta=np.empty((0, k), X.dtype))
    dtype = np.dtype(np.int64) if what == "labels" else X.dtype
    return X.map_blocks(_point_block, params, what, estep, dtype=dtype, drop_axis=1,
                        meta=np.empty((0,), dtype))


def warm_up(covariance_types=("full",)) -> None:
    """Load the kernels of the given covariance types in this process.

    Run it on every worker once, e.g. ``client.run(fastgmm.DaskSource.warm_up)``,
    so that the first iteration is not slowed by loading kernels from
    Numba's disk cache (or compiling them).

    Parameters
    ----------
    covariance_types : sequence of str, default=('full',)
        The kernels to load: statistics and per-point outputs, float64.
    """
    X = np.random.default_rng(0).normal(size=(2048, 2))
    for ctype in covariance_types:
        cov = family(ctype).unit(2, 2)
        params = GaussianParams.from_covariances(ctype, np.full(2, 0.5), X[:2].copy(), cov)
        compute_stats(X, None, params)
        point_outputs(X, params, resp=True, score=True, labels=True)
