"""Determinism: the same bits across runs, thread counts and scheduling.

Every result fastgmm computes (statistics, fits, model selection) must be
identical, bit for bit, whatever the number of threads, the size of the
statistics workspace, or Python threads running other fits at the same time.
"""

import warnings
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest
from conftest import BLOB_CENTERS, assert_same_bits, kernel_problem
from naive import make_blobs, make_mixture

import fastgmm
from fastgmm import _config, select
from fastgmm._compute import StatsWorkspace, compute_stats
from fastgmm._parallel import thread_limit

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


def test_same_random_state_same_bits_across_runs(covariance_type):
    """Two fits with the same integer random_state on rows shared between threads give identical
    bits: every fitted array, lower bound and iteration count.
    """
    X = _data(N_LARGE, 0)
    assert_same_bits(_fit(X, covariance_type=covariance_type, n_init=2),
                    _fit(X, covariance_type=covariance_type, n_init=2))


@needs_two_threads
@pytest.mark.parametrize("dtype, weighted", [(np.float64, False), (np.float32, True)])
def test_one_and_two_threads_give_the_same_bits(covariance_type, dtype, weighted):
    """One and two Numba threads give identical fits and responsibilities, float64 and weighted
    float32, with a ragged last chunk.
    """
    X = _data(N_LARGE + 37, 1, dtype)  # a ragged last chunk
    w = np.random.default_rng(2).uniform(0.5, 2.0, size=len(X)) if weighted else None
    assert len(X) >= _config.SERIAL_THRESHOLD  # the two-thread fit shares rows
    one = _fit(X, w, covariance_type=covariance_type, n_init=2, n_threads=1)
    two = _fit(X, w, covariance_type=covariance_type, n_init=2, n_threads=2)
    assert_same_bits(one, two)
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
            assert_same_bits(runs[0][0], m)
            assert msgs == runs[0][1]


def test_concurrent_fits_from_a_thread_pool_match_sequential_fits():
    """Four fits running at once from Python threads give the bits, labels and log densities of
    the same fits run one after another.
    """
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
        assert_same_bits(m1, m2)
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(s1, s2)


# ---------------------------------------------------------------------------
# Sufficient statistics
# ---------------------------------------------------------------------------


def test_one_and_two_threads_bitwise_equal(covariance_type):
    """compute_stats on one and on two threads gives the same statistics and log-likelihood, bit
    for bit.
    """
    X, params, _ = kernel_problem(covariance_type, 5000, 4, 3, np.float64, seed=11)
    with thread_limit(2):
        a = compute_stats(X, None, params)
    with thread_limit(1):
        b = compute_stats(X, None, params)
    for name in ("nk", "t", "s"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.log_likelihood == b.log_likelihood


def test_workspace_size_changes_no_bit_of_the_statistics(covariance_type, monkeypatch):
    """A workspace sized for one thread and a tiny slot budget (many kernel calls of
    a few groups each) gives the statistics of a workspace sized for all rows
    (one call), bit for bit: slots are folded in row order either way.
    """
    X, params, _ = kernel_problem(covariance_type, 20000, 3, 4, np.float64, seed=12)
    k, d = params.n_components, params.n_features
    whole = StatsWorkspace(covariance_type, k, d, n_samples=X.shape[0])
    monkeypatch.setattr(_config, "SLOT_BUDGET_BYTES", 1)
    small = StatsWorkspace(covariance_type, k, d, n_threads=1)
    group = _config.chunks_per_group(X.shape[0], whole.chunk_size)
    assert 4 * small.rows_per_call(group) <= X.shape[0] <= whole.rows_per_call(group)
    a = compute_stats(X, None, params, whole)
    b = compute_stats(X, None, params, small)
    for name in ("nk", "t", "s"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.log_likelihood == b.log_likelihood


# ---------------------------------------------------------------------------
# Fits on small data (kernels on the calling thread) and shared between threads
# ---------------------------------------------------------------------------


def test_same_random_state_same_bits(covariance_type, blobs):
    """On small data (kernels on the calling thread) two fits with the same random_state give
    identical parameters.
    """
    fits = [fastgmm.GaussianMixture(3, covariance_type=covariance_type, n_init=2,
                                    random_state=11).fit(blobs) for _ in range(2)]
    for name in ("weights_", "means_", "covariances_"):
        assert np.array_equal(getattr(fits[0], name), getattr(fits[1], name))


def test_one_or_two_threads_same_bits(covariance_type):
    """Fits with n_threads=1 and n_threads=2 give identical parameters, precision factors and
    lower bounds.
    """
    X = make_blobs(1500, BLOB_CENTERS, [1.0, 0.6, 1.4], seed=9)  # parallel kernels
    fits = [fastgmm.GaussianMixture(3, covariance_type=covariance_type, n_init=2,
                                    random_state=4, n_threads=t).fit(X) for t in (1, 2)]
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.array_equal(getattr(fits[0], name), getattr(fits[1], name))
    assert fits[0].lower_bounds_ == fits[1].lower_bounds_


# ---------------------------------------------------------------------------
# Model selection: sequential cells, concurrent cells, any thread count
# ---------------------------------------------------------------------------


def _same_models(a, b) -> bool:
    for key, ma in a.models_.items():
        mb = b.models_[key]
        for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            if not np.array_equal(getattr(ma, attr), getattr(mb, attr)):
                return False
    return True


def test_reproducible_with_random_state_whatever_the_threads():
    """``select`` gives the same criteria, models and recorded seeds on one thread, two threads and
    concurrent cells, and for an equal RandomState.
    """
    mixture = make_mixture("full", 3, 80, 2, seed=11)
    kw = dict(n_components=(1, 2, 3), covariance_types=("full", "tied", "spherical"),
              n_init=2, random_state=42)
    a = select(mixture, n_threads=2, **kw)
    b = select(mixture, n_threads=1, **kw)
    c = select(mixture, n_threads=2, concurrent=True, **kw)
    for other in (b, c):
        for name in ("bic", "aic", "icl"):
            assert np.array_equal(a.values(name), other.values(name))
        assert _same_models(a, other)
    assert list(a.criteria_["seed"]) == list(b.criteria_["seed"])
    # The same RandomState state gives the same result too.
    d = select(mixture, **dict(kw, random_state=np.random.RandomState(42)))
    assert np.array_equal(a.values("bic"), d.values("bic"))


def test_large_data_path_matches_one_thread():
    """Above the serial threshold select gives the bits of one thread, sequential or concurrent,
    and still picks the true number of components.
    """
    # Above the serial threshold the cells run in turn with parallel kernels
    # (or at once with serial ones); the statistics are summed per fixed-size
    # chunk, so the bits are those of one thread either way.
    X = make_mixture("diag", 2, 2100, 2, seed=4)
    assert X.shape[0] >= fastgmm._config.SERIAL_THRESHOLD
    kw = dict(n_components=(1, 2, 3), covariance_types=("full", "diag"), random_state=3)
    a = select(X, n_threads=2, **kw)
    b = select(X, n_threads=1, **kw)
    c = select(X, n_threads=2, concurrent=True, **kw)
    for other in (b, c):
        assert np.array_equal(a.values("icl"), other.values("icl"))
        assert _same_models(a, other)
    assert a.best_params_["n_components"] == 2
