"""Wide, sparse missing data through the covariance side (issue #28, item 5).

Rows that miss more features than they observe (and many) take
``fastgmm._missing.wide_stats`` for full and tied covariances; the exact
missing-data EM must not change, whichever side a row takes.
"""

from __future__ import annotations

import numpy as np
import pytest
from naive import missing_em_iterations, random_params
from test_missing import (
    assert_iterates_match,
    assert_same_bits_on_one_and_two_threads,
    run_iterates,
)

import fastgmm._missing as mod
from fastgmm._missing import SplitRows, incomplete_stats, wide_stats
from fastgmm._params import GaussianParams

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def wide_data(seed=0, n=80, d=24, observed=5):
    """Rows of a 2-blob mixture observing ``observed`` to ``observed + 3`` features each."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + 3.0 * (rng.random((n, 1)) < 0.5)
    out = np.full_like(X, np.nan)
    for i in range(n):
        keep = rng.choice(d, size=observed + i % 4, replace=False)
        out[i, keep] = X[i, keep]
    # Every feature observed in a few rows.
    for j in range(d):
        out[j % n, j] = X[j % n, j]
        out[(j + 7) % n, j] = X[(j + 7) % n, j]
    return out


def test_the_rows_take_the_covariance_side():
    X = wide_data()
    split = SplitRows(X, None)
    m = np.isnan(X).sum(axis=1)
    wide = (m >= mod.WIDE_MIN_MISSING) & (m > X.shape[1] - m)
    assert wide.mean() > 0.8
    assert split.wide.X.shape[0] == wide.sum()
    assert split.incomplete.shape[0] == (~wide).sum()
    n_missing = np.isnan(split.wide.X).sum(axis=1)
    assert (n_missing >= mod.WIDE_MIN_MISSING).all()
    assert (n_missing > X.shape[1] - n_missing).all()
    # Rows missing less than they observe keep the missing-data kernels.
    dense = X.copy()
    dense[:, :20] = np.nan_to_num(dense[:, :20], nan=0.5)
    split = SplitRows(dense, None)
    assert split.wide is None and split.incomplete is not None


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_iterates_match_reference(covariance_type, weighted):
    X = wide_data()
    n, d = X.shape
    w = np.random.default_rng(1).uniform(0.2, 3.0, size=n) if weighted else None
    params = random_params(covariance_type, 3, d, seed=2)
    n_iter = 3
    ref, ref_bounds = missing_em_iterations(X, *params, covariance_type, n_iter, 1e-6, w)
    model, seen = run_iterates(X, covariance_type, params, n_iter, w)
    assert_iterates_match(model, seen, ref, ref_bounds)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_covariance_side_statistics_equal_the_kernels(covariance_type, weighted):
    X = wide_data(seed=3, n=120)
    w = np.random.default_rng(4).uniform(0.2, 3.0, size=X.shape[0]) if weighted else None
    weights, means, covs = random_params(covariance_type, 4, X.shape[1], seed=5)
    params = GaussianParams.from_covariances(covariance_type, weights, means, covs)
    split = SplitRows(X, w)
    got = wide_stats(split.wide, params)
    # The precision side (the missing-data kernels) on the same rows.
    ref = incomplete_stats(split.wide.X, split.wide.w, params)
    np.testing.assert_array_equal(got.shift, ref.shift)
    for name in ("nk", "t", "s"):
        a, b = getattr(got, name), getattr(ref, name)
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())
    assert got.log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-12)
    assert got.weight == ref.weight and got.n_samples == ref.n_samples


def test_covariance_side_is_thread_independent(monkeypatch):
    from fastgmm import _config
    from fastgmm._parallel import numba_threads

    # Enough rows (and small chunks) for the chunks to be shared between threads.
    X = wide_data(seed=6, n=_config.SERIAL_THRESHOLD + 500)
    monkeypatch.setattr(mod, "_WIDE_BLOCK_ROWS", 128)
    w, m, c = random_params("full", 4, X.shape[1], seed=7)
    params = GaussianParams.from_covariances("full", w, m, c)
    split = SplitRows(X, None)
    assert split.wide.X.shape[0] >= _config.SERIAL_THRESHOLD
    with numba_threads(1):
        a = wide_stats(split.wide, params)
    with numba_threads(2):
        b = wide_stats(split.wide, params)
    for name in ("nk", "t", "s"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.log_likelihood == b.log_likelihood
    assert_same_bits_on_one_and_two_threads(X, params)
