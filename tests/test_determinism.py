"""Determinism (runs, thread counts) and fits running concurrently from Python threads."""

import warnings
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest

import fastgmm
from fastgmm import _config

FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")
N_LARGE = 2 * _config.SERIAL_THRESHOLD  # large enough for the parallel kernels

needs_two_threads = pytest.mark.skipif(
    numba.config.NUMBA_NUM_THREADS < 2,
    reason="Numba runs with a single thread here: serial and parallel paths coincide")


def _data(n, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(3, 3))
    X = centers[rng.integers(0, 3, size=n)] + rng.normal(size=(n, 3))
    return X.astype(dtype)


def _fit(X, sample_weight=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.DegenerateDataWarning)
        return fastgmm.GaussianMixture(3, random_state=7, **kw).fit(
            X, sample_weight=sample_weight)


def _assert_bitwise(a, b):
    for name in FITTED:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.lower_bounds_ == b.lower_bounds_
    assert a.n_iter_ == b.n_iter_


def test_same_random_state_same_bits_across_runs(covariance_type):
    X = _data(N_LARGE, 0)
    _assert_bitwise(_fit(X, covariance_type=covariance_type, n_init=2),
                    _fit(X, covariance_type=covariance_type, n_init=2))


@needs_two_threads
@pytest.mark.parametrize("dtype, weighted", [(np.float64, False), (np.float32, True)])
def test_one_and_two_threads_give_the_same_bits(covariance_type, dtype, weighted):
    X = _data(N_LARGE + 37, 1, dtype)  # a ragged last chunk
    w = np.random.default_rng(2).uniform(0.5, 2.0, size=len(X)) if weighted else None
    assert len(X) >= _config.SERIAL_THRESHOLD  # the two-thread fit shares rows
    one = _fit(X, w, covariance_type=covariance_type, n_init=2, n_threads=1)
    two = _fit(X, w, covariance_type=covariance_type, n_init=2, n_threads=2)
    _assert_bitwise(one, two)
    np.testing.assert_array_equal(one.predict_proba(X), two.predict_proba(X))


@needs_two_threads
def test_repairs_are_deterministic_across_threads():
    """Degenerate data, on one thread (small data) and shared between threads (large)."""
    rng = np.random.default_rng(3)
    small = np.repeat(rng.normal(size=(3, 2)) * 5, 10, axis=0)  # 3 distinct points, k=5
    large = np.r_[np.repeat(small, 40, axis=0), rng.normal(size=(800, 2)) * 1e-9]
    for X in (small, large):
        runs = []
        for n_threads in (1, 2):
            with warnings.catch_warnings(record=True) as rec:
                warnings.simplefilter("always")
                m = fastgmm.GaussianMixture(5, n_init=3, reg_covar=0.0, random_state=0,
                                            n_threads=n_threads).fit(X)
            msgs = sorted(str(r.message) for r in rec
                          if r.category is fastgmm.DegenerateDataWarning)
            assert msgs
            runs.append((m, msgs))
        for m, msgs in runs[1:]:
            _assert_bitwise(runs[0][0], m)
            assert msgs == runs[0][1]


def test_concurrent_fits_from_a_thread_pool_match_sequential_fits():
    datasets = [_data(N_LARGE * 2, seed) for seed in range(4)]
    kinds = ["full", "diag", "tied", "spherical"]

    def job(i):
        m = _fit(datasets[i], covariance_type=kinds[i], n_init=2)
        return m, m.predict(datasets[i]), m.score_samples(datasets[i])

    sequential = [job(i) for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(job, range(4)))
    assert N_LARGE * 2 >= _config.SERIAL_THRESHOLD
    for (m1, p1, s1), (m2, p2, s2) in zip(sequential, concurrent, strict=True):
        _assert_bitwise(m1, m2)
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(s1, s2)
