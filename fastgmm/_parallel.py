"""Running a compiled kernel over row groups on several threads.

Every kernel in :mod:`fastgmm._kernels` is serial and releases the GIL
(``nogil``), and takes the range of row groups it should process as its last
two arguments.  :func:`run_groups` splits the groups between the calling
thread and a few pool threads, handing out consecutive blocks of groups on
demand.  Each group writes only its own statistics slot (or its own rows of
an output), and the caller folds the slots in group order afterwards, so a
result does not depend on how many threads ran or on which thread ran what.

Why not Numba's ``prange``: a parallel Numba function compiles (and LLVM
re-optimises) every helper it calls a second time, inside the parallel
region; with the helpers of the full-covariance E-step that doubled the cold
compile of a fit.  Plain threads also work with any Numba threading layer,
from several Python threads at once and after ``fork``.

The number of threads is Numba's (:func:`numba.get_num_threads`, which
``numba.set_num_threads`` and the ``n_threads`` arguments of fastgmm set per
calling thread; :func:`thread_limit` sets it for a block).  Whether a call is
shared between threads at all is decided here alone, from the number of rows
it covers (:data:`fastgmm._config.SERIAL_THRESHOLD`): results never depend on
that choice, only the time does.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from . import _config

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """The shared pool of helper threads (one fewer than Numba may use)."""
    import numba

    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(1, numba.config.NUMBA_NUM_THREADS - 1),
                                       thread_name_prefix="fastgmm")
        return _pool


def _forget_pool() -> None:
    """After ``fork`` the child has none of the parent's threads: start afresh."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def n_threads() -> int:
    """Threads a parallel kernel call of the calling thread may use."""
    import numba

    return numba.get_num_threads()


def run_groups(fn: Callable, args: tuple, n_groups: int, n_rows: int) -> None:
    """Call ``fn(*args, lo, hi)`` over blocks ``[lo, hi)`` covering ``range(n_groups)``.

    Parameters
    ----------
    fn : compiled kernel
        Must process groups ``lo`` to ``hi - 1`` with no shared writes
        between groups (slots or output rows of its own per group).
    args : tuple
        The kernel's arguments before the group range.
    n_groups : int
    n_rows : int
        Rows the groups cover.  From :data:`fastgmm._config.SERIAL_THRESHOLD`
        rows on, the groups are shared between up to :func:`n_threads`
        threads; below it one call runs on the calling thread, since handing
        work to a helper thread would cost more than it saves.
    """
    threads = min(n_threads(), n_groups) if n_rows >= _config.SERIAL_THRESHOLD else 1
    if threads <= 1:
        fn(*args, 0, n_groups)
        return
    # Guided hand-out: each block is the remaining groups over twice the
    # threads, so blocks shrink towards the end and the threads finish
    # within about one group of each other with few hand-offs, and a thread
    # that is slow (or shared with another fit) leaves its share to the
    # others.
    lock = threading.Lock()
    state = {"next": 0}

    def stop() -> None:
        with lock:
            state["next"] = n_groups  # the others stop after their block

    def work() -> None:
        while True:
            with lock:
                lo = state["next"]
                if lo >= n_groups:
                    return
                state["next"] = hi = lo + max(1, (n_groups - lo) // (2 * threads))
            try:
                fn(*args, lo, hi)
            except BaseException:
                stop()
                raise

    pool = _executor()
    futures = [pool.submit(work) for _ in range(threads - 1)]
    try:
        work()
    except BaseException:
        stop()
        raise
    finally:
        # Helpers not started yet (the pool was busy with another fit) have
        # nothing left to do; wait only for those that run.
        running = [f for f in futures if not f.cancel()]
        for f in running:
            f.exception()
    for f in running:
        f.result()


def fold_slots(slots: tuple, n_used: int, accs: tuple) -> None:
    """``acc += slot[0] + ... + slot[n_used - 1]``, in that order, for each pair.

    The fixed-order sum of the per-group (or per-chunk) slots that
    :func:`run_groups` had written.  The accumulators must be C-contiguous
    (their flat views are written).
    """
    from ._kernels import fold

    for slot, acc in zip(slots, accs, strict=True):
        fold(slot.reshape(slot.shape[0], -1), n_used, acc.reshape(-1))


class _SingleThreadBLAS:
    """Reference-counted "BLAS uses one thread" for the duration of fits.

    The parallelism of fastgmm is its own; BLAS and LAPACK only see the
    M-step's small matrices, where a BLAS thread pool is pure overhead and
    its spinning threads compete with the kernels' for the cores.  The first
    caller in caps BLAS at one thread and the last one out restores it, so
    concurrent fits from several Python threads do not undo each other.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._controller = None
        self._limiter = None

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                if self._controller is None:
                    from threadpoolctl import ThreadpoolController

                    from ._params import load_lapack

                    # The controller sees only the libraries loaded when it is
                    # made, so scipy's own BLAS (the M-step's) is loaded first.
                    load_lapack()
                    self._controller = ThreadpoolController()
                self._limiter = self._controller.limit(limits=1, user_api="blas")
            self._depth += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._limiter is not None:
                self._limiter.restore_original_limits()
                self._limiter = None


_single_thread_blas = _SingleThreadBLAS()


@contextmanager
def thread_limit(n_threads: int | None) -> Iterator[int]:
    """Numba threads for the block (``None``: unchanged), BLAS on one thread.

    Values above the number of threads Numba started with are clipped to it.
    Both settings are restored afterwards.
    """
    with _single_thread_blas, numba_threads(n_threads) as n:
        yield n


@contextmanager
def numba_threads(n_threads: int | None) -> Iterator[int]:
    """Numba threads of the calling thread for the block (``None``: unchanged).

    Values above the number of threads Numba started with are clipped to it;
    the previous setting is restored afterwards.
    """
    import numba

    old = numba.get_num_threads()
    n = old if n_threads is None else max(1, min(int(n_threads),
                                                 numba.config.NUMBA_NUM_THREADS))
    if n == old:
        yield n
        return
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(old)
