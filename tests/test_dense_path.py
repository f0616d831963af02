"""The dense (matrix-product) path of the E-step against numpy/scipy, and how it is chosen.

``fastgmm._config.DENSE_PATH`` forces a path ("always", "never"); "auto"
chooses per chunk.  Every expected value comes from ``naive.py`` (scipy's
densities, numpy's weighted covariances) or from the listed path run on the
same inputs; the workspace reports which path the rows took, so no test
passes by silently taking the other path.
"""

import numpy as np
import pytest
from conftest import RTOL
from naive import e_step, m_step, random_params

import fastgmm
from fastgmm import _config
from fastgmm._compute import (
    DENSE_MAX_OFFSET,
    StatsWorkspace,
    compute_stats,
    dense_inputs,
    kernel_inputs,
)
from fastgmm._parallel import thread_limit
from fastgmm._params import GaussianParams

DENSE_TYPES = ("full", "diag", "spherical")


@pytest.fixture
def path(monkeypatch):
    """Set ``DENSE_PATH`` for one test: ``path("always")``."""
    def set_path(value):
        monkeypatch.setattr(_config, "DENSE_PATH", value)
    return set_path


def overlapping(ctype, n, d, k, dtype=np.float64, seed=0, offset=0.0):
    """Rows drawn from random overlapping parameters (means within about 2 s.d.)."""
    w, means, cov = random_params(ctype, k, d, seed=seed)
    means = means * 0.5 + offset
    params = GaussianParams.from_covariances(ctype, w, means, cov)
    rng = np.random.default_rng(seed + 1)
    z = rng.choice(k, size=n, p=w)
    X = np.empty((n, d))
    for j in range(k):
        rows = z == j
        if ctype == "full":
            c = cov[j]
        elif ctype == "diag":
            c = np.diag(cov[j])
        else:
            c = cov[j] * np.eye(d)
        X[rows] = rng.multivariate_normal(means[j], c, size=rows.sum())
    return X.astype(dtype), params, (w, means, cov)


def run(X, sw, params, n_threads=1):
    """``compute_stats`` with its own workspace; returns (stats, fraction of rows dense)."""
    ws = StatsWorkspace(params.covariance_type, params.n_components, params.n_features,
                        n_threads, X.shape[0])
    with thread_limit(n_threads):
        stats = compute_stats(X, sw, params, ws)
    return stats, ws.dense_fraction


@pytest.mark.parametrize("ctype", DENSE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(700, 3, 4), (300, 1, 3), (1500, 8, 5), (257, 5, 2)])
@pytest.mark.parametrize("weighted", [False, True])
def test_dense_statistics_match_reference(path, ctype, dtype, shape, weighted):
    """Forced dense: log-likelihood and M-step equal scipy/numpy EM, every row dense."""
    n, d, k = shape
    X, params, (w, means, cov) = overlapping(ctype, n, d, k, dtype, seed=d + k)
    assert dense_inputs(params, dtype).on
    sw = np.random.default_rng(5).random(n) * 3 if weighted else None
    if weighted:
        sw[::7] = 0.0  # rows of zero weight count for nothing
    ref_resp, ref_lse = e_step(X, w, means, cov, ctype)
    ref_w, ref_means, ref_cov = m_step(X, ref_resp, ctype, 1e-6, sw)
    path("always")
    stats, frac = run(X, sw, params)
    assert frac == 1.0
    total = np.sum(ref_lse if sw is None else sw * ref_lse)
    np.testing.assert_allclose(stats.log_likelihood, total, rtol=10 * RTOL[dtype])
    new = stats.m_step(1e-6)
    tol = 1e-9 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(new.weights, ref_w, rtol=tol)
    np.testing.assert_allclose(new.means, ref_means, rtol=tol, atol=tol)
    np.testing.assert_allclose(new.covariances, ref_cov, rtol=tol, atol=tol)


@pytest.mark.parametrize("ctype", DENSE_TYPES)
def test_dense_and_listed_paths_agree_to_rounding(path, ctype):
    """The same statistics (shift, counts, moments, log-likelihood) from either path."""
    X, params, _ = overlapping(ctype, 3000, 6, 5, seed=11)
    path("never")
    listed, frac_listed = run(X, None, params)
    path("always")
    dense, frac_dense = run(X, None, params)
    assert frac_listed == 0.0 and frac_dense == 1.0
    np.testing.assert_array_equal(dense.shift, listed.shift)
    np.testing.assert_allclose(dense.nk, listed.nk, rtol=1e-12)
    np.testing.assert_allclose(dense.t, listed.t, rtol=1e-9, atol=1e-9 * np.abs(listed.t).max())
    if ctype == "spherical":
        # The dense path accumulates only the sum over features, all the
        # spherical M-step uses.
        np.testing.assert_allclose(dense.s.sum(axis=1), listed.s.sum(axis=1), rtol=1e-10)
    else:
        np.testing.assert_allclose(dense.s, listed.s, rtol=1e-10)
    np.testing.assert_allclose(dense.log_likelihood, listed.log_likelihood, rtol=1e-13)


@pytest.mark.parametrize("ctype", DENSE_TYPES)
def test_dense_path_far_from_the_origin(path, ctype):
    """Data and means 1e6 from the origin: the features are taken about the mixture's
    mean, so the statistics keep float64 accuracy (reference: the same problem
    computed by scipy/numpy about the origin).
    """
    X0, params0, (w, means, cov) = overlapping(ctype, 2000, 4, 3, seed=2)
    off = 1e6
    params = GaussianParams.from_covariances(ctype, w, means + off, cov)
    assert dense_inputs(params, np.float64).on
    path("always")
    stats, frac = run(X0 + off, None, params)
    assert frac == 1.0
    ref_resp, ref_lse = e_step(X0, w, means, cov, ctype)
    ref_w, ref_means, ref_cov = m_step(X0, ref_resp, ctype, 0.0)
    got_w, got_means, got_cov = stats.moments()
    np.testing.assert_allclose(stats.log_likelihood, ref_lse.sum(), rtol=1e-11)
    np.testing.assert_allclose(got_w, ref_w, rtol=1e-9)
    np.testing.assert_allclose(got_means - off, ref_means, atol=1e-8)
    np.testing.assert_allclose(got_cov, ref_cov, rtol=1e-8)


@pytest.mark.parametrize("ctype", DENSE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_far_apart_components_keep_the_listed_path(path, ctype, dtype):
    """A mean further from the mixture's mean than DENSE_MAX_OFFSET allows (in its own
    metric) switches the dense path off, even when forced; results stay exact.
    """
    k, d = 3, 2
    w, means, cov = random_params(ctype, k, d, seed=4)
    var = cov[:, 0, 0] if ctype == "full" else (cov[:, 0] if ctype == "diag" else cov)
    # Put component 0 far enough along the first axis to cross the limit.
    limit = DENSE_MAX_OFFSET[np.dtype(dtype)]
    means = means.copy()
    means[0, 0] += 4 * np.sqrt(limit * var.max()) * 10
    params = GaussianParams.from_covariances(ctype, w, means, cov)
    assert not dense_inputs(params, dtype).on
    X = np.random.default_rng(0).normal(size=(500, d)) + means[1]
    path("always")
    stats, frac = run(X.astype(dtype), None, params)
    assert frac == 0.0
    ref_resp, ref_lse = e_step(X.astype(dtype), w, means, cov, ctype)
    np.testing.assert_allclose(stats.log_likelihood, ref_lse.sum(), rtol=10 * RTOL[dtype])


@pytest.mark.parametrize("ctype", DENSE_TYPES)
@pytest.mark.parametrize("mode", ["always", "auto"])
def test_dense_path_same_bits_for_one_and_two_threads(path, ctype, mode):
    """Per-group slots folded in order: identical statistics for 1 and 2 threads."""
    X, params, _ = overlapping(ctype, 40_000, 5, 6, seed=8)
    path(mode)
    one, f1 = run(X, None, params, 1)
    two, f2 = run(X, None, params, 2)
    assert f1 == f2 and f1 > 0.9
    for name in ("nk", "t", "s"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    assert one.log_likelihood == two.log_likelihood


def test_auto_choice_follows_the_overlap(path):
    """Overlapping components: the dense path; separated clusters started at the truth:
    the listed path, whose bounds skip almost every pair.
    """
    path("auto")
    X, params, _ = overlapping("full", 40_000, 6, 8, seed=3)
    _, frac = run(X, None, params)
    assert frac > 0.9
    rng = np.random.default_rng(1)
    centers = rng.normal(scale=30.0, size=(8, 6))
    z = rng.integers(0, 8, size=40_000)
    Xs = rng.standard_normal((40_000, 6)) + centers[z]
    sep = GaussianParams.from_covariances("full", np.full(8, 1 / 8), centers,
                                          np.tile(np.eye(6), (8, 1, 1)))
    _, frac = run(Xs, None, sep)
    assert frac == 0.0


@pytest.mark.filterwarnings("ignore:Best performing initialization did not converge")
@pytest.mark.parametrize("ctype", DENSE_TYPES)
def test_fits_agree_whichever_path(path, ctype):
    """Whole fits (10 iterations, tol=0) through either path agree to 1e-9."""
    X, params, (w, means, cov) = overlapping(ctype, 5000, 4, 4, seed=21)
    fits = {}
    for mode in ("never", "always"):
        path(mode)
        fits[mode] = fastgmm.GaussianMixture(4, covariance_type=ctype, tol=0, max_iter=10,
                                             weights_init=w, means_init=means,
                                             random_state=0).fit(X)
    a, b = fits["never"], fits["always"]
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.lower_bound_, a.lower_bound_, rtol=1e-12)


def test_kernel_inputs_dense_model_gives_the_log_densities():
    """``const_k + phi(x - c) . wt_k`` equals scipy's weighted log density (full, diag and
    spherical, whose features are ``z`` and ``|z|^2``).
    """
    from scipy.stats import multivariate_normal

    for ctype in DENSE_TYPES:
        k, d = 3, 4
        w, means, cov = random_params(ctype, k, d, seed=9)
        params = GaussianParams.from_covariances(ctype, w, means, cov)
        _, _, dense = kernel_inputs(params, np.float64)
        X = np.random.default_rng(2).normal(size=(20, d))
        z = X - dense.shift64
        if ctype == "full":
            iu, ju = np.triu_indices(d)
            phi = np.hstack([z, z[:, iu] * z[:, ju]])
            full = cov
        elif ctype == "diag":
            phi = np.hstack([z, z * z])
            full = [np.diag(c) for c in cov]
        else:
            phi = np.hstack([z, np.sum(z * z, axis=1, keepdims=True)])
            full = [c * np.eye(d) for c in cov]
        got = phi @ dense.wt.T + dense.const
        ref = np.stack([np.log(w[j]) + multivariate_normal(means[j], full[j]).logpdf(X)
                        for j in range(k)], axis=1)
        np.testing.assert_allclose(got, ref, rtol=1e-12)
        np.testing.assert_allclose(dense.shift64, w @ means, rtol=1e-14)
