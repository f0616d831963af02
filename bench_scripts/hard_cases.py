"""fastgmm against scikit-learn where little work can be skipped, in one run.

The numbers of the "Hard cases" table in docs/guide/performance.rst.  Run
from the repository root (needs scikit-learn)::

    python bench_scripts/hard_cases.py            # n = 200,000 (a few minutes on 2 cores)
    python bench_scripts/hard_cases.py 20000      # a quick look

The method is compare.py's (beside this script), imported from there; its
``--family`` cases (overlapping, uniform, wide) now cover these shapes with
scikit-learn in the same run, and this script stays to reproduce the figures
quoted in docs/guide/performance.rst: seconds per EM
iteration from the same initial parameters, taken as the difference between
a 1-iteration fit and a longer one with ``tol=0``; the repeats of both
libraries interleaved and the fastest kept.  Besides the well-separated
clusters compare.py uses, the data here are overlapping clusters, uniform
noise, and a wide shape (d = 39, k = 64).
"""
import os
import sys
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "asv_bench"))
from benchmarks.common import make_problem, start_params  # noqa: E402
from compare import gemm_rate, time_fits  # noqa: E402
from sklearn.mixture import GaussianMixture as SK  # noqa: E402

import fastgmm  # noqa: E402


def flops(covariance_type, n, d, k):
    """Nominal flops of one iteration, compare.py's convention."""
    if covariance_type in ("full", "tied"):
        return n * k * (2 * d * d + 7 * d)
    return n * k * 4 * d


def overlapping(n, d, k, seed=0):
    """compare.py's clusters with centres 8 times closer: they overlap heavily."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=0.5, size=(k, d))
    scales = rng.uniform(0.5, 1.5, size=(k, d))
    z = rng.integers(0, k, size=n)
    X = rng.standard_normal((n, d)) * scales[z] + centers[z]
    return X, centers + rng.normal(scale=0.1, size=(k, d))


def uniform(n, d, k, seed=0):
    """No clusters at all: uniform noise in the unit cube, means started at random rows."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    return X, X[rng.choice(n, k, replace=False)]


def case(name, make, ctype, n, d, k, iters, gemm):
    X, means0 = make(n, d, k)
    init = start_params(ctype, means0)

    def ours(m):
        return fastgmm.GaussianMixture(k, covariance_type=ctype, tol=0, max_iter=m, **init)

    def theirs(m):
        return SK(k, covariance_type=ctype, tol=0, max_iter=m,
                  init_params="random_from_data", **init)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours(1).fit(X[:2000])
    t, _ = time_fits({"fastgmm": ours, "sklearn": theirs}, X,
                     {"fastgmm": iters, "sklearn": 2}, {"fastgmm": 3, "sklearn": 2})
    gf = flops(ctype, n, d, k) / t["fastgmm"] / 1e9
    print(f"{name:<34} {t['fastgmm']:9.4f} {t['sklearn']:9.4f} {t['sklearn'] / t['fastgmm']:7.1f}x"
          f" {gf:7.1f} {100 * gf / gemm:5.0f}%", flush=True)


if __name__ == "__main__":
    import numba
    import sklearn

    gemm = gemm_rate(np.float64)
    print(f"fastgmm {fastgmm.__version__}, scikit-learn {sklearn.__version__}, numba "
          f"{numba.__version__}, threads {numba.get_num_threads()}, GEMM {gemm:.1f} GFLOP/s")
    print(f"{'case':<34} {'fastgmm':>9} {'sklearn':>9} {'ratio':>8} {'GFLOP/s':>7} %GEMM")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    case(f"separated full n={n} d=k=16", make_problem, "full", n, 16, 16, 3, gemm)
    case(f"overlapping full n={n} d=k=16", overlapping, "full", n, 16, 16, 3, gemm)
    case(f"overlapping diag n={n} d=k=16", overlapping, "diag", n, 16, 16, 3, gemm)
    case(f"uniform full n={n} d=k=16", uniform, "full", n, 16, 16, 3, gemm)
    case(f"uniform diag n={n} d=k=16", uniform, "diag", n, 16, 16, 3, gemm)
    case(f"wide full n={n // 4} d=39 k=64", overlapping, "full", n // 4, 39, 64, 2, gemm)
