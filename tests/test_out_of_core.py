"""Out-of-core fits: .npy files, memory maps, chunk factories, the public stats API.

References: the in-memory fit from the same initial parameters (the spec's
1e-10), and plain numpy/scipy EM (tests/naive.py) for an independent answer.
"""

from __future__ import annotations

import gc
import threading
import time
import warnings

import numpy as np
import psutil
import pytest
from naive import e_step, em_iterations, make_blobs, precisions

import fastgmm
from fastgmm import ConvergenceWarning, IterableSource, MemmapSource, SuffStats

N_ITER = 6


def _data(seed=0, n_per=700, d=3):
    centers = [np.arange(d) * 1.0, np.arange(d) * -1.0 + 6, np.full(d, 3.0)]
    X = make_blobs(n_per, centers, [1.0, 0.7, 1.3], seed=seed)
    return X[np.random.default_rng(seed).permutation(X.shape[0])]


def _init_params(ctype, X, k=3, seed=0):
    """Deliberately rough initial parameters (so the iterations have work to do)."""
    rng = np.random.default_rng(seed)
    means = X[rng.choice(X.shape[0], k, replace=False)]
    weights = np.full(k, 1.0 / k)
    var = X.var(axis=0)
    cov = {"full": np.stack([np.diag(var)] * k), "tied": np.diag(var),
           "diag": np.tile(var, (k, 1)), "spherical": np.full(k, var.mean())}[ctype]
    return weights, means, cov


def _model(ctype, init, **kw):
    w, m, c = init
    return fastgmm.GaussianMixture(3, covariance_type=ctype, weights_init=w, means_init=m,
                                   precisions_init=precisions(ctype, c), tol=0.0,
                                   max_iter=N_ITER, **kw)


def _fit_quiet(model, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, **kw)


def _assert_same_params(a, b, rtol):
    for name in ("weights_", "means_", "covariances_"):
        x, y = getattr(a, name), getattr(b, name)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * np.abs(y).max(), err_msg=name)


def _assert_naive(model, X, ctype, init, w=None, rtol=1e-8):
    weights, means, cov, bounds = em_iterations(X, *init, ctype, N_ITER, 1e-6, w)
    np.testing.assert_allclose(model.weights_, weights, rtol=rtol)
    np.testing.assert_allclose(model.means_, means, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(model.covariances_, cov, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(model.lower_bounds_, bounds, rtol=1e-10)


# ---------------------------------------------------------------------------
# .npy files and memory maps
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", ["full", "tied", "diag", "spherical"])
def test_npy_path_fit_equals_in_memory_and_numpy_em(tmp_path, ctype):
    X = _data()
    path = tmp_path / "x.npy"
    np.save(path, X)
    init = _init_params(ctype, X)
    ref = _fit_quiet(_model(ctype, init), X)
    # 300 rows per block (rounded up to 512): several blocks and a ragged last one.
    got = _fit_quiet(_model(ctype, init), MemmapSource(path, block_size=300))
    _assert_same_params(got, ref, 1e-10)
    np.testing.assert_allclose(got.lower_bounds_, ref.lower_bounds_, rtol=1e-12)
    _assert_naive(got, X, ctype, init)


def test_npy_full_fit_keeps_row_hints_within_budget(tmp_path, monkeypatch):
    """Hints (each row's last most probable component) change no result, only speed."""
    X = _data(seed=2, n_per=1500)
    path = tmp_path / "x.npy"
    np.save(path, X)
    init = _init_params("full", X)
    src = MemmapSource(path, block_size=1000)
    hinted = _fit_quiet(_model("full", init), src)
    assert src._hints is not None and src._hints.valid
    assert src._hints.best.shape == (X.shape[0],)
    assert np.mean(src._hints.best == hinted.predict(X)) > 0.95
    monkeypatch.setattr(fastgmm._config, "HINT_BUDGET_BYTES", 4 * X.shape[0] - 1)
    src_plain = MemmapSource(path, block_size=1000)
    plain = _fit_quiet(_model("full", init), src_plain)
    assert src_plain._hints is None  # over the budget: no hints kept
    _assert_same_params(hinted, plain, 1e-12)
    np.testing.assert_allclose(hinted.lower_bounds_, plain.lower_bounds_, rtol=1e-13)
    _assert_naive(hinted, X, "full", init)


def test_memmap_and_str_path_dispatch_with_memmap_weights(tmp_path):
    X = _data(seed=1)
    w = np.random.default_rng(1).uniform(0.0, 3.0, size=X.shape[0])
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "w.npy", w)
    Xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    wm = np.load(tmp_path / "w.npy", mmap_mode="r")
    init = _init_params("full", X, seed=1)
    ref = _fit_quiet(_model("full", init), X, sample_weight=w)
    got = _fit_quiet(_model("full", init), Xm, sample_weight=wm)
    _assert_same_params(got, ref, 1e-10)
    _assert_naive(got, X, "full", init, w=w)
    by_str = _fit_quiet(_model("full", init), str(tmp_path / "x.npy"), sample_weight=w)
    _assert_same_params(by_str, ref, 1e-10)


def test_float32_and_integer_memmaps(tmp_path):
    X = _data(seed=2)
    np.save(tmp_path / "x32.npy", X.astype(np.float32))
    np.save(tmp_path / "xint.npy", np.round(X * 10).astype(np.int32))
    init = _init_params("diag", X, seed=2)
    ref32 = _fit_quiet(_model("diag", init), X.astype(np.float32))
    got32 = _fit_quiet(_model("diag", init), tmp_path / "x32.npy")
    assert got32.means_.dtype == np.float32
    _assert_same_params(got32, ref32, 1e-6)
    Xi = np.round(X * 10).astype(np.int32)
    init_i = _init_params("diag", Xi.astype(np.float64), seed=2)
    got_i = _fit_quiet(_model("diag", init_i), tmp_path / "xint.npy")
    assert got_i.means_.dtype == np.float64
    _assert_naive(got_i, Xi.astype(np.float64), "diag", init_i)


def test_default_init_uses_all_rows_when_they_fit_the_sample(tmp_path):
    """N <= init_sample_size: the sample is the data, so the fit is the in-memory one."""
    X = _data(seed=3)
    np.save(tmp_path / "x.npy", X)
    kw = dict(n_components=3, random_state=7, n_init=2)
    ref = fastgmm.GaussianMixture(**kw).fit(X)
    got = fastgmm.GaussianMixture(**kw).fit(tmp_path / "x.npy")
    _assert_same_params(got, ref, 1e-10)
    assert got.n_iter_ == ref.n_iter_ and got.converged_


def test_init_on_a_subsample_reaches_the_same_optimum(tmp_path):
    X = _data(seed=4, n_per=2000)
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
    _fit_quiet(model, warm)  # compiles / loads kernels, allocates lazily-built state
    file_mb = n * d * 8 / 2**20
    src = MemmapSource(path, block_size=4096)  # 4096 x 16 x 8 = 0.5 MB per block
    with _PeakRSS() as bounded:
        _fit_quiet(model, src)
    # Control: touching every page of the map without dropping them does grow
    # the RSS by the file size, so the bound above is not vacuous.
    Xm = np.load(path, mmap_mode="r")
    with _PeakRSS() as control:
        float(Xm.sum())
    del Xm
    assert control.growth > 0.8 * file_mb * 2**20
    assert bounded.growth < 12 * 2**20, (bounded.growth / 2**20, file_mb)


def test_memmap_validation_errors(tmp_path):
    X = _data()
    bad = X.copy()
    bad[1234, 1] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match=r"NaN \(row 1234\)"):
        fastgmm.GaussianMixture(2).fit(MemmapSource(tmp_path / "bad.npy", block_size=256))
    with pytest.raises(ValueError, match="not a .npy file"):
        fastgmm.GaussianMixture(2).fit(str(tmp_path / "x.csv"))
    with pytest.raises(ValueError, match="no such .npy file"):
        fastgmm.GaussianMixture(2).fit(tmp_path / "missing.npy")
    np.save(tmp_path / "one_d.npy", X[:, 0])
    with pytest.raises(ValueError, match="2-dimensional"):
        fastgmm.GaussianMixture(2).fit(tmp_path / "one_d.npy")
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(ValueError, match="sample_weight has 3 entries but X has"):
        fastgmm.GaussianMixture(2).fit(tmp_path / "x.npy", sample_weight=np.ones(3))
    w = np.ones(X.shape[0])
    w[7] = -1
    with pytest.raises(ValueError, match="negative"):
        fastgmm.GaussianMixture(2).fit(tmp_path / "x.npy", sample_weight=w)
    with pytest.raises(ValueError, match="block_size"):
        MemmapSource(tmp_path / "x.npy", block_size=0)
    with pytest.raises(ValueError, match="n_components"):
        fastgmm.GaussianMixture(3).fit(MemmapSource(np.load(tmp_path / "x.npy",
                                                            mmap_mode="r")[:2]))
    with pytest.raises(ValueError, match="to the data source itself"):
        fastgmm.GaussianMixture(2).fit(MemmapSource(tmp_path / "x.npy"), sample_weight=w)


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


@pytest.mark.parametrize("ctype", ["full", "tied", "diag", "spherical"])
def test_chunk_factory_fit_equals_in_memory(ctype):
    X = _data(seed=5)
    init = _init_params(ctype, X, seed=5)
    ref = _fit_quiet(_model(ctype, init), X)
    got = _fit_quiet(_model(ctype, init), _chunker(X))
    _assert_same_params(got, ref, 1e-10)
    _assert_naive(got, X, ctype, init)


def test_chunk_factory_with_weights_and_default_init():
    X = _data(seed=6)
    w = np.random.default_rng(6).integers(0, 4, size=X.shape[0]).astype(float)
    init = _init_params("full", X, seed=6)
    got = _fit_quiet(_model("full", init), _chunker(X, w))
    _assert_naive(got, X, "full", init, w=w)
    kw = dict(n_components=3, random_state=3, tol=1e-6)
    ref = fastgmm.GaussianMixture(**kw).fit(X, sample_weight=w)
    got = fastgmm.GaussianMixture(**kw).fit(_chunker(X, w))
    _assert_same_params(got, ref, 1e-10)


def test_reservoir_sample_is_uniform_and_distinct():
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


def test_chunk_factory_errors():
    X = _data()
    with pytest.raises(TypeError, match="chunks must be a callable"):
        IterableSource(X)
    calls = []

    def shrinking():
        calls.append(1)
        return iter([X[: X.shape[0] - len(calls)]])

    with pytest.raises(ValueError, match="same data on every call"):
        fastgmm.GaussianMixture(2, max_iter=5).fit(shrinking)
    with pytest.raises(ValueError, match="chunk 1 has 2 features"):
        fastgmm.GaussianMixture(2).fit(lambda: iter([X, X[:, :2]]))
    with pytest.raises(ValueError, match="chunk 0 contains NaN"):
        fastgmm.GaussianMixture(2).fit(lambda: iter([np.full((5, 2), np.nan)]))
    with pytest.raises(ValueError, match="no rows"):
        fastgmm.GaussianMixture(2).fit(lambda: iter([]))
    with pytest.raises(TypeError, match="must return an iterable"):
        fastgmm.GaussianMixture(2).fit(lambda: 3)
    with pytest.raises(ValueError, match="sample weights unlike earlier chunks"):
        fastgmm.GaussianMixture(2).fit(lambda: iter([X, (X, np.ones(len(X)))]))
    with pytest.raises(ValueError, match="chunk factory"):
        fastgmm.GaussianMixture(2).fit(lambda: iter([X]), sample_weight=np.ones(len(X)))


def test_callers_file_and_arrays_untouched(tmp_path):
    X = _data()
    np.save(tmp_path / "x.npy", X)
    Xm = np.load(tmp_path / "x.npy", mmap_mode="r+")
    before = np.array(Xm)
    fastgmm.GaussianMixture(3, random_state=0).fit(Xm)
    np.testing.assert_array_equal(np.array(Xm), before)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), X)


# ---------------------------------------------------------------------------
# The public sufficient-statistics API
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", ["full", "tied", "diag", "spherical"])
def test_suff_stats_match_numpy(ctype):
    X = _data(seed=8)
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
    X = _data(seed=9)
    init = _init_params("full", X, seed=9)
    # max_iter=0 loads the initial parameters without an iteration.
    model = _model("full", init)
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


def test_apply_stats_errors():
    X = _data()
    model = fastgmm.GaussianMixture(3, random_state=0).fit(X)
    with pytest.raises(TypeError, match="SuffStats"):
        model.apply_stats({"nk": 1})
    diag = fastgmm.GaussianMixture(3, covariance_type="diag", random_state=0).fit(X)
    with pytest.raises(ValueError, match="covariance_type"):
        model.apply_stats(diag.suff_stats(X))
    other = fastgmm.GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="components"):
        model.apply_stats(other.suff_stats(X))
    with pytest.raises(ValueError, match="features"):
        model.suff_stats(X[:, :2])


def test_no_mapping_left_behind(tmp_path):
    X = _data()
    path = tmp_path / "x.npy"
    np.save(path, X)
    fastgmm.GaussianMixture(3, random_state=0).fit(path)
    gc.collect()
    mapped = [m.path for m in psutil.Process().memory_maps(grouped=True)]
    assert str(path) not in mapped
