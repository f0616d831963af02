"""fastgmm._init: k-means++, k-means, random_from_data, user-given starts, the first M-step.

References: numpy nearest-centre assignments and Lloyd iterations, numpy's
weighted moments (tests/naive.py), and the statistics of sampling.
"""

import numpy as np
import pytest
from conftest import BLOB_CENTERS, COVARIANCE_TYPES
from naive import lloyd, m_step, make_blobs, nearest, precisions, random_params

import fastgmm
from fastgmm import _init


def _row_index(X, row):
    """Index of the row of ``X`` equal to ``row`` (fails if there is none)."""
    hits = np.flatnonzero((X == row).all(axis=1))
    assert hits.size, row
    return int(hits[0])


# ---------------------------------------------------------------------------
# k-means++ seeding
# ---------------------------------------------------------------------------


def test_kmeans_plusplus_seeds_are_distinct_rows():
    """Seeds are rows of X; a row already chosen has distance 0 and is never drawn
    again, so asking for as many seeds as rows picks every row once; a row of zero
    weight is never drawn (however far it lies).
    """
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3))
    for seed in range(3):
        seeds = _init.kmeans_plusplus(X, None, 40, np.random.RandomState(seed))
        assert seeds.dtype == X.dtype
        assert sorted(_row_index(X, s) for s in seeds) == list(range(40))
    Xf = np.r_[X, np.full((5, 3), 1e3)]            # far rows of zero weight
    w = np.r_[rng.uniform(0.5, 2.0, 40), np.zeros(5)]
    for seed in range(10):
        seeds = _init.kmeans_plusplus(Xf, w, 6, np.random.RandomState(seed))
        rows = [_row_index(Xf, s) for s in seeds]
        assert len(set(rows)) == 6 and max(rows) < 40, rows


def test_kmeans_plusplus_favours_far_points():
    """Seeds are drawn with probability proportional to the squared distance to the
    nearest seed: five points 1000 units from a blob of 1000 hold almost all of
    that mass, so one of the two seeds lands there every time (a uniform draw
    would pick them 0.5% of the time).
    """
    rng = np.random.default_rng(1)
    X = np.r_[rng.normal(size=(1000, 2)), np.full((5, 2), 1000.0) + rng.normal(size=(5, 2))]
    far = 0
    for seed in range(50):
        seeds = _init.kmeans_plusplus(X, None, 2, np.random.RandomState(seed))
        rows = [_row_index(X, s) for s in seeds]
        far += sum(r >= 1000 for r in rows)
        assert sorted(r >= 1000 for r in rows) == [False, True], rows
    assert far == 50


# ---------------------------------------------------------------------------
# k-means (Lloyd iterations)
# ---------------------------------------------------------------------------


def test_weighted_kmeans_equals_kmeans_on_repeated_rows(monkeypatch):
    """From the same seeds, weighted Lloyd iterations with integer weights give the
    centres and labels of unweighted ones on rows repeated that many times, and
    both reach numpy's weighted Lloyd fixed point.
    """
    rng = np.random.default_rng(5)
    X = np.r_[rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + [6.0, 0.0],
              rng.normal(size=(200, 2)) + [3.0, 5.0]]
    w = rng.integers(0, 4, size=X.shape[0])
    seeds = X[[0, 250, 450]] + 0.5
    monkeypatch.setattr(_init, "kmeans_plusplus", lambda X, w, k, rng: seeds.copy())
    centers_w, labels_w = _init.kmeans(X, w.astype(np.float64), 3, np.random.RandomState(0),
                                       tol=0.0)
    centers_r, labels_r = _init.kmeans(np.repeat(X, w, axis=0), None, 3,
                                       np.random.RandomState(0), tol=0.0)
    np.testing.assert_allclose(centers_w, centers_r, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.repeat(labels_w, w), labels_r)
    ref_centers, ref_labels = lloyd(X, w, seeds)
    np.testing.assert_allclose(centers_w, ref_centers, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(labels_w, ref_labels)


@pytest.mark.parametrize("dtype, offset", [(np.float64, 0.0), (np.float64, 1e6),
                                           (np.float32, 0.0), (np.float32, 1e3)])
def test_lloyd_assignments_are_the_nearest_centres(dtype, offset):
    """The Lloyd step's labels and sums equal numpy's exact nearest centres, also far
    from the origin (the kernel compares distances as one matrix product about the
    centres' mean).  Rows whose two nearest centres tie to within the rounding of
    that product are left out.
    """
    rng = np.random.default_rng(12)
    X = (rng.normal(size=(3000, 7)) + offset).astype(dtype)
    centers = X[rng.choice(3000, size=9, replace=False)] + np.asarray(0.1, dtype)
    labels = np.empty(3000, dtype=np.int64)
    sums, counts = _init._LloydStep(X, None, 9)(centers, labels)
    X64, c64 = X.astype(np.float64), centers.astype(np.float64)
    d2 = ((X64[:, None, :] - c64[None]) ** 2).sum(axis=2)
    two = np.sort(d2, axis=1)[:, :2]
    eps = np.finfo(dtype).eps
    mid = c64.mean(axis=0)
    scale = ((X64 - mid) ** 2).sum(axis=1) + ((c64 - mid) ** 2).sum(axis=1).max()
    clear = two[:, 1] - two[:, 0] > 64 * eps * scale
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(labels[clear], nearest(X64, c64)[clear])
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=9))
    want = np.stack([(X64[labels == j] - c64[j]).sum(axis=0) for j in range(9)])
    np.testing.assert_allclose(sums, want, rtol=1e-6 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-9)


def test_weighted_mean_var_is_numpys_two_pass_answer_far_from_the_origin():
    """Weighted column means and biased variances, block by block, 1e8 from the origin
    (a one-pass E[x^2] - E[x]^2 would lose every digit there).
    """
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 3)) * [1.0, 0.1, 3.0] + 1e8
    Z = X - 1e8                      # exact: X and 1e8 are within a factor 2
    w = rng.uniform(0.0, 2.0, 1000)
    for weights in (None, w):
        mean, var = _init.weighted_mean_var(X, weights, block=77)
        ref_mean = np.average(Z, axis=0, weights=weights)
        ref_var = np.average((Z - ref_mean) ** 2, axis=0, weights=weights)
        np.testing.assert_allclose(mean - 1e8, ref_mean, rtol=0, atol=1e-7)
        np.testing.assert_allclose(var, ref_var, rtol=1e-9)


# ---------------------------------------------------------------------------
# Initial parameters
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("init", ["kmeans", "k-means++"])
@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_initial_parameters_are_the_weighted_moments_of_the_clusters(ctype, init, weighted):
    """On clusters 100 standard deviations apart every seeding finds one seed per
    cluster, so the nearest-seed labels are the true ones and the initial
    parameters must be numpy's weighted moments of those labels (+ reg_covar).
    """
    rng = np.random.default_rng(2)
    k, d = 4, 3
    centers = rng.normal(scale=100.0, size=(k, d))
    labels = np.repeat(np.arange(k), [50, 80, 30, 60])
    X = centers[labels] + rng.normal(size=(labels.size, d))
    w = rng.uniform(0.5, 2.0, labels.size) if weighted else None
    ref_w, ref_means, ref_cov = m_step(X, np.eye(k)[labels], ctype, 1e-6, w)
    for seed in range(3):
        p = _init.initial_params(X, w, k, ctype, init, np.random.RandomState(seed), 1e-6)
        order = nearest(ref_means, p.means)   # component of p for each true cluster
        assert sorted(order) == list(range(k))
        np.testing.assert_allclose(p.weights[order], ref_w, rtol=1e-12)
        np.testing.assert_allclose(p.means[order], ref_means, rtol=1e-10, atol=1e-10)
        cov = p.covariances if ctype == "tied" else p.covariances[order]
        np.testing.assert_allclose(cov, ref_cov, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_random_from_data_seeds_are_rows_and_labels_give_numpy_moments(monkeypatch, weighted):
    """'random_from_data' seeds are distinct rows of X of positive weight, drawn
    uniformly; every row is labelled with its nearest seed, and the initial
    parameters are numpy's weighted moments of those labels.
    """
    rng = np.random.default_rng(4)
    n, k = 20, 3
    X = rng.normal(size=(n, 2)) * 3
    w = np.r_[rng.uniform(0.5, 2.0, n - 4), np.zeros(4)] if weighted else None
    seen = []
    real = _init._assign_to_seeds

    def spy(X_, w_, seeds):
        labels = real(X_, w_, seeds)
        seen.append((np.array(seeds), labels.copy()))
        return labels

    monkeypatch.setattr(_init, "_assign_to_seeds", spy)
    counts = np.zeros(n)
    draws = 300
    for seed in range(draws):
        p = _init.initial_params(X, w, k, "diag", "random_from_data",
                                 np.random.RandomState(seed), 1e-6)
        seeds, labels = seen[-1]
        rows = [_row_index(X, s) for s in seeds]
        assert len(set(rows)) == k
        counts[rows] += 1
        np.testing.assert_array_equal(labels, nearest(X, seeds))
        if seed < 20:
            ref_w, ref_means, ref_cov = m_step(X, np.eye(k)[labels], "diag", 1e-6, w)
            np.testing.assert_allclose(p.weights, ref_w, rtol=1e-12)
            np.testing.assert_allclose(p.means, ref_means, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(p.covariances, ref_cov, rtol=1e-10)
    eligible = n - 4 if weighted else n
    assert (counts[eligible:] == 0).all()
    # Each eligible row: binomial(300, k / eligible); within 5 sd of its mean.
    p_row = k / eligible
    spread = 5 * np.sqrt(draws * p_row * (1 - p_row))
    assert np.abs(counts[:eligible] - draws * p_row).max() < spread, counts


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_initializer_returns_the_user_arrays_when_all_three_are_given(ctype):
    """All three user arrays given: no data is read and no random number drawn; the
    start is the user's weights and means, with the covariances numpy inverts
    from the user's precisions.
    """
    k, d = 3, 2
    w, means, cov = random_params(ctype, k, d, seed=8)
    prec = precisions(ctype, cov)
    rng = np.random.RandomState(0)
    state = rng.get_state()[1].copy()
    p = _init.Initializer(None, None, k, ctype, "kmeans", 1e-6, w, means, prec)(rng)
    np.testing.assert_array_equal(rng.get_state()[1], state)
    np.testing.assert_array_equal(p.weights, w)
    np.testing.assert_array_equal(p.means, means)
    np.testing.assert_allclose(p.covariances, cov, rtol=1e-10)
    np.testing.assert_allclose(p.precisions, prec, rtol=1e-10)


# ---------------------------------------------------------------------------
# Initialisation through the estimator
# ---------------------------------------------------------------------------


def test_weighted_initialisation_uses_weights():
    """Far rows of zero weight do not pull k-means (nor the fit) towards them."""
    # Rows of zero weight must not influence k-means either.
    X = make_blobs(200, [(0.0, 0.0), (8.0, 0.0)], [1.0, 1.0], seed=1)
    outliers = np.full((50, 2), 100.0)
    Xo = np.vstack([X, outliers])
    w = np.r_[np.ones(len(X)), np.zeros(len(outliers))]
    g = fastgmm.GaussianMixture(2, random_state=0).fit(Xo, sample_weight=w)
    assert np.abs(g.means_).max() < 10


def test_user_init_partial(blobs):
    """Given means alone, the initial parameters keep them exactly."""
    means = np.array(BLOB_CENTERS)
    g = fastgmm.GaussianMixture(3, means_init=means, max_iter=0, random_state=0)
    g.fit(blobs)
    np.testing.assert_array_equal(g.means_, means)
    assert g.n_iter_ == 0


@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_init_method_finds_the_clusters(init, blobs):
    """Every init_params value leads EM to the three generating centres."""
    # Uniform random responsibilities start every mean at the global mean, so
    # EM needs a tight tol to break the symmetry; the others start near it.
    g = fastgmm.GaussianMixture(3, init_params=init, n_init=3, max_iter=1000, tol=1e-9,
                                random_state=0).fit(blobs)
    d = np.linalg.norm(np.sort(g.means_, axis=0) - np.sort(np.array(BLOB_CENTERS), axis=0))
    assert d < 0.6
