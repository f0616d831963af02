"""Seeded problems shared by the benchmarks.

Datasets never change once published (otherwise the history is meaningless):
add a new seed or size instead of editing one.  ``FASTGMM_BENCH_QUICK=1``
shrinks every size (used by the test that keeps the suite from rotting).
"""

import os

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
