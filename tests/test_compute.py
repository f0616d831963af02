"""fastgmm._compute: kernel inputs, statistics and per-point outputs against scipy.

The compiled kernels are reached only through ``_compute`` (compute_stats,
resp_stats, point_outputs, kernel_inputs), in float64 and float32; every
expected value comes from numpy/scipy (tests/naive.py).
"""

import numpy as np
import pytest
from conftest import ATOL, RTOL, kernel_problem
from naive import e_step, full_covariances, m_step, random_params, weighted_log_prob
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from fastgmm._compute import RowHints, compute_stats, kernel_inputs, point_outputs, resp_stats
from fastgmm._parallel import thread_limit
from fastgmm._params import GaussianParams

SHAPES = [  # (n, d, k): edge cases included
    (700, 3, 4),
    (300, 1, 3),     # one feature
    (257, 5, 1),     # one component, chunk boundary + 1
    (6, 2, 6),       # n_samples == n_components
    (1500, 8, 3),    # several chunks
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n_threads", [2, 1])
def test_point_outputs_match_scipy(covariance_type, dtype, shape, n_threads):
    """Weighted log densities, log densities, labels and responsibilities equal scipy's for every
    covariance type, dtype, shape and thread count.
    """
    n, d, k = shape
    X, params, (w, means, cov) = kernel_problem(covariance_type, n, d, k, dtype)
    ref_lp = weighted_log_prob(X, w, means, cov, covariance_type)
    ref_resp, ref_lse = e_step(X, w, means, cov, covariance_type)
    rtol, atol = RTOL[dtype], ATOL[dtype]
    scale = np.abs(ref_lp).max()

    with thread_limit(n_threads):
        out = point_outputs(X, params, log_prob=True, score=True, labels=True)
    assert out["log_prob"].dtype == dtype and out["score"].dtype == dtype
    np.testing.assert_allclose(out["log_prob"], ref_lp, rtol=rtol, atol=atol * scale)
    np.testing.assert_allclose(out["score"], ref_lse, rtol=rtol, atol=atol * scale)
    # Labels: the argmax, except where two components tie within tolerance.
    top2 = np.sort(ref_lp, axis=1)[:, -2:] if k > 1 else None
    clear = np.ones(n, bool) if k == 1 else (top2[:, 1] - top2[:, 0]) > 10 * atol * scale
    np.testing.assert_array_equal(out["labels"][clear], ref_lp.argmax(axis=1)[clear])

    with thread_limit(n_threads):
        resp = point_outputs(X, params, resp=True)["resp"]
    np.testing.assert_allclose(resp, ref_resp, rtol=0, atol=100 * atol)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=10 * atol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_stats_m_step_match_reference(covariance_type, dtype, shape, weighted):
    """The fused E-step's log-likelihood, total weight and M-step equal numpy/scipy EM, weighted
    or not, in float64 and float32.
    """
    n, d, k = shape
    X, params, (w, means, cov) = kernel_problem(covariance_type, n, d, k, dtype, seed=3)
    sw = np.random.default_rng(5).random(n) * 3 if weighted else None
    ref_resp, ref_lse = e_step(X, w, means, cov, covariance_type)
    ref_w, ref_means, ref_cov = m_step(X, ref_resp, covariance_type, 1e-6, sw)

    stats = compute_stats(X, sw, params)
    total = np.sum(ref_lse if sw is None else sw * ref_lse)
    rtol = RTOL[dtype]
    np.testing.assert_allclose(stats.log_likelihood, total, rtol=rtol * 10)
    np.testing.assert_allclose(stats.weight, n if sw is None else sw.sum(), rtol=1e-14)
    new = stats.m_step(1e-6)
    # float32: responsibilities inherit the log-density error (see conftest).
    tol = 1e-9 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(new.weights, ref_w, rtol=tol, atol=tol * 1e-2)
    # A nearly empty component (n_k ~ 1e-7 happens with n == k) is pulled
    # towards its previous mean by the 10-eps guard added to n_k; compare the
    # pure maximum-likelihood reference on the components that carry mass.
    live = ref_resp.sum(axis=0) > 1e-3
    np.testing.assert_allclose(new.means[live], ref_means[live], rtol=tol, atol=tol)
    if covariance_type == "tied":
        np.testing.assert_allclose(new.covariances, ref_cov, rtol=tol, atol=tol)
    else:
        np.testing.assert_allclose(new.covariances[live], ref_cov[live], rtol=tol, atol=tol)


def test_log_sum_exp_far_tails_stay_finite():
    """Points 1e3 standard deviations from every component keep exact log densities and finite
    responsibilities (log domain throughout).
    """
    # Points ~1e3 standard deviations from every component: densities
    # underflow in linear space but the log-domain kernel keeps them exact.
    X = np.array([[1e3, -1e3], [0.0, 0.0]])
    params = GaussianParams.from_covariances(
        "full", np.array([0.5, 0.5]), np.array([[0.0, 0.0], [3.0, 0.0]]),
        np.stack([np.eye(2), np.eye(2)]))
    out = point_outputs(X, params, log_prob=True, score=True)
    ref = weighted_log_prob(X, params.weights, params.means, params.covariances, "full")
    np.testing.assert_allclose(out["log_prob"], ref, rtol=1e-12)
    np.testing.assert_allclose(out["score"], logsumexp(ref, axis=1), rtol=1e-12)
    resp = point_outputs(X, params, resp=True)["resp"]
    assert np.isfinite(resp).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_full_kernel_pruning_on_separated_clusters(dtype):
    """With almost every (row, component) pair pruned, the full kernel still gives scipy's
    responsibilities, scores, labels and M-step.
    """
    # Six clusters 30 units apart in 5-D: almost every (row, component) pair
    # is pruned by the eigenvalue bound, and the results must still equal the
    # dense reference (a pruned entry can only ever have had a responsibility
    # below exp(-50) of its row's largest).
    rng = np.random.default_rng(21)
    k, d, n = 6, 5, 3000
    means = rng.normal(scale=30.0, size=(k, d))
    a = rng.normal(size=(k, d, d))
    cov = a @ np.swapaxes(a, 1, 2) / d + 0.2 * np.eye(d)
    w = np.full(k, 1.0 / k)
    z = rng.integers(0, k, n)
    X = np.stack([rng.multivariate_normal(means[j], cov[j]) for j in z]).astype(dtype)
    params = GaussianParams.from_covariances("full", w, means, cov)
    ref_resp, ref_lse = e_step(X, w, means, cov, "full")
    out = point_outputs(X, params, resp=True)
    np.testing.assert_allclose(out["resp"], ref_resp, rtol=0, atol=100 * ATOL[dtype])
    score = point_outputs(X, params, score=True, labels=True)
    np.testing.assert_allclose(score["score"], ref_lse, rtol=RTOL[dtype] * 10)
    np.testing.assert_array_equal(score["labels"], ref_resp.argmax(axis=1))
    stats = compute_stats(X, None, params)
    ref_w, ref_m, ref_c = m_step(X, ref_resp, "full", 1e-6)
    new = stats.m_step(1e-6)
    tol = 1e-9 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(new.means, ref_m, rtol=tol, atol=tol)
    np.testing.assert_allclose(new.covariances, ref_c, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("spread", [30.0, 3.0])
def test_full_kernel_row_hints_any_guess_same_statistics(dtype, spread):
    """Row hints only choose where the search starts: last labels, random or constant hints all
    give the dense reference statistics.
    """
    # With row hints the full kernel starts each row from the hinted
    # component and bounds the others against it.  Whatever the hints say
    # (the last iteration's labels, or nonsense), the statistics must equal
    # the dense scipy reference: the hint only sets where the search starts.
    rng = np.random.default_rng(8)
    k, d, n = 7, 4, 4000
    means = rng.normal(scale=spread, size=(k, d))
    a = rng.normal(size=(k, d, d))
    cov = a @ np.swapaxes(a, 1, 2) / d + 0.3 * np.eye(d)
    w = rng.dirichlet(np.ones(k) * 3)
    z = rng.integers(0, k, n)
    X = np.stack([rng.multivariate_normal(means[j], cov[j]) for j in z]).astype(dtype)
    params = GaussianParams.from_covariances("full", w, means, cov)
    ref_resp, ref_lse = e_step(X, w, means, cov, "full")
    ref_w, ref_m, ref_c = m_step(X, ref_resp, "full", 1e-6)
    tol = 1e-9 if dtype == np.float64 else 2e-4
    hints = RowHints(n)
    compute_stats(X, None, params, hints=hints)          # fills the hints
    assert hints.valid
    if spread == 30.0:  # separated: the hints are the labels
        np.testing.assert_array_equal(hints.best, ref_resp.argmax(axis=1))
    for guess in ("last", "random", "constant"):
        if guess == "random":
            hints.best[:] = rng.integers(0, k, n)
        elif guess == "constant":
            hints.best[:] = k - 1
        stats = compute_stats(X, None, params, hints=hints)
        np.testing.assert_allclose(stats.log_likelihood, ref_lse.sum(), rtol=RTOL[dtype] * 10)
        new = stats.m_step(1e-6)
        np.testing.assert_allclose(new.weights, ref_w, rtol=tol, atol=tol * 1e-2)
        np.testing.assert_allclose(new.means, ref_m, rtol=tol, atol=tol)
        np.testing.assert_allclose(new.covariances, ref_c, rtol=tol, atol=tol)


@pytest.mark.parametrize("d", [4, 6, 7, 9, 12, 17])
def test_full_log_prob_every_remainder_of_the_triangle(d):
    """The blocked triangular product gives scipy's log densities for every remainder of d."""
    # The triangular product runs two output and four input features per
    # pass, with remainders depending on d: every case against scipy.
    rng = np.random.default_rng(d)
    k, n = 3, 300
    w, means, cov = random_params("full", k, d, d)
    X = rng.normal(size=(n, d)) * 2.0 + means[rng.integers(0, k, n)]
    params = GaussianParams.from_covariances("full", w, means, cov)
    out = point_outputs(X, params, log_prob=True)["log_prob"]
    ref = weighted_log_prob(X, w, means, cov, "full")
    np.testing.assert_allclose(out, ref, rtol=1e-11, atol=1e-11 * np.abs(ref).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_with_no_finite_density_get_uniform_responsibilities(covariance_type, dtype):
    """A row whose distance overflows gets score -inf and uniform responsibilities, never NaN,
    and the other rows stay exact, with and without hints.
    """
    # A row so far out that its squared distance overflows has log density
    # -inf under every component: it must get lse = -inf and uniform
    # responsibilities (never NaN), and the other rows stay exact, with and
    # without row hints.
    n, d, k = 600, 3, 4
    X, params, (w, means, cov) = kernel_problem(covariance_type, n, d, k, dtype, seed=13)
    far = 1e160 if dtype == np.float64 else 1e20
    X[[5, 400]] = far
    ok = np.ones(n, bool)
    ok[[5, 400]] = False
    ref_resp, ref_lse = e_step(X[ok], w, means, cov, covariance_type)
    out = point_outputs(X, params, resp=True)["resp"]
    np.testing.assert_allclose(out[~ok], 1.0 / k, rtol=1e-6)
    np.testing.assert_allclose(out[ok], ref_resp, rtol=0, atol=100 * ATOL[dtype])
    sc = point_outputs(X, params, score=True, labels=True)
    assert np.all(sc["score"][~ok] == -np.inf)
    np.testing.assert_allclose(sc["score"][ok], ref_lse, rtol=RTOL[dtype] * 10)
    hints = RowHints(n)
    for _ in range(2):  # unhinted, then hinted (full)
        stats = compute_stats(X, None, params, hints=hints)
        assert stats.log_likelihood == -np.inf
        np.testing.assert_allclose(stats.nk.sum(), n, rtol=1e-12)
        np.testing.assert_allclose(stats.nk, ref_resp.sum(axis=0) + 2.0 / k, rtol=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n", [5, 3000])
def test_hard_labels_give_the_one_hot_statistics(covariance_type, weighted, n):
    """Statistics from labels (no one-hot matrix) equal those of the one-hot
    responsibilities, bit for bit, and numpy's weighted moments.
    """
    k, d = 4, 3
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, d)) * 2 + 5
    labels = rng.integers(0, k, n)
    labels[:k] = np.arange(k)  # every component present
    sw = rng.uniform(0.5, 2.0, n) if weighted else None
    onehot = np.eye(k)[labels]
    shift = np.zeros(d) if covariance_type == "tied" else rng.normal(size=(k, d))
    a = resp_stats(X, sw, None, k, shift, covariance_type, labels=labels)
    b = resp_stats(X, sw, lambda lo, hi: onehot[lo:hi], k, shift, covariance_type)
    for name in ("nk", "t", "s"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    ref_w, ref_means, ref_cov = m_step(X, onehot, covariance_type, 1e-6, sw)
    new = a.m_step(1e-6)
    np.testing.assert_allclose(new.weights, ref_w, rtol=1e-12)
    np.testing.assert_allclose(new.means, ref_means, rtol=1e-12)
    np.testing.assert_allclose(new.covariances, ref_cov, rtol=1e-10, atol=1e-11)


# ---------------------------------------------------------------------------
# Kernel inputs: what the kernels read besides the data
# ---------------------------------------------------------------------------


def _log_norms(weights, means, full_covs):
    """``log w_k + log N(mu_k | mu_k, Sigma_k)`` with scipy."""
    return [np.log(w) + multivariate_normal(m, c).logpdf(m)
            for w, m, c in zip(weights, means, full_covs, strict=True)]


def _mahalanobis(X, means, full_covs):
    """Squared Mahalanobis distances (n, k) with numpy's inverse."""
    inv = np.linalg.inv(full_covs)
    return np.stack([np.einsum("ni,ij,nj->n", X - m, p, X - m)
                     for m, p in zip(means, inv, strict=True)], axis=1)


def test_full_kernel_inputs_bound_the_distances_it_prunes():
    """The full kernel's inputs against numpy/scipy.

    Log norms are ``log w_k + log N(mu_k | mu_k, Sigma_k)``; the precision
    floor lies just under the smallest eigenvalue of each precision matrix;
    the pair bounds are ``w = v / sqrt(v' Sigma_j v)`` and ``c = |mu_b - mu_j|
    / sqrt(v' Sigma_j v)`` for the unit vector ``v`` from ``mu_j`` to
    ``mu_b``, and ``w . (x - mu_b) + c`` never exceeds the Mahalanobis
    distance to ``mu_j`` (Cauchy-Schwarz), which pruning relies on.
    """
    k, d = 5, 4
    w, means, cov = random_params("full", k, d, seed=3)
    params = GaussianParams.from_covariances("full", w, means, cov)
    shift, (m, prec, log_norm, floor, pair_w, pair_c), _ = kernel_inputs(params, np.float64)
    np.testing.assert_array_equal(shift, means)
    np.testing.assert_array_equal(m, means)
    for j in range(k):  # U U^T is the precision matrix
        np.testing.assert_allclose(prec[j] @ prec[j].T, np.linalg.inv(cov[j]), rtol=1e-10)
    np.testing.assert_allclose(log_norm, _log_norms(w, means, cov), rtol=1e-12)
    smallest = np.array([np.linalg.eigvalsh(p)[0] for p in np.linalg.inv(cov)])
    assert (floor <= smallest).all() and (floor >= 0.99 * smallest).all()

    assert pair_w.shape == (k, k, d) and pair_c.shape == (2, k, k)
    rng = np.random.default_rng(4)
    X = rng.normal(scale=3.0, size=(3000, d)) + means[rng.integers(0, k, 3000)]
    dist = np.sqrt(_mahalanobis(X, means, cov))
    for b in range(k):
        np.testing.assert_array_equal(pair_w[b, b], 0.0)
        for j in range(k):
            if b == j:
                continue
            v = (means[b] - means[j]) / np.linalg.norm(means[b] - means[j])
            s = v @ cov[j] @ v
            np.testing.assert_allclose(pair_w[b, j], v / np.sqrt(s), rtol=1e-10)
            np.testing.assert_allclose(pair_c[0, b, j],
                                       np.linalg.norm(means[b] - means[j]) / np.sqrt(s),
                                       rtol=1e-10)
            assert pair_c[1, b, j] >= np.linalg.norm(pair_w[b, j])
            bound = (X - means[b]) @ pair_w[b, j] + pair_c[0, b, j]
            assert (bound <= dist[:, j] * (1 + 1e-12) + 1e-12).all(), (b, j)
            assert bound.max() > 0.5 * dist[:, j].min()  # not a vacuous bound


def test_single_component_full_inputs_have_no_pair_bounds():
    """With one component there is no pair to bound: the bound arrays are empty."""
    w, means, cov = random_params("full", 1, 3, seed=5)
    params = GaussianParams.from_covariances("full", w, means, cov)
    _, (*_, pair_w, pair_c), _ = kernel_inputs(params, np.float32)
    assert pair_w.shape == (0, 0, 3) and pair_w.dtype == np.float32
    assert pair_c.shape == (2, 0, 0)


@pytest.mark.parametrize("ctype", ["tied", "diag", "spherical"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dense_kernel_inputs_give_the_mahalanobis_distances(ctype, dtype):
    """Tied, diag and spherical inputs reproduce numpy's Mahalanobis distances.

    Tied: statistics about the weighted mean of the means, the means projected
    on the precision factor ``U`` (``|(x - c) U - proj_k|^2``); diag and
    spherical: one precision factor per feature (``(k, d)``) or per component
    (``(k, 1)``, flagged spherical).  Log norms as scipy's densities at the
    means.  Everything the kernels read is in the data's dtype.
    """
    k, d = 3, 4
    w, means, cov = random_params(ctype, k, d, seed=6)
    full = full_covariances(ctype, cov, k, d)
    params = GaussianParams.from_covariances(ctype, w, means, cov)
    shift, args, _ = kernel_inputs(params, dtype)
    X = np.random.default_rng(7).normal(scale=2.0, size=(50, d))
    ref = _mahalanobis(X, means, full)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    if ctype == "tied":
        c, proj, pc, log_norm = args
        np.testing.assert_allclose(shift, w @ means, rtol=1e-14)
        assert c.dtype == proj.dtype == pc.dtype == dtype
        got = np.stack([(((X - shift) @ pc.astype(np.float64) - p) ** 2).sum(axis=1)
                        for p in proj.astype(np.float64)], axis=1)
    else:
        m, prec, log_norm, spherical = args
        np.testing.assert_array_equal(shift, means)
        assert spherical == (ctype == "spherical")
        assert prec.shape == ((k, 1) if spherical else (k, d)) and prec.dtype == dtype
        assert m.dtype == dtype
        got = np.stack([(((X - means[j]) * prec[j].astype(np.float64)) ** 2).sum(axis=1)
                        for j in range(k)], axis=1)
    np.testing.assert_allclose(got, ref, rtol=rtol)
    assert log_norm.dtype == np.float64
    np.testing.assert_allclose(log_norm, _log_norms(w, means, full), rtol=1e-12)


@pytest.mark.parametrize("dtype, far", [(np.float64, 1e10), (np.float32, 1e8)])
def test_rows_far_from_every_component_keep_their_exact_density(covariance_type, dtype, far):
    """A row far away (log density near -1e20) gets responsibilities summing to 1,
    its most probable component, and its exact, finite log density (scipy reference).

    Its log densities are so large that ``max - 50`` rounds back to the max, so
    the cut-off must be taken on differences.
    """
    w, means, cov = random_params(covariance_type, 3, 2, 5)
    params = GaussianParams.from_covariances(covariance_type, w, means, cov)
    X = np.array([[far, 0.0], [0.0, far], [0.5, -0.5]], dtype=dtype)
    ref = weighted_log_prob(X.astype(np.float64), w, means, cov, covariance_type)
    out = point_outputs(X, params, resp=True, score=True, labels=True)
    np.testing.assert_allclose(out["resp"].sum(axis=1), 1.0, rtol=1e-6)
    assert np.isfinite(out["score"]).all()
    np.testing.assert_allclose(out["score"], logsumexp(ref, axis=1), rtol=RTOL[dtype] * 10)
    np.testing.assert_array_equal(out["labels"][:2], ref[:2].argmax(axis=1))
