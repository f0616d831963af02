"""Online (stepwise) EM: one batch at a time, on the same statistics.

Stepwise EM (Cappe & Moulines 2009, "On-line expectation-maximization
algorithm for latent data models", JRSS-B 71(3)) keeps a running average of
the per-sample sufficient statistics and takes an M-step after every batch:

    s_t = (1 - rho_t) s_{t-1} + rho_t * stats(batch_t | theta_{t-1}) / weight(batch_t)
    theta_t = m_step(s_t)

with step sizes ``rho_t = (t + learning_offset) ** (-learning_decay)``,
``t = 1, 2, ...`` counting the updates after the first batch.  A decay in
``(0.5, 1]`` meets the Robbins-Monro conditions (``sum rho_t`` diverges,
``sum rho_t^2`` converges) under which the iterates converge on a stationary
stream; a smaller decay forgets faster and follows a drifting stream more
closely.  The running statistics are taken about the previous means and the
batch's about the current ones, so the running ones are re-centred exactly
(:meth:`SuffStats.recenter`) before blending.
"""

from __future__ import annotations

from collections.abc import Callable

from ._compute import compute_stats
from ._params import GaussianParams
from ._stats import SuffStats


def step_size(t: int, learning_offset: float, learning_decay: float) -> float:
    """``rho_t = (t + learning_offset) ** (-learning_decay)`` for ``t >= 1``."""
    return float((t + learning_offset) ** (-learning_decay))


def per_sample(stats: SuffStats) -> SuffStats:
    """Statistics divided by their total weight (an average per sample)."""
    return stats.scale(1.0 / stats.weight)


def stepwise_update(running: SuffStats, X, w, params: GaussianParams, rho: float,
                    m_step: Callable[[SuffStats], GaussianParams],
                    stats: Callable = compute_stats):
    """One stepwise-EM update on a batch.

    Parameters
    ----------
    running : SuffStats
        Per-sample running statistics.
    X : ndarray (n, d), validated
    w : ndarray (n,) or None
    params : GaussianParams
        The current parameters (E-step of the batch).
    rho : float
        Step size in ``(0, 1]``.
    m_step : callable
        ``m_step(stats) -> GaussianParams`` (with degenerate-component repair).
    stats : callable, default compute_stats
        ``stats(X, w, params) -> SuffStats``, the batch's E-step (the
        missing-data one for batches with NaN).

    Returns
    -------
    running : SuffStats
        The blended statistics.
    params : GaussianParams
        Their M-step.
    batch_log_likelihood : float
        Mean log-likelihood of the batch under ``params`` (before the update).
    """
    batch = stats(X, w, params)
    mean_ll = batch.mean_log_likelihood
    blended = running.recenter(batch.shift).scale(1.0 - rho) + per_sample(batch).scale(rho)
    return blended, m_step(blended), mean_ll
