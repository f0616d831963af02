"""Initial parameters: k-means, k-means++, random, random_from_data, user-given."""

from __future__ import annotations

import math

import numpy as np

from . import _config
from ._compute import resp_stats, weight_args
from ._covariance import family
from ._parallel import fold_slots, run_groups
from ._params import GaussianParams
from ._source_base import uniform_rows

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


def _kernels():
    """:mod:`fastgmm._kernels_kmeans`, imported on first use (it imports Numba)."""
    from . import _kernels_kmeans

    return _kernels_kmeans


def weighted_mean_var(X: np.ndarray, w: np.ndarray | None,
                      block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Weighted column means and (biased) variances, float64, block by block.

    Two passes (mean, then squared deviations from it), so it is accurate far
    from the origin, and no temporary larger than ``block`` rows is made.
    """
    n, d = X.shape
    total = float(n) if w is None else float(w.sum())
    acc = np.zeros(d)
    for lo in range(0, n, block):
        xb = X[lo:lo + block].astype(np.float64, copy=False)
        acc += xb.sum(axis=0) if w is None else w[lo:lo + block] @ xb
    mean = acc / total
    acc = np.zeros(d)
    for lo in range(0, n, block):
        db = X[lo:lo + block].astype(np.float64) - mean
        db *= db
        acc += db.sum(axis=0) if w is None else w[lo:lo + block] @ db
    return mean, acc / total


def kmeans_plusplus(X: np.ndarray, w: np.ndarray | None, n_clusters: int,
                    rng: np.random.RandomState) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007).

    Each new centre is the best of ``2 + floor(log k)`` candidates drawn with
    probability proportional to ``w * D(x)^2``.

    Returns
    -------
    centers : ndarray (n_clusters, n_features), dtype of X
    """
    n, d = X.shape
    cs = _config.CHUNK_SIZE
    n_chunks = (n + cs - 1) // cs
    wa, weighted = weight_args(w)
    kern = _kernels()
    p0 = None if w is None else w / w.sum()
    centers = np.empty((n_clusters, d), dtype=X.dtype)
    centers[0] = X[rng.choice(n, p=p0)]
    closest = np.full(n, np.inf)
    run_groups(kern.update_min_dist, (X, centers[0], closest, cs), n_chunks, n)
    n_trials = 2 + int(math.log(n_clusters))
    slot = np.empty((n_chunks, n_trials))
    for j in range(1, n_clusters):
        mass = closest if w is None else closest * w
        cum = np.cumsum(mass)
        total = cum[-1]
        if not total > 0:
            # Every point coincides with a centre already (duplicates): any
            # further centre is as good as another.
            idx = rng.choice(n, size=n_trials, p=p0)
        else:
            idx = np.searchsorted(cum, rng.uniform(size=n_trials) * total, side="right")
            idx = np.minimum(idx, n - 1)
        cand = np.ascontiguousarray(X[idx])
        pot = np.zeros(n_trials)
        run_groups(kern.candidate_potential, (X, wa, weighted, cand, closest, cs, slot),
                   n_chunks, n)
        fold_slots((slot,), n_chunks, (pot,))
        best = int(np.argmin(pot))
        centers[j] = cand[best]
        run_groups(kern.update_min_dist, (X, centers[j], closest, cs), n_chunks, n)
    return centers


def kmeans(X: np.ndarray, w: np.ndarray | None, n_clusters: int,
           rng: np.random.RandomState, max_iter: int = 100,
           tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Lloyd iterations from k-means++ seeds.

    The seeds are drawn from a uniform sample of at most ``SEED_MAX_SAMPLES``
    rows; the iterations use all rows.

    Stops when the squared centre movement falls below ``tol`` times the mean
    feature variance (scikit-learn's convention).

    Returns
    -------
    centers : ndarray (n_clusters, n_features), dtype of X
    labels : ndarray (n_samples,) int64
    """
    n, d = X.shape
    # Seeds only need a good spread; Lloyd's iterations below use every row.
    if n > _config.SEED_MAX_SAMPLES:
        rows = _uniform_rows(n, _config.SEED_MAX_SAMPLES, rng)
        ws = None if w is None else w[rows]
        if ws is None or (ws > 0).sum() >= n_clusters:
            centers = kmeans_plusplus(X[rows], ws, n_clusters, rng)
        else:
            centers = kmeans_plusplus(X, w, n_clusters, rng)
    else:
        centers = kmeans_plusplus(X, w, n_clusters, rng)
    _, variance = weighted_mean_var(X, w)
    threshold = tol * variance.mean()
    labels = np.empty(n, dtype=np.int64)
    step = _LloydStep(X, w, n_clusters)
    for _ in range(max_iter):
        sums, counts = step(centers, labels)
        filled = counts > 0
        move = np.zeros((n_clusters, d))
        move[filled] = sums[filled] / counts[filled, None]
        centers = np.ascontiguousarray(centers + move, dtype=X.dtype)
        if float((move ** 2).sum()) <= threshold:
            break
    return centers, labels


def _uniform_rows(n: int, m: int, rng: np.random.RandomState) -> np.ndarray:
    """``m`` distinct rows out of ``n``, in increasing order, seeded by one draw from ``rng``."""
    return uniform_rows(n, m, rng.randint(np.iinfo(np.int32).max))


class _LloydStep:
    """One Lloyd assignment and accumulation over all rows (slots kept between calls)."""

    def __init__(self, X, w, n_clusters):
        n, d = X.shape
        self.n_rows = n
        self.n_chunks = (n + _config.CHUNK_SIZE - 1) // _config.CHUNK_SIZE
        self.args = (X, *weight_args(w))
        self.slots = (np.empty((self.n_chunks, n_clusters, d)),
                      np.empty((self.n_chunks, n_clusters)))

    def __call__(self, centers, labels):
        """Write the nearest centre of every row into ``labels``.

        Returns ``sum w (x - centre)`` per cluster (shifted by the current
        centre) and ``sum w`` per cluster, folded in chunk order.
        """
        sum_slot, count_slot = self.slots
        shift = centers.mean(axis=0)
        off = centers - shift
        cnorm = np.einsum("kd,kd->k", off, off, dtype=np.float64)
        kern = _kernels()
        centres = kern.Centres(centers, shift.astype(centers.dtype),
                               np.ascontiguousarray(off.T, dtype=centers.dtype), cnorm)
        run_groups(kern.lloyd_step, (*self.args, centres, labels, _config.CHUNK_SIZE,
                                     *self.slots), self.n_chunks, self.n_rows)
        sums, counts = np.zeros(sum_slot.shape[1:]), np.zeros(count_slot.shape[1:])
        fold_slots(self.slots, self.n_chunks, (sums, counts))
        return sums, counts


def _assign_to_seeds(X, w, seeds) -> np.ndarray:
    """Labels of the nearest seed (one Lloyd assignment, centres unchanged)."""
    labels = np.empty(X.shape[0], dtype=np.int64)
    _LloydStep(X, w, seeds.shape[0])(np.ascontiguousarray(seeds, dtype=X.dtype), labels)
    return labels


def initial_params(X: np.ndarray, w: np.ndarray | None, n_components: int,
                   covariance_type: str, init_params: str, rng: np.random.RandomState,
                   reg_covar: float, weights_init=None,
                   means_init=None, precisions_init=None, repair=None) -> GaussianParams:
    """Initial mixture parameters.

    ``init_params`` chooses the responsibilities the first M-step uses:

    * ``'kmeans'``: hard labels from k-means (k-means++ seeds, Lloyd).
    * ``'k-means++'``: k-means++ seeds, each row assigned to the nearest seed.

    For both, the centres are found on a uniform random sample of at most
    ``INIT_MAX_SAMPLES`` rows (all rows when there are fewer), then every row
    is assigned to its nearest centre.
    * ``'random_from_data'``: distinct random rows as seeds, nearest-seed labels.
    * ``'random'``: responsibilities drawn uniformly and normalised per row.

    User-given ``weights_init``, ``means_init`` and ``precisions_init`` replace
    the corresponding estimates (all three given: no data-driven step at all).
    Arrays are expected validated (float64, right shapes).  ``repair``, when
    given, replaces the first M-step (``repair(stats, reg_covar, 0)``; see
    :class:`fastgmm._degenerate.DegenerateRepair`), so that empty or collapsed
    initial components are handled as in EM.
    """
    given = (weights_init is not None, means_init is not None, precisions_init is not None)
    if all(given):
        return GaussianParams.from_precisions(covariance_type, weights_init, means_init,
                                              precisions_init)
    n, d = X.shape
    k = n_components
    # The data mean is only needed as the tied shift and as the centre of
    # random responsibilities.
    shared = family(covariance_type).shared
    need_mean = shared or init_params == "random"
    wmean = weighted_mean_var(X, w)[0] if need_mean else None
    if init_params == "random":
        def resp_block(lo, hi):
            r = rng.uniform(size=(hi - lo, k))
            return r / r.sum(axis=1, keepdims=True)
        labels = None
        centers = np.tile(wmean, (k, 1))
    else:
        if init_params in ("kmeans", "k-means++"):
            # k-means reads the data dozens of times; on large inputs a
            # uniform sample places the centres as well, and EM refines them.
            Xs, ws = X, w
            if n > _config.INIT_MAX_SAMPLES:
                rows = _uniform_rows(n, _config.INIT_MAX_SAMPLES, rng)
                Xs = X[rows]
                ws = None if w is None else w[rows]
                if ws is not None and not (ws > 0).sum() >= k:
                    Xs, ws = X, w
            if init_params == "kmeans":
                seeds, _ = kmeans(Xs, ws, k, rng)
            else:
                seeds = kmeans_plusplus(Xs, ws, k, rng)
            labels = _assign_to_seeds(X, w, seeds)
            centers = seeds
        else:  # random_from_data
            eligible = np.arange(n) if w is None else np.flatnonzero(w > 0)
            if eligible.size < k:
                eligible = np.arange(n)
            seeds = X[rng.choice(eligible, size=k, replace=False)]
            labels = _assign_to_seeds(X, w, seeds)
            centers = seeds
        resp_block = None
        centers = centers.astype(np.float64)
    shift = wmean if shared else centers
    stats = resp_stats(X, w, resp_block, k, shift, covariance_type, labels=labels)
    params = stats.m_step(reg_covar) if repair is None else repair(stats, reg_covar, 0)
    if weights_init is not None:
        params.weights = np.asarray(weights_init, dtype=np.float64).copy()
    if means_init is not None:
        params.means = np.asarray(means_init, dtype=np.float64).copy()
    if precisions_init is not None:
        params = GaussianParams.from_precisions(covariance_type, params.weights,
                                                params.means, precisions_init)
    return params


class Initializer:
    """The start of every restart: ``initializer(rng) -> GaussianParams``.

    Holds what does not change between restarts (the rows to initialise on,
    the method, user-given arrays, the repair of the first M-step); each call
    draws a new start from ``rng``.

    Parameters
    ----------
    X : ndarray (n, d) or None
        The rows to initialise on (all data in memory, or a source's sample);
        ``None`` when all three user-given arrays are set.
    w : ndarray (n,) or None
    n_components : int
    covariance_type : str
    init_params : str
        One of :data:`INIT_METHODS`.
    reg_covar : float
    weights_init, means_init, precisions_init : ndarray or None
        Validated user-given arrays.
    repair : callable, optional
        Replaces the first M-step (see :func:`initial_params`).
    """

    def __init__(self, X, w, n_components: int, covariance_type: str, init_params: str,
                 reg_covar: float, weights_init=None, means_init=None, precisions_init=None,
                 repair=None):
        self.X, self.w = X, w
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.init_params = init_params
        self.reg_covar = reg_covar
        self.given = (weights_init, means_init, precisions_init)
        self.repair = repair

    def __call__(self, rng: np.random.RandomState) -> GaussianParams:
        return initial_params(self.X, self.w, self.n_components, self.covariance_type,
                              self.init_params, rng, self.reg_covar, *self.given,
                              repair=self.repair)
