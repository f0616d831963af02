"""fastgmm._online: stepwise EM through ``partial_fit``.

References: numpy sums over responsibilities from scipy (tests/naive.py),
scipy log densities for the likelihood comparisons.  The exact re-centring
of the statistics it relies on is tested in test_stats.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from conftest import STREAM_CENTERS as CENTERS
from conftest import STREAM_SCALES as SCALES
from naive import e_step, em_iterations, make_blobs, suff_stats

import fastgmm


def test_step_size_schedule():
    """rho_t = (t + offset) ** -decay, and a decay of 0 is a constant step of 1."""
    from fastgmm._online import step_size
    assert step_size(1, 10.0, 0.6) == pytest.approx(11.0 ** -0.6, rel=1e-15)
    assert step_size(90, 10.0, 0.6) == pytest.approx(0.01 ** 0.6, rel=1e-15)
    assert step_size(5, 0.0, 0.0) == 1.0


def _mixture_logpdf(X, model):
    """Mean log density with scipy (independent of fastgmm's kernels)."""
    _, lse = e_step(X, model.weights_, model.means_, model.covariances_,
                    model.covariance_type)
    return float(lse.mean())


def test_first_call_fits_the_first_batch():
    """The first partial_fit is an ordinary fit of the first batch."""
    X = make_blobs(300, CENTERS, SCALES, seed=1)
    online = fastgmm.GaussianMixture(3, random_state=0).partial_fit(X)
    batch = fastgmm.GaussianMixture(3, random_state=0).fit(X)
    assert online.n_steps_ == 1
    np.testing.assert_allclose(online.means_, batch.means_, rtol=1e-12)
    np.testing.assert_allclose(online.covariances_, batch.covariances_, rtol=1e-12)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_second_call_is_one_stepwise_update(ctype):
    """Check the blend against a numpy stepwise-EM step from scipy responsibilities."""
    X1 = make_blobs(300, CENTERS, SCALES, seed=1)
    X2 = make_blobs(200, CENTERS, SCALES, seed=2) + 0.3
    w2 = np.random.default_rng(2).uniform(0.2, 3.0, size=X2.shape[0])
    model = fastgmm.GaussianMixture(3, covariance_type=ctype, random_state=0,
                                    learning_offset=3.0, learning_decay=0.7)
    model.partial_fit(X1)
    p = (model.weights_.copy(), model.means_.copy(), model.covariances_.copy())
    tied_shift = p[0] @ p[1]
    shift = tied_shift if ctype == "tied" else p[1]
    r1, _ = e_step(X1, *p, ctype)
    r2, lse2 = e_step(X2, *p, ctype)
    nk1, t1, s1 = suff_stats(X1, r1, np.ones(len(X1)), ctype, shift)
    nk2, t2, s2 = suff_stats(X2, r2, w2, ctype, shift)
    rho = (1 + 3.0) ** -0.7
    nk = (1 - rho) * nk1 / len(X1) + rho * nk2 / w2.sum()
    t = (1 - rho) * t1 / len(X1) + rho * t2 / w2.sum()
    s = (1 - rho) * s1 / len(X1) + rho * s2 / w2.sum()
    model.partial_fit(X2, sample_weight=w2)
    assert model.n_steps_ == 2
    assert model.lower_bound_ == pytest.approx(np.average(lse2, weights=w2), rel=1e-10)
    means = shift + t / nk[:, None]
    np.testing.assert_allclose(model.weights_, nk / nk.sum(), rtol=1e-10)
    np.testing.assert_allclose(model.means_, means, rtol=1e-9, atol=1e-9)
    if ctype == "full":
        m = t / nk[:, None]
        cov = s / nk[:, None, None] - m[:, :, None] * m[:, None, :] + 1e-6 * np.eye(2)
        np.testing.assert_allclose(model.covariances_, cov, rtol=1e-9, atol=1e-9)
    elif ctype == "diag":
        cov = s / nk[:, None] - (t / nk[:, None]) ** 2 + 1e-6
        np.testing.assert_allclose(model.covariances_, cov, rtol=1e-9, atol=1e-9)


def test_one_pass_over_a_million_points_is_within_one_percent_of_batch_em():
    """One pass of 100 batches over a million points comes within 1% of batch EM's log-likelihood
    (scipy) and recovers the generating means.
    """
    rng = np.random.default_rng(42)
    n, batch = 1_000_000, 10_000
    labels = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    chol = [np.array([[1.0, 0.0], [0.6, 0.8]]), np.array([[0.7, 0.0], [-0.3, 0.5]]),
            np.array([[1.5, 0.0], [0.0, 0.4]])]
    X = np.empty((n, 2))
    for k in range(3):
        idx = labels == k
        X[idx] = rng.normal(size=(idx.sum(), 2)) @ chol[k].T + CENTERS[k]
    online = fastgmm.GaussianMixture(3, random_state=0)
    for lo in range(0, n, batch):
        online.partial_fit(X[lo:lo + batch])
    assert online.n_steps_ == n // batch
    full = fastgmm.GaussianMixture(3, random_state=0, tol=1e-6, max_iter=500).fit(X)
    ll_online, ll_batch = _mixture_logpdf(X, online), _mixture_logpdf(X, full)
    gap = (ll_batch - ll_online) / abs(ll_batch)
    assert gap < 0.01, (ll_online, ll_batch)
    # Sanity: batch EM is the better of the two up to noise, and the online
    # model recovers the generating means.
    assert gap > -1e-3
    order = np.argsort(online.means_[:, 0])
    np.testing.assert_allclose(online.means_[order], np.array(CENTERS)[[2, 0, 1]],
                               atol=0.05)


def test_a_drifting_stream_is_tracked():
    """The whole mixture moves by (1.5, -1) after 20 batches; the model follows."""
    shift = np.array([1.5, -1.0])
    model = fastgmm.GaussianMixture(3, random_state=0)
    for step in range(80):
        X = make_blobs(700, CENTERS, SCALES, seed=100 + step)
        if step >= 20:
            X = X + shift
        model.partial_fit(X)
        if step == 19:
            before = model.means_[np.argsort(model.means_[:, 0])].copy()
    truth = np.array(CENTERS)[[2, 0, 1]]
    np.testing.assert_allclose(before, truth, atol=0.1)
    after = model.means_[np.argsort(model.means_[:, 0])]
    np.testing.assert_allclose(after, truth + shift, atol=0.1)
    # The tracked model explains fresh data of the new regime as well as a
    # batch fit on that data does (scipy log densities).
    fresh = make_blobs(2000, CENTERS, SCALES, seed=999) + shift
    ref = fastgmm.GaussianMixture(3, random_state=0).fit(fresh)
    assert _mixture_logpdf(fresh, model) > _mixture_logpdf(fresh, ref) - 0.02


def test_weights_count_rows():
    """An integer weight counts a row that many times in a stepwise update."""
    X1 = make_blobs(200, CENTERS, SCALES, seed=3)
    X2 = make_blobs(100, CENTERS, SCALES, seed=4)
    a = fastgmm.GaussianMixture(3, random_state=0).partial_fit(X1)
    b = fastgmm.GaussianMixture(3, random_state=0).partial_fit(X1)
    counts = np.random.default_rng(4).integers(1, 4, size=X2.shape[0])
    a.partial_fit(X2, sample_weight=counts)
    b.partial_fit(np.repeat(X2, counts, axis=0))
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-10)


def test_partial_fit_after_fit_continues_from_the_fitted_parameters():
    """partial_fit after fit is one EM iteration on the batch from the fitted parameters
    (numpy/scipy EM), and a new fit starts afresh.
    """
    X = make_blobs(300, CENTERS, SCALES, seed=5)
    Y = make_blobs(150, CENTERS, SCALES, seed=6)
    model = fastgmm.GaussianMixture(3, random_state=0).fit(X)
    p = (model.weights_.copy(), model.means_.copy(), model.covariances_.copy())
    model.partial_fit(Y)
    # The first batch after fit provides the running statistics: one EM
    # iteration on that batch from the fitted parameters.
    weights, means, cov, _ = em_iterations(Y, *p, "full", 1, 1e-6)
    assert model.n_steps_ == 1
    np.testing.assert_allclose(model.means_, means, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(model.covariances_, cov, rtol=1e-9, atol=1e-9)
    assert "learning_decay" in model.get_params()
    model.fit(X)  # starts afresh: the next partial_fit is again a first step
    model.partial_fit(Y)
    assert model.n_steps_ == 1
    np.testing.assert_allclose(model.means_, means, rtol=1e-9, atol=1e-9)


def test_mean_log_likelihood_helper_agrees_with_score():
    """The scipy mean log density used as reference here equals the model's score."""
    X = make_blobs(200, CENTERS, SCALES, seed=6)
    model = fastgmm.GaussianMixture(3, random_state=0).partial_fit(X)
    assert _mixture_logpdf(X, model) == pytest.approx(model.score(X), rel=1e-10)
