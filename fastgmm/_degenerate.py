"""Degenerate components: detection and repair inside the M-step.

EM breaks down in two ways on degenerate data (duplicate points, a constant
feature, clusters of fewer than ``d + 1`` distinct points, more components
than distinct points, data whose spread is small next to its offset):

* a component **empties**: its weight ``nk`` falls to (almost) nothing, so it
  sits unused at a stale mean;
* a component **collapses**: its covariance stops being positive definite
  (rank-deficient scatter, or rounding that outweighs ``reg_covar``), and the
  M-step cannot factorise it.

:class:`DegenerateRepair` is a drop-in replacement for
``SuffStats.m_step`` (``run_em(..., repair=...)`` and the initialisation
M-step call it).  When nothing is degenerate it returns exactly what
``m_step`` returns, bit for bit.  Otherwise it

* raises the diagonal regularisation of a collapsed component (or of the tied
  covariance) by growing multiples of ``1e-6`` times the data variance until
  the matrix factorises, and keeps that extra regularisation for the rest of
  the run, so one collapse is reported once;
* re-seeds an empty component at the worst-explained sample (lowest log
  density under the healthy components) with the pooled covariance of the
  healthy components and weight ``1 / n_components``, when the data source
  can name that sample cheaply (in memory); otherwise (statistics only,
  e.g. a chunked source) it splits the heaviest component in two along its
  principal axis instead
  (moment-matched halves: means ``mu +- sqrt(2 / pi) sigma v``, variance
  ``(1 - 2 / pi) sigma^2`` along ``v``).  A component is re-seeded at most
  :data:`MAX_RESEEDS` times per run; after that it is left empty (weight
  about ``1e-15``) with the pooled covariance.

``on_degenerate`` decides what the user hears: ``'warn'`` repairs and emits a
:class:`~fastgmm.DegenerateDataWarning` naming the component, the iteration
and the repair; ``'ignore'`` repairs silently; ``'raise'`` raises
:class:`~fastgmm.DegenerateCovarianceError` instead of repairing.

Only the statistics are needed for every repair but the worst-point re-seed,
for which the repair asks the data source (``source.worst_explained``), so
the same object serves in-memory, out-of-core and distributed sources.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ._covariance import family
from ._estep import COMPLETE
from ._exceptions import DegenerateCovarianceError, DegenerateDataWarning
from ._params import GaussianParams
from ._stats import SuffStats

#: Accepted values of the estimator's ``on_degenerate`` parameter.
ON_DEGENERATE = ("warn", "raise", "ignore")

#: A component is empty when its weight is below this fraction of the weight
#: of an average sample.
EMPTY_FRACTION = 1e-6

#: Re-seeds allowed per component and run before it is left empty.
MAX_RESEEDS = 3

#: First extra regularisation tried, relative to the mean data variance (the
#: same ratio as scikit-learn's default ``reg_covar`` to unit-variance data).
_BASE_RELATIVE = 1e-6

#: A covariance is singular to rounding when some feature is explained by the
#: others up to ``1 - R^2 <= SINGULAR_FACTOR * n_features * eps`` (``eps`` of
#: the data's dtype: float32 kernels resolve far less than float64 ones).
SINGULAR_FACTOR = 10.0
_GROWTH = 10.0
_MAX_STEPS = 40

_HALF_SHIFT = math.sqrt(2.0 / math.pi)  # mean of a half-normal, in sigmas


class _RunState:
    """Memory of one EM run: extra regularisation and re-seed counts per component."""

    def __init__(self):
        self.last_iteration = -1
        self.extra: np.ndarray | None = None  # extra diagonal per component
        self.reseeds: np.ndarray | None = None


class DegenerateRepair:
    """M-step that repairs empty and collapsed components.

    Called as ``repair(stats, reg_covar, iteration)`` wherever
    ``stats.m_step(reg_covar)`` would be; ``iteration`` is 0 for the
    initialisation M-step and the 1-based EM iteration otherwise.

    Parameters
    ----------
    on_degenerate : {'warn', 'raise', 'ignore'}, default='warn'
        ``'warn'``: repair and emit a :class:`~fastgmm.DegenerateDataWarning`
        naming the component, the iteration and the repair; ``'ignore'``:
        repair silently; ``'raise'``: raise
        :class:`~fastgmm.DegenerateCovarianceError` instead.
    source : data source, optional
        Asked for the worst-explained rows (``source.worst_explained``) when
        an empty component is re-seeded; where it has none to offer (or no
        source is given), empty components are filled by splitting the
        heaviest component.  Its ``dtype`` (the kernels' compute dtype,
        float64 without a source) sets how close to singular a covariance
        may be.
    estep : EStep, optional
        The E-step of the fit, handed to ``source.worst_explained``.

    Notes
    -----
    The memory of a run (extra regularisation, re-seed counts) is reset when
    the iteration number goes back, i.e. when a new run starts.  Repairs are
    deterministic.
    """

    def __init__(self, on_degenerate: str = "warn", source=None, estep=None):
        if on_degenerate not in ON_DEGENERATE:
            raise ValueError(f"on_degenerate must be one of {ON_DEGENERATE}, "
                             f"got {on_degenerate!r}")
        self.on_degenerate = on_degenerate
        self.source = source
        self.estep = COMPLETE if estep is None else estep
        dtype = np.float64 if source is None else source.dtype
        self.eps = float(np.finfo(np.dtype(dtype)).eps)
        self._state = _RunState()

    # ------------------------------------------------------------------

    def __call__(self, stats: SuffStats, reg_covar: float, iteration: int) -> GaussianParams:
        k = stats.nk.shape[0]
        if not (np.isfinite(stats.nk).all() and np.isfinite(stats.t).all()
                and np.isfinite(stats.s).all()):
            raise DegenerateCovarianceError(
                f"the sufficient statistics are not finite {_when(iteration)} (overflow): "
                "the data values are too large to square in float64 (about 1e154 and "
                "above). Rescale the data, e.g. divide by its standard deviation.")
        state = self._run_state(iteration, k, stats.covariance_type)
        empty = empty_components(stats)
        if not empty.any() and not state.extra.any():
            try:
                params = stats.m_step(reg_covar)
            except DegenerateCovarianceError as exc:
                if self.on_degenerate == "raise":
                    raise DegenerateCovarianceError(
                        f"{exc} [{_when(iteration)}; on_degenerate='raise']",
                        exc.component) from None
            else:
                singular = numerically_singular(params, self.eps)
                if not singular.any():
                    return params
                if self.on_degenerate == "raise":
                    j = int(np.flatnonzero(singular)[0])
                    fam = family(stats.covariance_type)
                    raise DegenerateCovarianceError(
                        f"ill-defined empirical covariance for {fam.where(j)} "
                        f"{_when(iteration)}: the matrix is numerically singular (collapsed "
                        "component or too few distinct points). Increase reg_covar, decrease "
                        "n_components, or use on_degenerate='warn' to repair it.",
                        fam.component_index(j))
        if self.on_degenerate == "raise":
            j = int(np.flatnonzero(empty)[0])
            raise DegenerateCovarianceError(
                f"component {j} is empty {_when(iteration)} (weight {stats.nk[j]:.3g}): "
                "no sample is explained by it. Decrease n_components, check for "
                "duplicate points, or use on_degenerate='warn' to re-seed it.", j)
        params, events = self._repair(stats, reg_covar, empty, state)
        if events and self.on_degenerate == "warn":
            warnings.warn(
                f"degenerate mixture {_when(iteration)}: " + "; ".join(events)
                + ". The fit continues with the repaired model (on_degenerate='raise' "
                "makes this an error, 'ignore' silences it).",
                DegenerateDataWarning, stacklevel=3)
        return params

    def _run_state(self, iteration: int, k: int, covariance_type: str) -> _RunState:
        st = self._state
        n_extra = family(covariance_type).n_covariances(k)
        if (iteration <= st.last_iteration or st.extra is None
                or st.extra.shape[0] != n_extra or st.reseeds.shape[0] != k):
            st.extra = np.zeros(n_extra)
            st.reseeds = np.zeros(k, dtype=np.int64)
        st.last_iteration = iteration
        return st

    # ------------------------------------------------------------------

    def _repair(self, stats: SuffStats, reg_covar: float, empty: np.ndarray,
                state: _RunState) -> tuple[GaussianParams, list[str]]:
        fam = family(stats.covariance_type)
        weights, means, raw = stats.moments()
        k = weights.shape[0]
        healthy = ~empty
        events: list[str] = []
        base = _BASE_RELATIVE * data_scale(stats)

        # Collapsed components (or the shared covariance): raise their
        # diagonal regularisation.
        cov = np.empty_like(raw)
        for j in range(fam.n_covariances(k)):
            if empty[j] and not fam.shared:
                continue
            one = fam.component(raw, j)
            extra, grown = _regularise(one, fam, reg_covar, state.extra[j], base, self.eps)
            state.extra[j] = extra
            fixed = fam.add_to_diagonal(one, reg_covar + extra)
            if fam.shared:
                cov = fixed
            else:
                cov[j] = fixed
            if grown and fam.shared:
                events.append(f"{fam.where(j)} was not positive definite, or singular "
                              "to rounding; its diagonal regularisation was raised by "
                              f"{extra:.3g}")
            elif grown:
                events.append(f"component {j} collapsed (covariance not positive "
                              "definite, or singular to rounding); its diagonal "
                              f"regularisation was raised by {extra:.3g}")

        # Empty components: re-seed (or split) a few times, then leave them.
        empties = np.flatnonzero(empty)
        if empties.size:
            pooled = fam.pooled(weights, cov, healthy)
            for j in empties:
                if not fam.shared:
                    cov[j] = pooled
            reseed = [int(j) for j in empties if state.reseeds[j] < MAX_RESEEDS]
            for j in empties:
                if state.reseeds[j] >= MAX_RESEEDS:
                    events.append(f"component {int(j)} is empty again after {MAX_RESEEDS} "
                                  "re-seeds and was left empty with the pooled covariance")
            if reseed:
                events += (self._reseed_worst(weights, means, cov, healthy, reseed, fam)
                           or _split_heaviest(weights, means, cov, healthy, reseed, fam))
                state.reseeds[reseed] += 1
            weights = weights / weights.sum()
        return GaussianParams.from_covariances(fam.name, weights, means, cov), events

    def _reseed_worst(self, weights, means, cov, healthy, reseed, fam) -> list[str]:
        """Move each component of ``reseed`` to one of the worst-explained rows.

        Returns the events, or an empty list (nothing changed) when the
        source cannot name such rows.
        """
        if self.source is None:
            return []
        h_w = weights[healthy] / weights[healthy].sum()
        h_cov = cov if fam.shared else cov[healthy]
        scorer = GaussianParams.from_covariances(fam.name, h_w, means[healthy], h_cov)
        rows = self.source.worst_explained(scorer, len(reseed), self.estep)
        if rows is None:
            return []
        events = []
        share = 1.0 / weights.shape[0]
        others = np.ones(weights.shape[0], dtype=bool)
        others[reseed] = False
        weights[others] *= (1.0 - share * len(reseed)) / weights[others].sum()
        for j, (row, x) in zip(reseed, rows, strict=True):
            means[j] = x
            weights[j] = share
            events.append(f"component {j} was empty and was re-seeded at the "
                          f"worst-explained sample (row {row}) with the pooled covariance")
        return events


# ---------------------------------------------------------------------------
# Helpers (statistics only)
# ---------------------------------------------------------------------------


def empty_components(stats: SuffStats) -> np.ndarray:
    """Boolean mask of components whose weight is negligible.

    Empty means ``nk`` below :data:`EMPTY_FRACTION` times the weight of an
    average sample.
    """
    avg = stats.weight / max(stats.n_samples, 1)
    return ~(stats.nk >= EMPTY_FRACTION * avg)


def data_scale(stats: SuffStats) -> float:
    """Mean per-feature variance of all the data, from the statistics.

    Used only as a yardstick for extra regularisation; 1.0 when the data have
    no spread at all (or the estimate is not finite).
    """
    nk, t = stats.nk, stats.t
    total = nk.sum()
    if not total > 0:
        return 1.0
    fam = family(stats.covariance_type)
    with np.errstate(all="ignore"):
        if fam.shared:
            m = t.sum(axis=0) / total
            var = fam.second_moment_diagonal(stats.s) / total - m ** 2
        else:
            sdiag = fam.second_moment_diagonal(stats.s)
            mean = (nk[:, None] * stats.shift + t).sum(axis=0) / total
            dc = stats.shift - mean
            var = fam.feature_variances(
                (sdiag + nk[:, None] * dc ** 2 + 2.0 * t * dc).sum(axis=0) / total)
        scale = float(np.mean(np.maximum(var, 0.0)))
    return scale if np.isfinite(scale) and scale > 0 else 1.0


def numerically_singular(params: GaussianParams,
                         eps: float = float(np.finfo(np.float64).eps)) -> np.ndarray:
    """Components whose covariance factorised but is singular to rounding.

    A Cholesky factorisation can succeed on a rank-deficient matrix by the
    luck of rounding; such a component then has a precision of order
    ``1 / eps`` along some direction, and the densities the kernels compute
    with it are noise.  The test is unit-free: with ``Sigma = L L^T``,
    ``L_ii^2 / Sigma_ii = 1 - R_i^2`` is the share of feature ``i``'s
    variance not explained by the features before it; the covariance is
    singular when that share is at most ``SINGULAR_FACTOR * d * eps`` for
    some ``i``.  Diagonal and spherical covariances are never collinear.

    Returns a boolean array, shape (k,), or (1,) for a tied covariance.
    """
    tol = SINGULAR_FACTOR * params.n_features * eps
    return params.family.numerically_singular(params.precisions_cholesky, params.covariances,
                                              params.n_components, tol)


def _regularise(raw, fam, reg_covar, extra, base, eps) -> tuple[float, bool]:
    """Smallest extra diagonal (growing by 10x from ``base``) that makes ``raw`` SPD.

    ``raw`` is one component's covariance (or the shared one); SPD means
    positive definite and not singular to rounding (see
    :func:`numerically_singular`).  Returns the extra amount and whether it
    had to grow beyond ``extra``.
    """
    def spd(amount):
        return fam.is_spd(fam.add_to_diagonal(raw, reg_covar + amount), SINGULAR_FACTOR, eps)

    if spd(extra):
        return extra, False
    candidate = base
    for _ in range(_MAX_STEPS):
        if candidate > extra and spd(candidate):
            return candidate, True
        candidate *= _GROWTH
    raise DegenerateCovarianceError(
        "a covariance could not be made positive definite even with a diagonal "
        f"regularisation of {candidate / _GROWTH:.3g}; the data may be too badly scaled")


def _split_heaviest(weights, means, cov, healthy, reseed, fam) -> list[str]:
    """Fill each component of ``reseed`` by splitting the heaviest one in two.

    The two halves keep the parent's mass and match its moments: means at
    ``mu +- sqrt(2/pi) sigma v`` along the principal axis ``v`` and the
    variance along ``v`` reduced to ``(1 - 2/pi) sigma^2``.
    """
    events = []
    alive = healthy.copy()
    for j in reseed:
        big = int(np.flatnonzero(alive)[np.argmax(weights[alive])])
        lam, v, half = fam.split(fam.component(cov, big), means.shape[1])
        step = _HALF_SHIFT * math.sqrt(lam) * v
        if not fam.shared:
            cov[big] = half
            cov[j] = cov[big]
        means[j] = means[big] - step
        means[big] = means[big] + step
        weights[big] *= 0.5
        weights[j] = weights[big]
        alive[j] = True
        events.append(f"component {j} was empty and was filled by splitting component "
                      f"{big} along its principal axis")
    return events


def _when(iteration: int) -> str:
    return "at initialisation" if iteration == 0 else f"at EM iteration {iteration}"
