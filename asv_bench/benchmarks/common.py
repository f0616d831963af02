"""Seeded problems shared by the benchmarks.

Datasets never change once published (otherwise the history is meaningless):
add a new seed or size instead of editing one.  ``FASTGMM_BENCH_QUICK=1``
shrinks every size (used by the test that keeps the suite from rotting).
"""

import os
from dataclasses import dataclass

import numpy as np

QUICK = os.environ.get("FASTGMM_BENCH_QUICK") == "1"


def size(n):
    return max(2_000, n // 200) if QUICK else n


def make_problem(n, d, k, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    scales = rng.uniform(0.5, 1.5, size=(k, d))
    z = rng.integers(0, k, size=n)
    X = (rng.standard_normal((n, d)) * scales[z] + centers[z]).astype(dtype)
    means0 = centers + rng.normal(scale=0.5, size=(k, d))
    return X, means0


def start_params(covariance_type, means0):
    k, d = means0.shape
    if covariance_type == "full":
        prec = np.tile(np.eye(d), (k, 1, 1))
    elif covariance_type == "tied":
        prec = np.eye(d)
    elif covariance_type == "diag":
        prec = np.ones((k, d))
    else:
        prec = np.ones(k)
    return dict(weights_init=np.full(k, 1.0 / k), means_init=means0, precisions_init=prec)


def fixed_work(covariance_type, k, max_iter, **extra):
    """Parameters for a fit with a fixed amount of work (tol cannot trigger)."""
    return dict(n_components=k, covariance_type=covariance_type, tol=0.0,
                max_iter=max_iter, **extra)


# ---------------------------------------------------------------------------
# Problem families beyond make_problem (issue #14).
#
# make_problem draws centres 4 noise s.d. apart and starts within 0.5 of the
# truth, so fastgmm's bounds skip almost every (row, component) pair: the
# regime where it is fastest, not the one people fit mixtures in.  The
# families below add overlapping components with correlated features,
# structureless data and wide shapes, all started from random rows.  Like
# make_problem, none of them may change once published: add a new name.
# ---------------------------------------------------------------------------


def _rotation(rng, d):
    """A random d x d rotation (Haar-distributed, from the QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def random_rows(X, k, rng):
    """Starting means: ``k`` distinct rows of ``X`` drawn uniformly, in float64.

    This is what a user without prior knowledge starts from (scikit-learn's
    ``init_params='random_from_data'``), and unlike make_problem's start it
    leaves every component far from its final place for the first iterations.
    """
    return X[np.sort(rng.choice(X.shape[0], size=k, replace=False))].astype(np.float64)


def make_overlapping(n, d, k, spread=1.0, dtype=np.float64, seed=0):
    """Overlapping components with correlated features, started from random rows.

    Each component has equal weight, a centre drawn from ``N(0, spread**2 I)``
    and a covariance ``R diag(s)**2 R^T`` with its own random rotation ``R``
    and scales ``s`` uniform in [0.5, 1.5], so every feature has a noise
    standard deviation of about 1 and ``spread`` is measured in those units:
    at 1 the components overlap heavily in every direction, at 5 they are
    about as separated as make_problem's (but correlated and started from
    random rows).

    Parameters
    ----------
    n, d, k : int
        Rows, features and components.
    spread : float, default=1.0
        Standard deviation of the centres, in noise standard deviations.
    dtype : numpy dtype, default=np.float64
        Of ``X``; the values are drawn in float64 and rounded, so the float32
        problem is the float64 one rounded.
    seed : int, default=0

    Returns
    -------
    X : ndarray of shape (n, d)
    means0 : ndarray of shape (k, d), float64
        ``k`` distinct rows of ``X``.
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=spread, size=(k, d))
    scales = rng.uniform(0.5, 1.5, size=(k, d))
    rotations = [_rotation(rng, d) for _ in range(k)]
    z = rng.integers(0, k, size=n)
    noise = rng.standard_normal((n, d))
    # Rows grouped by component so that each component is one matrix product.
    order = np.argsort(z, kind="stable")
    bounds = np.searchsorted(z[order], np.arange(k + 1))
    X = np.empty((n, d))
    for j in range(k):
        rows = order[bounds[j]:bounds[j + 1]]
        X[rows] = (noise[rows] * scales[j]) @ rotations[j].T + centers[j]
    X = X.astype(dtype, copy=False)
    return X, random_rows(X, k, rng)


def make_uniform(n, d, k, dtype=np.float64, seed=0):
    """Uniform in a cube (no clusters at all), started from random rows.

    Models data with no mixture structure, which people still fit mixtures
    to (density estimation, vector quantisation): every component overlaps
    every other, the worst case for any pruning of (row, component) pairs.
    The cube is [-sqrt(3), sqrt(3)]^d so that every feature has unit
    variance, the scale of the identity precisions of :func:`start_params`.

    Parameters
    ----------
    n, d, k : int
        Rows, features and components (``k`` only sets the starting means).
    dtype : numpy dtype, default=np.float64
    seed : int, default=0

    Returns
    -------
    X : ndarray of shape (n, d)
    means0 : ndarray of shape (k, d), float64
        ``k`` distinct rows of ``X``.
    """
    rng = np.random.default_rng(seed)
    X = rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), size=(n, d)).astype(dtype, copy=False)
    return X, random_rows(X, k, rng)


def _min_rows(covariance_type, d, k):
    """Fewest rows a shrunk case keeps: enough for every component to be estimable.

    A full covariance needs more rows than features in each component, so
    that a smoke run does not time degenerate-component repairs instead of EM.
    """
    per_component = 2 * (d + 1) if covariance_type == "full" else 10
    return max(2_000, per_component * k)


@dataclass(frozen=True)
class Case:
    """One named benchmark problem: a family, a covariance type and a shape.

    Parameters
    ----------
    name : str
        Its key in :data:`FAMILIES` or :data:`END_TO_END`, shown in outputs.
    family : {'separated', 'overlapping', 'uniform'}
        The generator: :func:`make_problem`, :func:`make_overlapping` or
        :func:`make_uniform`.
    covariance_type : str
        Of the model fitted.
    n, d, k : int
        Rows at full size, features and components.
    dtype : str, default='float64'
    spread : float, optional
        Centre spread of the overlapping family, in noise standard deviations.
    seed : int, default=0
    about : str, default=''
        One line on what the case stands for.
    """

    name: str
    family: str
    covariance_type: str
    n: int
    d: int
    k: int
    dtype: str = "float64"
    spread: float | None = None
    seed: int = 0
    about: str = ""

    def rows(self, divisor=None):
        """Rows to use: ``n``, or ``n // divisor`` (at least :func:`_min_rows`).

        ``divisor=None`` follows :func:`size`: the full size unless
        ``FASTGMM_BENCH_QUICK=1``, then one two-hundredth.
        """
        if divisor is None:
            divisor = 200 if QUICK else 1
        if divisor == 1:
            return self.n
        return min(self.n, max(self.n // divisor, _min_rows(self.covariance_type, self.d, self.k)))

    def data(self, n=None):
        """``(X, means0)`` with ``n`` rows (default :meth:`rows`)."""
        n = self.rows() if n is None else n
        dtype = np.dtype(self.dtype)
        if self.family == "separated":
            return make_problem(n, self.d, self.k, dtype, seed=self.seed)
        if self.family == "overlapping":
            return make_overlapping(n, self.d, self.k, spread=self.spread, dtype=dtype,
                                    seed=self.seed)
        if self.family == "uniform":
            return make_uniform(n, self.d, self.k, dtype=dtype, seed=self.seed)
        raise ValueError(f"unknown family {self.family!r}")

    def start(self, means0):
        """The fixed starting parameters of a per-iteration timing (:func:`start_params`)."""
        return start_params(self.covariance_type, means0)

    def flops(self, n=None):
        """Nominal flops of one EM iteration: n k (2 d^2 + 7 d) full/tied, n k 4 d otherwise."""
        n = self.rows() if n is None else n
        if self.covariance_type in ("full", "tied"):
            return n * self.k * (2 * self.d * self.d + 7 * self.d)
        return n * self.k * 4 * self.d


def _registry(*cases):
    return {case.name: case for case in cases}


#: Per-iteration cases, by name.  The first six are the separated problems
#: that compare.py always timed (same names, sizes and seeds); the rest are
#: the regimes of issue #14, where the bounds skip little or nothing.
FAMILIES = _registry(
    Case("full", "separated", "full", 1_000_000, 16, 16,
         about="make_problem: centres 4 s.d. apart, start within 0.5 of the truth"),
    Case("tied", "separated", "tied", 1_000_000, 16, 16, about="make_problem, tied"),
    Case("diag", "separated", "diag", 1_000_000, 16, 16, about="make_problem, diag"),
    Case("spherical", "separated", "spherical", 1_000_000, 16, 16,
         about="make_problem, spherical"),
    Case("full-f32", "separated", "full", 1_000_000, 16, 16, "float32",
         about="make_problem, float32 input"),
    Case("full-d64", "separated", "full", 200_000, 64, 8, about="make_problem, d = 64, k = 8"),
    Case("overlap-full", "overlapping", "full", 1_000_000, 16, 16, spread=1.0,
         about="centres 1 s.d. apart, correlated features, start from random rows"),
    Case("overlap-full-f32", "overlapping", "full", 1_000_000, 16, 16, "float32", spread=1.0,
         about="overlap-full rounded to float32"),
    Case("overlap-full-s5", "overlapping", "full", 1_000_000, 16, 16, spread=5.0,
         about="centres 5 s.d. apart (separated), correlated, start from random rows"),
    Case("overlap-full-s0.3", "overlapping", "full", 1_000_000, 16, 16, spread=0.3,
         about="centres 0.3 s.d. apart: almost one blob"),
    Case("uniform-full", "uniform", "full", 1_000_000, 16, 16,
         about="uniform in a cube: no clusters at all"),
    Case("overlap-diag-d39-k512", "overlapping", "diag", 200_000, 39, 512, spread=1.0,
         about="wide: many diagonal components (quantisation-style)"),
    Case("overlap-spherical-d39-k256", "overlapping", "spherical", 200_000, 39, 256,
         spread=1.0, about="wide: many spherical components"),
    Case("overlap-full-d39-k64", "overlapping", "full", 200_000, 39, 64, spread=1.0,
         about="wide: full covariances, d = 39"),
    Case("overlap-tied-d39-k64", "overlapping", "tied", 200_000, 39, 64, spread=1.0,
         about="wide: one shared covariance, d = 39"),
)

#: Whole default fits (k-means init, tol 1e-3), by name: the separated
#: problem compare.py always ran, and overlapping data in both dtypes.
END_TO_END = _registry(
    Case("e2e-separated", "separated", "full", 1_000_000, 16, 16,
         about="make_problem, default fit"),
    Case("e2e-overlap", "overlapping", "full", 200_000, 16, 16, spread=1.0,
         about="overlapping (1 s.d.), default fit, float64"),
    Case("e2e-overlap-f32", "overlapping", "full", 200_000, 16, 16, "float32", spread=1.0,
         about="overlapping (1 s.d.), default fit, float32"),
)


# ---------------------------------------------------------------------------
# BayesianGaussianMixture (issue #18): per-iteration timings from the same
# variational posterior as scikit-learn's estimator.
# ---------------------------------------------------------------------------

#: The :data:`FAMILIES` cases timed for ``BayesianGaussianMixture`` (full
#: covariances, separated and overlapping, n = 1e6, d = k = 16).
BAYES_CASES = ("full", "overlap-full")


def bayes_start(case, X, means0):
    """scikit-learn's variational posterior after its M-step on soft responsibilities.

    The responsibilities are those of :meth:`Case.start` (equal weights,
    identity precisions, the case's starting means); scikit-learn's own
    ``_initialize`` turns them into the posterior, as the parity tests do,
    so both libraries start every timed fit from the same parameters.

    Returns
    -------
    dict
        Float64 ``weights_``, ``means_``, ``precisions_``, and the posterior
        attributes by scikit-learn's names (``weight_concentration_`` a
        tuple of two arrays, Dirichlet process prior).
    """
    from sklearn.mixture import BayesianGaussianMixture as SKBayes

    Xf = np.asarray(X, dtype=np.float64)
    # Squared distances by the expansion: an (n, k, d) difference would not
    # fit in memory at n = 1e6.
    d2 = ((Xf * Xf).sum(axis=1)[:, None] - 2.0 * Xf @ means0.T
          + (means0 * means0).sum(axis=1)[None, :])
    resp = np.exp(-0.5 * (d2 - d2.min(axis=1, keepdims=True)))
    resp /= resp.sum(axis=1, keepdims=True)
    ref = SKBayes(n_components=case.k, covariance_type=case.covariance_type, tol=0.0,
                  warm_start=True)
    ref._check_parameters(Xf)
    ref._initialize(Xf, resp)
    ref._set_parameters(ref._get_parameters())  # derives weights_ and precisions_
    out = {name: getattr(ref, name) for name in (
        "weight_concentration_", "mean_precision_", "means_", "degrees_of_freedom_",
        "covariances_", "precisions_cholesky_", "weights_", "precisions_")}
    return out


def bayes_estimators(case, start, max_iter, n_threads=None):
    """The ``BayesianGaussianMixture`` of fastgmm and of scikit-learn, warm-started from ``start``.

    Both run exactly ``max_iter`` iterations (``tol=0``) from the posterior
    :func:`bayes_start` returned; each call gives fresh estimators, since a
    warm-started fit overwrites its start.

    Returns
    -------
    ours : fastgmm.BayesianGaussianMixture
    theirs : sklearn.mixture.BayesianGaussianMixture
    """
    from sklearn.mixture import BayesianGaussianMixture as SKBayes

    import fastgmm

    posterior = ("weight_concentration_", "mean_precision_", "means_", "degrees_of_freedom_",
                 "covariances_", "precisions_cholesky_")

    def copy(value):
        return tuple(np.array(v) for v in value) if isinstance(value, tuple) else np.array(value)

    ours = fastgmm.BayesianGaussianMixture(case.k, covariance_type=case.covariance_type,
                                           tol=0.0, max_iter=max_iter, warm_start=True,
                                           n_threads=n_threads)
    theirs = SKBayes(n_components=case.k, covariance_type=case.covariance_type, tol=0.0,
                     max_iter=max_iter, warm_start=True)
    for est in (ours, theirs):
        for name in posterior:
            setattr(est, name, copy(start[name]))
        est.weights_ = np.array(start["weights_"])
        est.precisions_ = np.array(start["precisions_"])
        est.converged_ = False
        est.lower_bound_ = -np.inf
    ours.n_features_in_ = start["means_"].shape[1]
    return ours, theirs


def gaussian_from(case, start, max_iter, n_threads=None):
    """A fastgmm ``GaussianMixture`` from the posterior's expected weights, means, precisions."""
    import fastgmm

    return fastgmm.GaussianMixture(case.k, covariance_type=case.covariance_type, tol=0.0,
                                   max_iter=max_iter, weights_init=start["weights_"],
                                   means_init=start["means_"],
                                   precisions_init=start["precisions_"], n_threads=n_threads)
