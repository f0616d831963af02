"""EM where the bounds skip little: overlapping, structureless and wide problems (issue #14).

The problems are the named cases of :data:`benchmarks.common.FAMILIES` other
than the separated ones (which :mod:`benchmarks.bench_fit` already times),
and the default fits of :data:`benchmarks.common.END_TO_END` on overlapping
data, and ``BayesianGaussianMixture`` (issue #18) on the cases of
:data:`benchmarks.common.BAYES_CASES`.  Every per-iteration timing starts
from the same parameters (uniform weights, identity precisions, means at
random rows) with ``tol=0``, so each run does the same fixed amount of
work (the Bayesian timings start from scikit-learn's variational posterior
instead).
"""

import timeit
import warnings

import numpy as np

import fastgmm

from .common import (
    BAYES_CASES,
    END_TO_END,
    FAMILIES,
    bayes_estimators,
    bayes_start,
    fixed_work,
    gaussian_from,
)

REGIMES = [name for name, case in FAMILIES.items() if case.family != "separated"]
OVERLAP_FITS = [name for name, case in END_TO_END.items() if case.family == "overlapping"]


def _quiet_fit(est, X):
    # A fixed-work fit never converges, and repairs of a degenerate component
    # (possible at the shrunk sizes of a smoke run) are part of what is timed.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        warnings.simplefilter("ignore", fastgmm.DegenerateDataWarning)
        return est.fit(X)


class RegimeEM:
    """EM iterations from a fixed start on each non-separated case.

    ``time_em`` and ``peakmem_em`` run ``ITERS`` iterations (plus the
    initial E-step every fit has); ``track_seconds_per_iteration`` is the
    difference between fits of ``1 + ITERS`` and 1 iterations, best of
    three, divided by ``ITERS``: the per-iteration figure that compare.py
    prints, free of the fixed costs of a fit.
    """

    ITERS = 3
    params = (REGIMES,)
    param_names = ["case"]
    timer = timeit.default_timer  # wall clock: process time sums threads
    timeout = 600

    def setup(self, name):
        self.case = FAMILIES[name]
        self.X, means0 = self.case.data()
        self.start = self.case.start(means0)
        _quiet_fit(self._make(1), self.X[:2000])  # JIT warm-up outside the timing

    def _make(self, max_iter):
        return fastgmm.GaussianMixture(
            **fixed_work(self.case.covariance_type, self.case.k, max_iter), **self.start)

    def time_em(self, name):
        _quiet_fit(self._make(self.ITERS), self.X)

    def peakmem_em(self, name):
        _quiet_fit(self._make(self.ITERS), self.X)

    def track_seconds_per_iteration(self, name):
        best = {}
        for m in (1, 1 + self.ITERS):
            times = []
            for _ in range(3):
                t = timeit.default_timer()
                _quiet_fit(self._make(m), self.X)
                times.append(timeit.default_timer() - t)
            best[m] = min(times)
        return max(best[1 + self.ITERS] - best[1], 0.0) / self.ITERS

    track_seconds_per_iteration.unit = "seconds"


class OverlapDefaultFit:
    """``fastgmm.fit`` with defaults (k-means init, tol 1e-3) on overlapping data.

    The whole fit, as a user runs it; ``track_n_iter`` tells whether a change
    of time comes from the cost of an iteration or from their number.
    """

    params = (OVERLAP_FITS,)
    param_names = ["case"]
    timer = timeit.default_timer
    timeout = 600

    def setup(self, name):
        self.case = END_TO_END[name]
        self.X, _ = self.case.data()
        fastgmm.fit(self.X[:2000], self.case.k, random_state=0)

    def _fit(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
            return fastgmm.fit(self.X, self.case.k, random_state=0)

    def time_fit_defaults(self, name):
        self._fit()

    def peakmem_fit_defaults(self, name):
        self._fit()

    def track_n_iter(self, name):
        return int(self._fit().n_iter_)

    track_n_iter.unit = "EM iterations"

    def track_mean_loglik(self, name):
        return float(np.float64(self._fit().score(self.X)))

    track_mean_loglik.unit = "nats per sample"


def _per_iteration(make, X, iters):
    """Best-of-three difference of fits of ``1 + iters`` and 1 iterations, per iteration."""
    from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning

    best = {}
    for m in (1, 1 + iters):
        times = []
        for _ in range(3):
            est = make(m)
            t = timeit.default_timer()
            with warnings.catch_warnings():
                # scikit-learn's fixed-work fits warn with its own class.
                warnings.simplefilter("ignore", SklearnConvergenceWarning)
                _quiet_fit(est, X)
            times.append(timeit.default_timer() - t)
        best[m] = min(times)
    return max(best[1 + iters] - best[1], 0.0) / iters


class BayesianEM:
    """``BayesianGaussianMixture`` iterations from scikit-learn's variational posterior.

    The start is the posterior scikit-learn's M-step makes of the case's
    starting responsibilities (:func:`benchmarks.common.bayes_start`), so
    fastgmm's and scikit-learn's trackers time the same iterates (their
    parity is a test).  ``track_gmm_seconds_per_iteration`` times fastgmm's
    ``GaussianMixture`` on the same data from the posterior's expected
    parameters: the price of the variational E- and M-steps over plain EM.
    """

    ITERS = 3
    params = (list(BAYES_CASES),)
    param_names = ["case"]
    timer = timeit.default_timer
    timeout = 900

    def setup(self, name):
        self.case = FAMILIES[name]
        self.X, means0 = self.case.data()
        self.start = bayes_start(self.case, self.X, means0)
        _quiet_fit(self._ours(1), self.X[:2000])  # JIT warm-up outside the timing

    def _ours(self, max_iter):
        return bayes_estimators(self.case, self.start, max_iter)[0]

    def time_em(self, name):
        _quiet_fit(self._ours(self.ITERS), self.X)

    def peakmem_em(self, name):
        _quiet_fit(self._ours(self.ITERS), self.X)

    def track_seconds_per_iteration(self, name):
        return _per_iteration(self._ours, self.X, self.ITERS)

    track_seconds_per_iteration.unit = "seconds"

    def track_sklearn_seconds_per_iteration(self, name):
        return _per_iteration(lambda m: bayes_estimators(self.case, self.start, m)[1],
                              self.X, 1)

    track_sklearn_seconds_per_iteration.unit = "seconds"

    def track_gmm_seconds_per_iteration(self, name):
        return _per_iteration(lambda m: gaussian_from(self.case, self.start, m), self.X,
                              self.ITERS)

    track_gmm_seconds_per_iteration.unit = "seconds"
