"""The EM loop: iterations, convergence, restarts, progress and callbacks.

This is the only EM loop in fastgmm.  It sees the data only through a
*source* (:mod:`fastgmm._sources`): in-memory arrays, memory maps, chunk
iterators and Dask arrays differ only in their source.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import _exceptions
from ._estep import COMPLETE
from ._params import GaussianParams


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
        The model's lower bound at this iteration (see ``fastgmm._em.run_em``): for
        :class:`fastgmm.GaussianMixture` the mean log-likelihood per sample
        of the parameters before this iteration's M-step.
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


class MaximumLikelihood:
    """The model of :class:`fastgmm.GaussianMixture` for ``fastgmm._em.run_em``.

    A model tells the loop how to turn an E-step's statistics into new
    parameters (``m_step``) and what the lower bound of the iteration is
    (``lower_bound``); :class:`fastgmm._bayesian.VariationalModel` is the
    other one.  Here the M-step is the maximum-likelihood one and, as in
    scikit-learn, the lower bound is the mean log-likelihood of the
    parameters *before* the M-step, which the statistics carry.

    Parameters
    ----------
    repair : callable, optional
        ``repair(stats, reg_covar, iteration) -> GaussianParams``, used in
        place of ``stats.m_step`` (degenerate-component handling).
    """

    #: What the verbose messages call the lower bound.
    bound_name = "log-likelihood"

    def __init__(self, repair: Callable | None = None):
        self.repair = repair

    def m_step(self, stats, reg_covar: float, iteration: int) -> GaussianParams:
        """New parameters from the statistics of iteration ``iteration`` (1-based)."""
        if self.repair is None:
            return stats.m_step(reg_covar)
        return self.repair(stats, reg_covar, iteration)

    def lower_bound(self, stats, old: GaussianParams, new: GaussianParams) -> float:
        """The mean log-likelihood of ``old``, the parameters the statistics came from."""
        return stats.mean_log_likelihood


def run_em(source, params: GaussianParams, *, tol: float, max_iter: int, reg_covar: float,
           init: int = 0, prev_lower_bound: float = -np.inf, verbose: int = 0,
           verbose_interval: int = 10, callback: Callable | None = None,
           repair: Callable | None = None, model=None, estep=None) -> EMResult:
    """Iterate EM from ``params`` until the lower bound changes by less than ``tol``.

    Each iteration is one pass over the data (``source.stats``), which
    evaluates the log-likelihood of the current parameters and the statistics
    of their E-step at once, followed by the model's M-step and lower bound
    (``model.lower_bound(stats, old_params, new_params)``).  For
    :class:`MaximumLikelihood` (the default), as in scikit-learn,
    ``lower_bound`` at iteration ``t`` belongs to the parameters before that
    iteration's M-step; the variational model's bound uses the E-step's
    responsibilities and the parameters after it.  The returned parameters
    are those after the last M-step.

    Parameters
    ----------
    source : data source (see :mod:`fastgmm._sources`)
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
        place of ``stats.m_step`` (degenerate-component handling); only with
        the default model.
    model : object, optional
        ``model.m_step(stats, reg_covar, iteration)`` and
        ``model.lower_bound(stats, old_params, new_params)``; default
        ``MaximumLikelihood(repair)``.
    estep : EStep, optional
        The E-step the source runs on its rows (:mod:`fastgmm._estep`);
        default :data:`~fastgmm._estep.COMPLETE`.
    """
    if estep is None:
        estep = COMPLETE
    if model is None:
        model = MaximumLikelihood(repair)
    elif repair is not None:
        raise ValueError("give repair to the model, not to run_em, when a model is given")
    lower_bound = prev_lower_bound
    lower_bounds: list[float] = []
    converged = stop = False
    n_iter = 0
    start = time.perf_counter()
    source.start_run()
    if verbose:
        print(f"Initialization {init}", file=sys.stderr)
    for n_iter in range(1, max_iter + 1):
        prev = lower_bound
        stats = source.stats(params, estep)
        log_lik = stats.mean_log_likelihood
        if not np.isfinite(log_lik):
            raise FloatingPointError(
                f"the log-likelihood became {log_lik} at iteration {n_iter} "
                f"(restart {init}): some sample has zero density under every component. "
                "Check the data scale (values near 1e+-150 overflow) or the initial "
                "parameters.")
        old, params = params, model.m_step(stats, reg_covar, n_iter)
        lower_bound = model.lower_bound(stats, old, params)
        lower_bounds.append(lower_bound)
        change = lower_bound - prev
        elapsed = time.perf_counter() - start
        if verbose and (n_iter % verbose_interval == 0 or n_iter == 1 or verbose >= 2):
            print(f"  iter {n_iter:4d}  {model.bound_name} {lower_bound: .8e}  change "
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


def fit_restarts(source, initializer: Callable, n_init: int, rng: np.random.RandomState,
                 **em_kwargs) -> EMResult:
    """Run ``n_init`` independent EM runs over ``source`` and keep the best lower bound.

    Of restarts whose bounds agree to :data:`RESTART_TIE_RTOL` (the same
    optimum, found twice) the earliest is kept.

    Parameters
    ----------
    source : data source (see :mod:`fastgmm._sources`)
    initializer : callable
        ``initializer(rng) -> GaussianParams`` for one restart (see
        :class:`fastgmm._init.Initializer`).
    n_init : int
    rng : RandomState
        Draws one seed per restart up front, so a restart's start does not
        depend on how the others went.
    **em_kwargs
        Passed to ``run_em``.
    """
    seeds = rng.randint(np.iinfo(np.int32).max, size=n_init)
    best = None
    for i in range(n_init):
        params = initializer(np.random.RandomState(seeds[i]))
        res = run_em(source, params, init=i, **em_kwargs)
        if best is None or _clearly_better(res.lower_bound, best.lower_bound):
            best = res
    return best


#: Restarts whose final lower bounds differ by less than this (relative)
#: reached the same optimum, usually with the components permuted.
RESTART_TIE_RTOL = 1e-12


def _clearly_better(bound: float, best: float) -> bool:
    """Whether a restart's ``bound`` beats ``best`` by more than rounding.

    Two restarts that converge to the same optimum give bounds equal up to
    the last bits, and which of them is larger then depends on summation
    order; keeping the earlier one in such a tie makes the kept model (and
    its component order) the same whatever the rounding.
    """
    if not np.isfinite(best):
        return bound > best
    return bound > best + RESTART_TIE_RTOL * max(1.0, abs(best))


#: Start of the warning text of :func:`warn_not_converged`, for filters that
#: must not import scikit-learn by naming the warning class.
NOT_CONVERGED_MESSAGE = "Best performing initialization did not converge"


def warn_not_converged(result: EMResult, max_iter: int) -> None:
    """Warn with :class:`~fastgmm.ConvergenceWarning` when the kept run hit ``max_iter``."""
    if not result.converged and not result.stopped and max_iter > 0:
        warnings.warn(
            f"{NOT_CONVERGED_MESSAGE} after "
            f"{result.n_iter} iterations. Try different init parameters, or increase "
            "max_iter, tol, or check for degenerate data.", _exceptions.ConvergenceWarning,
            stacklevel=3)
