"""fastgmm._stats: sufficient statistics (merge, scale, recenter, moments) and the M-step.

References: the statistics' definitions and weighted moments computed with
numpy (tests/naive.py), responsibilities and densities from scipy.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, N_ITER, kernel_problem, model_from, rough_start, three_blobs
from naive import e_step, em_iterations, m_step, suff_stats

import fastgmm
from fastgmm import SuffStats
from fastgmm._compute import compute_stats

# ---------------------------------------------------------------------------
# SuffStats from numpy: M-step, merge, scale, recenter
# ---------------------------------------------------------------------------


def _numpy_problem(ctype, offset, seed=0):
    """Weighted rows far from the origin, soft responsibilities, shifts near the means."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, 3)) @ rng.normal(size=(3, 3)) + offset
    w = rng.uniform(0.1, 2.0, size=400)
    resp = rng.dirichlet(np.ones(4), size=400)
    shape = (3,) if ctype == "tied" else (4, 3)
    shift = X.mean(axis=0) + rng.normal(scale=2.0, size=shape)
    return X, w, resp, shift


@pytest.mark.parametrize("offset", [0.0, 1e6])
@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_m_step_of_statistics_is_the_weighted_maximum_likelihood(ctype, offset):
    """``SuffStats.m_step`` of statistics built with numpy equals numpy's weighted
    moments of the responsibilities plus ``reg_covar`` (naive.m_step), also a
    million units from the origin (second moments are taken about the shift).
    """
    X, w, resp, shift = _numpy_problem(ctype, offset)
    nk, t, s = suff_stats(X, resp, w, ctype, shift)
    params = SuffStats(ctype, shift, nk, t, s, 0.0, float(w.sum()), X.shape[0]).m_step(1e-4)
    ref_w, ref_means, ref_cov = m_step(X, resp, ctype, 1e-4, w)
    np.testing.assert_allclose(params.weights, ref_w, rtol=1e-12)
    np.testing.assert_allclose(params.means, ref_means, rtol=1e-12, atol=1e-12)
    rtol = 1e-7 if offset else 1e-10  # numpy's np.cov centres in one pass of its own
    np.testing.assert_allclose(params.covariances, ref_cov, rtol=rtol)
    weights, means, cov = SuffStats(ctype, shift, nk, t, s).moments()
    np.testing.assert_allclose(cov, m_step(X, resp, ctype, 0.0, w)[2], rtol=rtol)
    np.testing.assert_array_equal(weights, params.weights)


def test_sum_merges_and_scale_multiplies(covariance_type):
    """``sum`` of block statistics equals numpy's statistics of all rows; ``scale``
    multiplies every statistic (and the weight) but keeps the row count.
    """
    X, w, resp, shift = _numpy_problem(covariance_type, 5.0, seed=1)
    blocks = np.array_split(np.arange(X.shape[0]), 3)
    parts = [SuffStats(covariance_type, shift, *suff_stats(X[b], resp[b], w[b],
                                                           covariance_type, shift),
                       float(b.size), float(w[b].sum()), b.size) for b in blocks]
    total = sum(parts)
    nk, t, s = suff_stats(X, resp, w, covariance_type, shift)
    np.testing.assert_allclose(total.nk, nk, rtol=1e-12)
    np.testing.assert_allclose(total.t, t, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(total.s, s, rtol=1e-12)
    assert (total.log_likelihood, total.n_samples) == (float(X.shape[0]), X.shape[0])
    assert total.weight == pytest.approx(w.sum(), rel=1e-14)
    half = total.scale(0.5)
    for name in ("nk", "t", "s"):
        np.testing.assert_array_equal(getattr(half, name), 0.5 * getattr(total, name))
    assert (half.log_likelihood, half.weight) == (0.5 * total.log_likelihood,
                                                  0.5 * total.weight)
    assert half.n_samples == total.n_samples
    assert half.mean_log_likelihood == pytest.approx(total.mean_log_likelihood, rel=1e-15)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_recenter_matches_statistics_about_the_new_shift(ctype):
    """``recenter`` gives numpy's statistics about the new shift, leaves the original alone, merges
    with statistics about that shift, and refuses a wrong shape.
    """
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
    """Kernel statistics of two blocks of rows add up to those of all rows."""
    X, params, _ = kernel_problem(covariance_type, 900, 3, 2, np.float64, seed=7)
    whole = compute_stats(X, None, params)
    parts = compute_stats(X[:400], None, params) + compute_stats(X[400:], None, params)
    np.testing.assert_allclose(parts.nk, whole.nk, rtol=1e-13)
    # Spherical statistics define only the sum over features (see SuffStats).
    axis = 1 if covariance_type == "spherical" else None
    np.testing.assert_allclose(np.sum(parts.s, axis=axis), np.sum(whole.s, axis=axis),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(parts.log_likelihood, whole.log_likelihood, rtol=1e-13)
    assert parts.n_samples == whole.n_samples == 900


# ---------------------------------------------------------------------------
# The public sufficient-statistics API: suff_stats, apply_stats
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_suff_stats_match_numpy(ctype):
    """suff_stats gives the weighted statistics' definitions computed with numpy from scipy
    responsibilities, and their log-likelihood and weight.
    """
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
            if ctype == "spherical":
                # Only the sum over features is defined for spherical statistics.
                assert st.s[k].sum() == pytest.approx(np.trace(second), rel=1e-10)
            else:
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
