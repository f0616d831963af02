"""fastgmm._stats: sufficient statistics (merge, scale, recenter, moments) and the M-step.

References: the statistics' definitions and weighted moments computed with
numpy (tests/naive.py), responsibilities and densities from scipy.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, N_ITER, kernel_problem, model_from, rough_start, three_blobs
from naive import e_step, em_iterations, suff_stats

import fastgmm
from fastgmm import SuffStats
from fastgmm._compute import compute_stats

# ---------------------------------------------------------------------------
# SuffStats from numpy: M-step, merge, scale, recenter
# ---------------------------------------------------------------------------








@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_recenter_matches_statistics_about_the_new_shift(ctype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 3)) * [1.0, 2.0, 0.5] + [100.0, -50.0, 3.0]
    w = rng.uniform(0.1, 2.0, size=500)
    resp = rng.dirichlet(np.ones(4), size=500)
    shape = (3,) if ctype == "tied" else (4, 3)
    old = X.mean(axis=0) + rng.normal(scale=3.0, size=shape)
    new = X.mean(axis=0) + rng.normal(scale=3.0, size=shape)
    nk, t, s = suff_stats(X, resp, w, ctype, old)
    st = SuffStats(ctype, old, nk, t, s, -1.5, float(w.sum()), 500)
    moved = st.recenter(new)
    want_nk, want_t, want_s = suff_stats(X, resp, w, ctype, new)
    np.testing.assert_array_equal(moved.nk, want_nk)
    np.testing.assert_allclose(moved.t, want_t, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(moved.s, want_s, rtol=1e-10, atol=1e-9)
    np.testing.assert_array_equal(moved.shift, new)
    assert (moved.log_likelihood, moved.weight) == (st.log_likelihood, st.weight)
    np.testing.assert_array_equal(st.shift, old)  # the original is unchanged
    # Re-centred statistics merge with others about the new shift.
    both = moved + SuffStats(ctype, new.copy(), want_nk, want_t, want_s, 0.0, 1.0, 1)
    np.testing.assert_allclose(both.s, 2 * want_s, rtol=1e-10, atol=1e-9)
    with pytest.raises(ValueError, match="shift has shape"):
        st.recenter(np.zeros(7))


# ---------------------------------------------------------------------------
# Statistics from the E-step kernels add up like their rows
# ---------------------------------------------------------------------------


def test_stats_merge_equals_stats_of_union(covariance_type):
    X, params, _ = kernel_problem(covariance_type, 900, 3, 2, np.float64, seed=7)
    whole = compute_stats(X, None, params)
    parts = compute_stats(X[:400], None, params) + compute_stats(X[400:], None, params)
    np.testing.assert_allclose(parts.nk, whole.nk, rtol=1e-13)
    np.testing.assert_allclose(parts.s, whole.s, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(parts.log_likelihood, whole.log_likelihood, rtol=1e-13)
    assert parts.n_samples == whole.n_samples == 900


# ---------------------------------------------------------------------------
# The public sufficient-statistics API: suff_stats, apply_stats
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_suff_stats_match_numpy(ctype):
    X = three_blobs(seed=8)
    w = np.random.default_rng(8).uniform(0.5, 2.0, size=X.shape[0])
    model = fastgmm.GaussianMixture(3, covariance_type=ctype, random_state=0).fit(X)
    st = model.suff_stats(X, sample_weight=w)
    assert isinstance(st, SuffStats)
    resp, lse = e_step(X, model.weights_, model.means_, model.covariances_, ctype)
    rw = resp * w[:, None]
    np.testing.assert_allclose(st.nk, rw.sum(axis=0), rtol=1e-10)
    c = st.shift
    if ctype == "tied":
        np.testing.assert_allclose(st.t, rw.T @ X - rw.sum(0)[:, None] * c, rtol=1e-8,
                                   atol=1e-8)
        np.testing.assert_allclose(st.s, ((X - c) * w[:, None]).T @ (X - c), rtol=1e-10)
    else:
        for k in range(3):
            dx = X - c[k]
            np.testing.assert_allclose(st.t[k], rw[:, k] @ dx, rtol=1e-8, atol=1e-8)
            second = (dx * rw[:, k, None]).T @ dx
            want = second if ctype == "full" else np.diag(second)
            np.testing.assert_allclose(st.s[k], want, rtol=1e-10, atol=1e-10)
    assert st.log_likelihood == pytest.approx(float(w @ lse), rel=1e-12)
    assert st.weight == pytest.approx(w.sum(), rel=1e-14)
    assert st.n_samples == X.shape[0]


def test_map_reduce_iterations_equal_numpy_em():
    """The README's loop: stats per chunk, summed, then the M-step."""
    X = three_blobs(seed=9)
    init = rough_start("full", X, seed=9)
    # max_iter=0 loads the initial parameters without an iteration.
    model = model_from("full", init)
    model.max_iter = 0
    model.fit(X)
    chunks = np.array_split(X, 7)
    for _ in range(N_ITER):
        stats = sum(model.suff_stats(c) for c in chunks)
        model.apply_stats(stats)
    weights, means, cov, bounds = em_iterations(X, *init, "full", N_ITER, 1e-6)
    np.testing.assert_allclose(model.means_, means, rtol=1e-8)
    np.testing.assert_allclose(model.covariances_, cov, rtol=1e-8)
    np.testing.assert_allclose(model.weights_, weights, rtol=1e-8)
    assert model.lower_bound_ == pytest.approx(bounds[-1], rel=1e-10)
    # The statistics add up like the rows do.
    whole = model.suff_stats(X)
    parts = sum(model.suff_stats(c) for c in chunks)
    np.testing.assert_allclose(parts.s, whole.s, rtol=1e-12)
    assert parts.log_likelihood == pytest.approx(whole.log_likelihood, rel=1e-12)
