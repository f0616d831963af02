"""EM fit and predict speed, memory, threads, dtypes, cold start, accuracy."""

import warnings

import numpy as np

import fastgmm

from .common import fixed_work, make_problem, size, start_params


def _fit(X, covariance_type, k, means0, max_iter=3, **extra):
    est = fastgmm.GaussianMixture(**fixed_work(covariance_type, k, max_iter, **extra),
                                  **start_params(covariance_type, means0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        return est.fit(X)


class EMFit:
    """Three EM iterations from fixed parameters, per covariance type and shape."""

    params = (["full", "tied", "diag", "spherical"],
              [(100_000, 16, 16), (20_000, 64, 8), (100_000, 4, 4)])
    param_names = ["covariance_type", "n_d_k"]
    timer = __import__("timeit").default_timer  # wall clock: process time sums threads

    def setup(self, covariance_type, n_d_k):
        n, d, k = n_d_k
        self.X, self.means0 = make_problem(size(n), d, k)
        _fit(self.X[:2000], covariance_type, k, self.means0, max_iter=1)  # JIT warm-up

    def time_fit(self, covariance_type, n_d_k):
        _fit(self.X, covariance_type, n_d_k[2], self.means0)

    def peakmem_fit(self, covariance_type, n_d_k):
        _fit(self.X, covariance_type, n_d_k[2], self.means0)


class Dtype:
    """float32 against float64 input (full, d = k = 16)."""

    params = (["float64", "float32"],)
    param_names = ["dtype"]
    timer = __import__("timeit").default_timer

    def setup(self, dtype):
        self.X, self.means0 = make_problem(size(200_000), 16, 16, np.dtype(dtype))
        _fit(self.X[:2000], "full", 16, self.means0, max_iter=1)

    def time_fit(self, dtype):
        _fit(self.X, "full", 16, self.means0)


class Threads:
    """Thread scaling of one fit (full, d = k = 16)."""

    params = ([1, 2],)
    param_names = ["n_threads"]
    timer = __import__("timeit").default_timer

    def setup(self, n_threads):
        self.X, self.means0 = make_problem(size(200_000), 16, 16)
        _fit(self.X[:2000], "full", 16, self.means0, max_iter=1)

    def time_fit(self, n_threads):
        _fit(self.X, "full", 16, self.means0, n_threads=n_threads)


class Predict:
    """Per-point outputs of a fitted model."""

    timer = __import__("timeit").default_timer

    def setup(self):
        self.X, self.means0 = make_problem(size(200_000), 16, 16)
        self.model = _fit(self.X[:5000], "full", 16, self.means0, max_iter=2)
        self.model.predict_proba(self.X[:100])

    def time_predict(self):
        self.model.predict(self.X)

    def time_predict_proba(self):
        self.model.predict_proba(self.X)

    def peakmem_predict_proba(self):
        self.model.predict_proba(self.X)


class Tiny:
    """The wholesale size: 440 x 2, k = 2, end to end with defaults."""

    timer = __import__("timeit").default_timer

    def setup(self):
        self.X, _ = make_problem(440, 2, 2, seed=3)
        fastgmm.fit(self.X, 2, random_state=0)

    def time_fit_defaults(self):
        fastgmm.fit(self.X, 2, random_state=0)


class ColdStart:
    """Import and a first fit in a fresh interpreter, warm and cold disk cache."""

    def timeraw_import(self):
        return "import fastgmm"

    def timeraw_first_fit(self):
        return """
import numpy as np, fastgmm
X = np.random.default_rng(0).normal(size=(2000, 4))
fastgmm.fit(X, 3, random_state=0)
"""

    def timeraw_first_fit_cold(self):
        # An empty Numba cache: every kernel of a default full fit compiles.
        return """
import os, tempfile
with tempfile.TemporaryDirectory(prefix="fastgmm-cold-") as cache:
    os.environ["NUMBA_CACHE_DIR"] = cache
    import numpy as np, fastgmm
    X = np.random.default_rng(0).normal(size=(20000, 4))
    fastgmm.fit(X, 3, random_state=0)
"""

    timeraw_first_fit_cold.number = 1
    timeraw_first_fit_cold.repeat = 1
    timeraw_first_fit_cold.rounds = 1
    timeraw_first_fit_cold.timeout = 600


class Accuracy:
    """Log-likelihood gap to scikit-learn from the same start (0 is parity)."""

    params = (["full", "tied", "diag", "spherical"],)
    param_names = ["covariance_type"]

    def setup(self, covariance_type):
        try:
            import sklearn.mixture  # noqa: F401
        except ImportError:
            raise NotImplementedError("scikit-learn not installed") from None
        self.X, self.means0 = make_problem(size(50_000), 8, 6)

    def track_loglik_gap_to_sklearn(self, covariance_type):
        from sklearn.mixture import GaussianMixture as SK

        ours = _fit(self.X, covariance_type, 6, self.means0, max_iter=10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = SK(**fixed_work(covariance_type, 6, 10),
                     **start_params(covariance_type, self.means0)).fit(self.X)
        return float(ours.score(self.X) - ref.score(self.X))

    track_loglik_gap_to_sklearn.unit = "nats per sample"
