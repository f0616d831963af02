"""The EM loop: iterations, convergence, restarts, progress and callbacks.

This is the only EM loop in fastgmm.  It sees the data only through a
*source*: an object with ``stats(params) -> SuffStats``.  In-memory arrays,
memory maps, chunk iterators and Dask arrays differ only in their source.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import _config, _parallel, _stats
from ._stats import (GaussianParams, RowHints, StatsWorkspace, SuffStats, compute_stats,
                     kernel_inputs)
from ._validation import ConvergenceWarning


class _SingleThreadBLAS:
    """Reference-counted "BLAS uses one thread" for the duration of fits.

    The parallelism of fastgmm is Numba's; BLAS/LAPACK only ever see tiny
    matrices (the M-step's d x d factorisations), where OpenBLAS's own thread
    pool is pure overhead and, on a busy machine, costs 30x in wake-ups.  The
    first caller in caps BLAS at one thread, the last one out restores it, so
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

                    # The controller only sees libraries loaded when it is
                    # made: load scipy's own OpenBLAS (the M-step's) first,
                    # or its threads would keep spinning next to Numba's
                    # after every factorisation (measured: 2-thread E-steps
                    # 0.12-0.17 s instead of 0.09-0.13 s at n = 1e6).
                    _stats._linalg()
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
def thread_limit(n_threads: int | None):
    """Numba threads for the block (``None``: unchanged), BLAS on one thread.

    Values above the number of threads Numba started with are clipped to it.
    Both settings are restored afterwards.
    """
    import numba

    old = numba.get_num_threads()
    n = old if n_threads is None else max(1, min(int(n_threads),
                                                 numba.config.NUMBA_NUM_THREADS))
    with _single_thread_blas:
        if n == old:
            yield n
            return
        numba.set_num_threads(n)
        try:
            yield n
        finally:
            numba.set_num_threads(old)


def use_parallel(n_samples: int) -> bool:
    """Whether kernels over ``n_samples`` rows may share them between threads.

    Small inputs run on the calling thread alone (no hand-off to the pool).
    The compiled code and the summation order are the same either way (see
    :mod:`fastgmm._parallel`), so results do not depend on this choice.
    """
    return n_samples >= _config.SERIAL_THRESHOLD


class ArraySource:
    """In-memory data for the EM loop.

    Parameters
    ----------
    X : ndarray (n, d), validated, C-contiguous float32/float64
    sample_weight : ndarray (n,) float64 or None
    parallel : bool, optional
        Defaults to :func:`use_parallel`.
    """

    def __init__(self, X: np.ndarray, sample_weight: np.ndarray | None = None,
                 parallel: bool | None = None):
        self.X = X
        self.sample_weight = sample_weight
        self.parallel = use_parallel(X.shape[0]) if parallel is None else parallel
        self._workspace: StatsWorkspace | None = None
        self._hints: RowHints | None = None

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def dtype(self):
        return self.X.dtype

    def stats(self, params: GaussianParams) -> SuffStats:
        """Sufficient statistics of all rows under ``params``."""
        ws = self._workspace
        if (ws is None or ws.covariance_type != params.covariance_type
                or ws.shapes[1] != (params.n_components, params.n_features)):
            ws = self._workspace = StatsWorkspace(
                params.covariance_type, params.n_components, params.n_features,
                _parallel.n_threads(), self.X.shape[0])
            self._hints = RowHints(self.X.shape[0])
        return compute_stats(self.X, self.sample_weight, params, ws, self.parallel,
                             kernel_inputs(params, self.X.dtype), self._hints)


@dataclass
class IterationInfo:
    """What a progress callback receives after each EM iteration.

    Attributes
    ----------
    init : int
        Index of the restart (0-based).
    iteration : int
        1-based iteration number.
    lower_bound : float
        Mean log-likelihood per sample of the parameters before this
        iteration's M-step.
    change : float
        Change of ``lower_bound`` since the previous iteration.
    elapsed : float
        Seconds since this restart started.
    params : GaussianParams
        Parameters after this iteration's M-step.
    """

    init: int
    iteration: int
    lower_bound: float
    change: float
    elapsed: float
    params: GaussianParams


@dataclass
class EMResult:
    """Outcome of one EM run (one restart)."""

    params: GaussianParams
    lower_bound: float
    lower_bounds: list = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    init: int = 0
    stopped: bool = False  # the callback asked to stop


def run_em(source, params: GaussianParams, *, tol: float, max_iter: int, reg_covar: float,
           init: int = 0, prev_lower_bound: float = -np.inf, verbose: int = 0,
           verbose_interval: int = 10, callback: Callable | None = None,
           repair: Callable | None = None) -> EMResult:
    """Iterate EM from ``params`` until the lower bound changes by less than ``tol``.

    Each iteration is one pass over the data (``source.stats``), which
    evaluates the log-likelihood of the current parameters and the statistics
    of their E-step at once, followed by the M-step.  As in scikit-learn,
    ``lower_bound`` at iteration ``t`` belongs to the parameters before that
    iteration's M-step, and the returned parameters are those after it.

    Parameters
    ----------
    source : object with ``stats(params) -> SuffStats``
    params : GaussianParams
    tol, max_iter, reg_covar
        As in :class:`fastgmm.GaussianMixture`.
    init : int
        Restart index (for messages).
    prev_lower_bound : float
        Lower bound before the first iteration (warm starts).
    verbose, verbose_interval : int
    callback : callable, optional
        Called with an :class:`IterationInfo` after each iteration; returning
        ``True`` stops this run (``converged`` stays False).
    repair : callable, optional
        ``repair(stats, reg_covar, iteration) -> GaussianParams``, used in
        place of ``stats.m_step`` (degenerate-component handling).
    """
    lower_bound = prev_lower_bound
    lower_bounds: list[float] = []
    converged = stop = False
    n_iter = 0
    start = time.perf_counter()
    if verbose:
        print(f"Initialization {init}", file=sys.stderr)
    for n_iter in range(1, max_iter + 1):
        prev = lower_bound
        stats = source.stats(params)
        lower_bound = stats.mean_log_likelihood
        if not np.isfinite(lower_bound):
            raise FloatingPointError(
                f"the log-likelihood became {lower_bound} at iteration {n_iter} "
                f"(restart {init}): some sample has zero density under every component. "
                "Check the data scale (values near 1e+-150 overflow) or the initial "
                "parameters.")
        if repair is None:
            params = stats.m_step(reg_covar)
        else:
            params = repair(stats, reg_covar, n_iter)
        lower_bounds.append(lower_bound)
        change = lower_bound - prev
        elapsed = time.perf_counter() - start
        if verbose and (n_iter % verbose_interval == 0 or n_iter == 1 or verbose >= 2):
            print(f"  iter {n_iter:4d}  log-likelihood {lower_bound: .8e}  change "
                  f"{change: .3e}  {elapsed:7.2f} s", file=sys.stderr)
        stop = False
        if callback is not None:
            stop = bool(callback(IterationInfo(init, n_iter, lower_bound, change,
                                               elapsed, params)))
        if abs(change) < tol:
            converged = True
            break
        if stop:
            break
    stopped = stop if max_iter > 0 else False
    if verbose:
        state = "converged" if converged else "did not converge"
        print(f"Initialization {init} {state} after {n_iter} iterations: "
              f"lower bound {lower_bound:.8e}", file=sys.stderr)
    return EMResult(params, lower_bound, lower_bounds, n_iter, converged, init,
                    stopped and not converged)


def fit_restarts(make_source: Callable, init_fn: Callable, n_init: int,
                 rng: np.random.RandomState, **em_kwargs) -> EMResult:
    """Run ``n_init`` independent EM runs and keep the best lower bound.

    Restarts run one after another; each uses the parallel kernels when the
    data is large enough.  (At small n, Python threads were measured slower:
    the M-step holds the GIL longer than the kernel runs.)

    Parameters
    ----------
    make_source : callable
        ``make_source(parallel) -> source``; ``parallel=None`` lets the source
        decide from the data size.
    init_fn : callable
        ``init_fn(rng, parallel) -> GaussianParams`` for one restart.
    n_init : int
    rng : RandomState
        Draws one seed per restart up front.
    **em_kwargs
        Passed to :func:`run_em`.
    """
    seeds = rng.randint(np.iinfo(np.int32).max, size=n_init)
    best = None
    for i in range(n_init):
        source = make_source(None)
        params = init_fn(np.random.RandomState(seeds[i]), source.parallel)
        res = run_em(source, params, init=i, **em_kwargs)
        if best is None or res.lower_bound > best.lower_bound:
            best = res
    return best


def warn_not_converged(result: EMResult, max_iter: int) -> None:
    if not result.converged and not result.stopped and max_iter > 0:
        warnings.warn(
            "Best performing initialization did not converge after "
            f"{result.n_iter} iterations. Try different init parameters, or increase "
            "max_iter, tol, or check for degenerate data.", ConvergenceWarning,
            stacklevel=3)
