"""fastgmm._sources: memory maps, chunk factories, in-memory arrays, make_source.

References: the in-memory fit from the same initial parameters (the spec's
1e-10), and plain numpy/scipy EM (tests/naive.py) for an independent answer.
"""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import psutil
import pytest
from conftest import (
    COVARIANCE_TYPES,
    assert_matches_naive_em,
    assert_same_params,
    fit_quiet,
    model_from,
    rough_start,
    three_blobs,
)
from naive import random_params, weighted_log_prob
from scipy.special import logsumexp

import fastgmm
from fastgmm import IterableSource, MemmapSource
from fastgmm._params import GaussianParams
from fastgmm._sources import ArraySource, make_source, uniform_rows

# ---------------------------------------------------------------------------
# .npy files and memory maps
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_npy_path_fit_equals_in_memory_and_numpy_em(tmp_path, ctype):
    """A .npy file read in several blocks (a ragged last one) gives the in-memory fit to 1e-10
    and numpy/scipy EM.
    """
    X = three_blobs()
    path = tmp_path / "x.npy"
    np.save(path, X)
    init = rough_start(ctype, X)
    ref = fit_quiet(model_from(ctype, init), X)
    # 300 rows per block (rounded up to 512): several blocks and a ragged last one.
    got = fit_quiet(model_from(ctype, init), MemmapSource(path, block_size=300))
    assert_same_params(got, ref, 1e-10)
    np.testing.assert_allclose(got.lower_bounds_, ref.lower_bounds_, rtol=1e-12)
    assert_matches_naive_em(got, X, ctype, init)


def test_npy_full_fit_keeps_row_hints_within_budget(tmp_path, monkeypatch):
    """Hints (each row's last most probable component) change no result, only speed."""
    X = three_blobs(seed=2, n_per=1500)
    path = tmp_path / "x.npy"
    np.save(path, X)
    init = rough_start("full", X)
    src = MemmapSource(path, block_size=1000)
    hinted = fit_quiet(model_from("full", init), src)
    assert src._hints is not None and src._hints.valid
    assert src._hints.best.shape == (X.shape[0],)
    assert np.mean(src._hints.best == hinted.predict(X)) > 0.95
    monkeypatch.setattr(fastgmm._config, "HINT_BUDGET_BYTES", 4 * X.shape[0] - 1)
    src_plain = MemmapSource(path, block_size=1000)
    plain = fit_quiet(model_from("full", init), src_plain)
    assert src_plain._hints is None  # over the budget: no hints kept
    assert_same_params(hinted, plain, 1e-12)
    np.testing.assert_allclose(hinted.lower_bounds_, plain.lower_bounds_, rtol=1e-13)
    assert_matches_naive_em(hinted, X, "full", init)


def test_memmap_and_str_path_dispatch_with_memmap_weights(tmp_path):
    """A memory map with memory-mapped weights, and a str path, give the in-memory weighted fit
    and numpy/scipy EM.
    """
    X = three_blobs(seed=1)
    w = np.random.default_rng(1).uniform(0.0, 3.0, size=X.shape[0])
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "w.npy", w)
    Xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    wm = np.load(tmp_path / "w.npy", mmap_mode="r")
    init = rough_start("full", X, seed=1)
    ref = fit_quiet(model_from("full", init), X, sample_weight=w)
    got = fit_quiet(model_from("full", init), Xm, sample_weight=wm)
    assert_same_params(got, ref, 1e-10)
    assert_matches_naive_em(got, X, "full", init, w=w)
    by_str = fit_quiet(model_from("full", init), str(tmp_path / "x.npy"), sample_weight=w)
    assert_same_params(by_str, ref, 1e-10)


def test_float32_and_integer_memmaps(tmp_path):
    """A float32 file fits in float32 like the in-memory float32 data; an integer file fits in
    float64 like numpy/scipy EM.
    """
    X = three_blobs(seed=2)
    np.save(tmp_path / "x32.npy", X.astype(np.float32))
    np.save(tmp_path / "xint.npy", np.round(X * 10).astype(np.int32))
    init = rough_start("diag", X, seed=2)
    ref32 = fit_quiet(model_from("diag", init), X.astype(np.float32))
    got32 = fit_quiet(model_from("diag", init), tmp_path / "x32.npy")
    assert got32.means_.dtype == np.float32
    assert_same_params(got32, ref32, 1e-6)
    Xi = np.round(X * 10).astype(np.int32)
    init_i = rough_start("diag", Xi.astype(np.float64), seed=2)
    got_i = fit_quiet(model_from("diag", init_i), tmp_path / "xint.npy")
    assert got_i.means_.dtype == np.float64
    assert_matches_naive_em(got_i, Xi.astype(np.float64), "diag", init_i)


def test_default_init_uses_all_rows_when_they_fit_the_sample(tmp_path):
    """N <= init_sample_size: the sample is the data, so the fit is the in-memory one."""
    X = three_blobs(seed=3)
    np.save(tmp_path / "x.npy", X)
    kw = dict(n_components=3, random_state=7, n_init=2)
    ref = fastgmm.GaussianMixture(**kw).fit(X)
    got = fastgmm.GaussianMixture(**kw).fit(tmp_path / "x.npy")
    assert_same_params(got, ref, 1e-10)
    assert got.n_iter_ == ref.n_iter_ and got.converged_


def test_init_on_a_subsample_reaches_the_same_optimum(tmp_path):
    """Initialising on a 300-row sample of a file reaches the optimum of the in-memory fit on
    well-separated blobs.
    """
    X = three_blobs(seed=4, n_per=2000)
    np.save(tmp_path / "x.npy", X)
    # tol on the lower bound does not pin the means; converge all the way.
    ref = fastgmm.GaussianMixture(3, random_state=0, tol=1e-13, max_iter=2000).fit(X)
    src = MemmapSource(tmp_path / "x.npy", block_size=512, init_sample_size=300)
    got = fastgmm.GaussianMixture(3, random_state=0, tol=1e-13, max_iter=2000).fit(src)
    # Same local optimum of well-separated blobs, whatever the initial sample.
    order = np.argsort(got.means_[:, 0]), np.argsort(ref.means_[:, 0])
    np.testing.assert_allclose(got.means_[order[0]], ref.means_[order[1]], rtol=1e-5,
                               atol=1e-5)
    assert got.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-7)


def test_memmap_sample_is_a_uniform_subset_and_leaves_rng_alone(tmp_path):
    """The initialisation sample of a memory map is distinct rows, uniform over the file, the
    same for the same seed, and consumes nothing of the caller's rng.
    """
    X = np.arange(20000.0).reshape(-1, 2)  # row i is (2i, 2i + 1): identifiable
    np.save(tmp_path / "x.npy", X)
    src = MemmapSource(tmp_path / "x.npy", block_size=700, init_sample_size=2000)
    rng = np.random.RandomState(0)
    state = rng.get_state()[1].copy()
    xs, ws = src.sample(rng)
    np.testing.assert_array_equal(rng.get_state()[1], state)
    assert ws is None and xs.shape == (2000, 2)
    rows = (xs[:, 0] / 2).astype(int)
    assert np.unique(rows).size == 2000
    np.testing.assert_array_equal(xs, X[rows])
    # Uniform over 0..9999: mean 4999.5, sd of the mean about 2887 / sqrt(2000) = 65.
    assert abs(rows.mean() - 4999.5) < 5 * 65
    again, _ = src.sample(np.random.RandomState(0))
    np.testing.assert_array_equal(again, xs)


def _vm_hwm() -> int | None:
    """Peak resident set size in bytes since the last reset (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class _PeakRSS:
    """Peak RSS over a block: reset VmHWM where Linux allows, else sample."""

    def __enter__(self):
        gc.collect()
        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.reset = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset = _vm_hwm() is not None
        except OSError:
            pass
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        if self.reset:
            self.peak = max(self.peak, _vm_hwm())
        self.growth = self.peak - self.base


def test_memmap_fit_peak_memory_is_bounded_by_the_block(tmp_path):
    """Fitting a 51 MB file in 0.5 MB blocks grows the resident memory by under 12 MB, while
    touching the whole map grows it by the file size.
    """
    n, d = 400_000, 16  # 51 MB of float64
    path = tmp_path / "big.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, d))
    rng = np.random.default_rng(0)
    for lo in range(0, n, 50_000):
        mm[lo:lo + 50_000] = rng.normal(size=(50_000, d)) + (lo // 50_000 % 2) * 4
    mm.flush()
    del mm
    init = (np.array([0.5, 0.5]), np.stack([np.zeros(d), np.full(d, 4.0)]), np.ones((2, d)))
    model = fastgmm.GaussianMixture(2, covariance_type="diag", weights_init=init[0],
                                    means_init=init[1], precisions_init=1 / init[2],
                                    tol=0.0, max_iter=2)
    warm = MemmapSource(path, block_size=4096)
    fit_quiet(model, warm)  # compiles / loads kernels, allocates lazily-built state
    file_mb = n * d * 8 / 2**20
    src = MemmapSource(path, block_size=4096)  # 4096 x 16 x 8 = 0.5 MB per block
    with _PeakRSS() as bounded:
        fit_quiet(model, src)
    # Control: touching every page of the map without dropping them does grow
    # the RSS by the file size, so the bound above is not vacuous.
    Xm = np.load(path, mmap_mode="r")
    with _PeakRSS() as control:
        float(Xm.sum())
    del Xm
    assert control.growth > 0.8 * file_mb * 2**20
    assert bounded.growth < 12 * 2**20, (bounded.growth / 2**20, file_mb)


# ---------------------------------------------------------------------------
# Chunk factories
# ---------------------------------------------------------------------------


def _chunker(X, w=None, sizes=(301, 57, 1000, 0, 640)):
    def chunks():
        lo, i = 0, 0
        while lo < X.shape[0]:
            hi = lo + sizes[i % len(sizes)]
            i += 1
            yield X[lo:hi] if w is None else (X[lo:hi], w[lo:hi])
            lo = hi
    return chunks


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_chunk_factory_fit_equals_in_memory(ctype):
    """Chunks of uneven sizes (an empty one included) give the in-memory fit to 1e-10 and
    numpy/scipy EM.
    """
    X = three_blobs(seed=5)
    init = rough_start(ctype, X, seed=5)
    ref = fit_quiet(model_from(ctype, init), X)
    got = fit_quiet(model_from(ctype, init), _chunker(X))
    assert_same_params(got, ref, 1e-10)
    assert_matches_naive_em(got, X, ctype, init)


def test_chunk_factory_with_weights_and_default_init():
    """Weighted chunks give weighted numpy/scipy EM, and with the default initialisation the in-
    memory weighted fit.
    """
    X = three_blobs(seed=6)
    w = np.random.default_rng(6).integers(0, 4, size=X.shape[0]).astype(float)
    init = rough_start("full", X, seed=6)
    got = fit_quiet(model_from("full", init), _chunker(X, w))
    assert_matches_naive_em(got, X, "full", init, w=w)
    kw = dict(n_components=3, random_state=3, tol=1e-6)
    ref = fastgmm.GaussianMixture(**kw).fit(X, sample_weight=w)
    got = fastgmm.GaussianMixture(**kw).fit(_chunker(X, w))
    assert_same_params(got, ref, 1e-10)


def test_reservoir_sample_is_uniform_and_distinct():
    """The reservoir sample of a chunk factory is distinct rows, uniform over all chunks; with
    fewer rows than the reservoir, all rows in order.
    """
    X = np.arange(40000.0).reshape(-1, 2)
    src = IterableSource(_chunker(X, sizes=(997, 3001, 12)), init_sample_size=1500)
    xs, _ = src.sample(np.random.RandomState(1))
    rows = (xs[:, 0] / 2).astype(int)
    assert xs.shape == (1500, 2) and np.unique(rows).size == 1500
    np.testing.assert_array_equal(xs, X[rows])
    # Uniform over 0..19999: mean 9999.5, sd of the mean 5774 / sqrt(1500) = 149;
    # a sample biased to the first or the last rows would fail by far.
    assert abs(rows.mean() - 9999.5) < 5 * 149
    assert src.n_samples == 20000
    # Fewer rows than the reservoir: all of them, in order.
    small, _ = IterableSource(_chunker(X[:300])).sample(np.random.RandomState(1))
    np.testing.assert_array_equal(small, X[:300])


def test_callers_file_and_arrays_untouched(tmp_path):
    """Fitting a writeable memory map changes neither the map nor the file behind it."""
    X = three_blobs()
    np.save(tmp_path / "x.npy", X)
    Xm = np.load(tmp_path / "x.npy", mmap_mode="r+")
    before = np.array(Xm)
    fastgmm.GaussianMixture(3, random_state=0).fit(Xm)
    np.testing.assert_array_equal(np.array(Xm), before)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), X)


def test_no_mapping_left_behind(tmp_path):
    """After a fit from a .npy path the file is no longer mapped into the process."""
    X = three_blobs()
    path = tmp_path / "x.npy"
    np.save(path, X)
    fastgmm.GaussianMixture(3, random_state=0).fit(path)
    gc.collect()
    mapped = [m.path for m in psutil.Process().memory_maps(grouped=True)]
    assert str(path) not in mapped


# ---------------------------------------------------------------------------
# Uniform row samples, in-memory arrays, dispatch
# ---------------------------------------------------------------------------


def test_uniform_rows_are_distinct_sorted_and_uniform():
    """``uniform_rows(n, m, seed)``: m distinct indices of range(n) in increasing
    order, the same for the same seed, each index drawn with probability m / n.
    """
    n, m, draws = 50, 10, 2000
    counts = np.zeros(n)
    for seed in range(draws):
        rows = uniform_rows(n, m, seed)
        assert rows.shape == (m,) and rows.min() >= 0 and rows.max() < n
        assert (np.diff(rows) > 0).all()
        counts[rows] += 1
    np.testing.assert_array_equal(uniform_rows(n, m, 7), uniform_rows(n, m, 7))
    assert not np.array_equal(uniform_rows(n, m, 7), uniform_rows(n, m, 8))
    # Each index: binomial(2000, 0.2), mean 400 and sd 17.9; 6 sd either side.
    expected = draws * m / n
    assert np.abs(counts - expected).max() < 6 * np.sqrt(expected * (1 - m / n)), counts
    np.testing.assert_array_equal(uniform_rows(n, n, 3), np.arange(n))


def test_make_source_picks_the_source_for_each_input(tmp_path):
    """Arrays and DataFrames give an ArraySource holding validated data; paths and
    memory maps a MemmapSource; a chunk factory an IterableSource; a source is
    passed through unchanged.
    """
    pd = pytest.importorskip("pandas")
    X = three_blobs()[:300]
    w = np.arange(300) % 3
    src = make_source(np.asfortranarray(X.astype(np.int64)), w)
    assert isinstance(src, ArraySource)
    assert src.X.flags.c_contiguous and src.X.dtype == np.float64
    np.testing.assert_array_equal(src.X, X.astype(np.int64))
    assert src.sample_weight.dtype == np.float64
    np.testing.assert_array_equal(src.sample_weight, w)
    assert src.feature_names is None
    framed = make_source(pd.DataFrame(X, columns=["a", "b", "c"]))
    assert isinstance(framed, ArraySource) and list(framed.feature_names) == ["a", "b", "c"]
    assert framed.sample_weight is None
    path = tmp_path / "x.npy"
    np.save(path, X)
    for given in (path, str(path), np.load(path, mmap_mode="r")):
        mm = make_source(given)
        assert isinstance(mm, MemmapSource), type(given)
        assert (mm.n_samples, mm.n_features, mm.dtype) == (300, 3, np.float64)

    def chunks():
        return iter(np.array_split(X, 4))

    it = make_source(chunks)
    assert isinstance(it, IterableSource) and it.chunks is chunks
    assert make_source(src) is src and make_source(mm) is mm


def test_array_source_worst_explained_rows():
    """The rows of lowest scipy density come first; a chosen row's duplicates and
    rows of zero weight are passed over while other rows remain.
    """
    k, d = 2, 2
    w, means, cov = random_params("diag", k, d, seed=1)
    params = GaussianParams.from_covariances("diag", w, means, cov)
    rng = np.random.default_rng(2)
    X = rng.normal(scale=4.0, size=(40, d))
    X[[3, 7]] = 30.0                              # the worst row, twice
    density = logsumexp(weighted_log_prob(X, w, means, cov, "diag"), axis=1)
    order = [int(i) for i in np.argsort(density, kind="stable")]
    src = ArraySource(X)
    picked = [row for row, _ in src.worst_explained(params, 4)]
    twin = {3: 7, 7: 3}
    expected = []
    for i in order:
        if i not in expected and twin.get(i) not in expected:
            expected.append(i)
    assert picked == expected[:4] and picked[0] in (3, 7) and {3, 7} - set(picked)
    for row, values in src.worst_explained(params, 2):
        np.testing.assert_array_equal(values, X[row])
    sw = np.ones(40)
    sw[[3, 7]] = 0.0                              # the worst rows weigh nothing
    weighted = [row for row, _ in ArraySource(X, sw).worst_explained(params, 2)]
    assert weighted == [i for i in order if i not in (3, 7)][:2]
