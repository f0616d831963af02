"""Dask arrays on a real two-process LocalCluster: fits, lost workers, lazy prediction.

References: the in-memory fit from the same initial parameters (the spec's
1e-10), plain numpy/scipy EM (tests/naive.py) and scipy densities.
"""

from __future__ import annotations

import os
import signal
import warnings

import dask
import dask.array as da
import distributed
import numpy as np
import pytest
from naive import e_step, em_iterations, make_blobs, precisions

import fastgmm
from fastgmm import ConvergenceWarning, DaskSource
from fastgmm._dask import warm_up

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_ITER = 6
CTYPES = ("full", "tied", "diag")


@pytest.fixture(scope="module")
def client():
    # Worker processes must import this checkout of fastgmm.
    # Compile (or load) the kernels here first: the workers then load them
    # from Numba's disk cache instead of compiling them twice at once.
    warm_up(CTYPES)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = ROOT + (os.pathsep + old if old else "")
    try:
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                           processes=True, dashboard_address=":0",
                                           silence_logs=50)
        c = distributed.Client(cluster)
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    # Load the kernels in both workers once (Numba's disk cache).
    c.run(warm_up, CTYPES)
    yield c
    c.close()
    cluster.close()


def _data(seed=0, n_per=1500):
    X = make_blobs(n_per, [[0.0, 0.0, 0.0], [5.0, 1.0, -2.0], [1.0, 6.0, 2.0]],
                   [1.0, 0.8, 1.2], seed=seed)
    return X[np.random.default_rng(seed).permutation(X.shape[0])]


def _init(ctype, X, seed=0):
    rng = np.random.default_rng(seed)
    means = X[rng.choice(X.shape[0], 3, replace=False)]
    var = X.var(axis=0)
    cov = {"full": np.stack([np.diag(var)] * 3), "tied": np.diag(var),
           "diag": np.tile(var, (3, 1)), "spherical": np.full(3, var.mean())}[ctype]
    return np.full(3, 1 / 3), means, cov


def _model(ctype, init, **kw):
    w, m, c = init
    return fastgmm.GaussianMixture(3, covariance_type=ctype, weights_init=w, means_init=m,
                                   precisions_init=precisions(ctype, c), tol=0.0,
                                   max_iter=N_ITER, **kw)


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*a, **kw)


def _same(a, b, rtol=1e-10):
    for name in ("weights_", "means_", "covariances_"):
        x, y = getattr(a, name), getattr(b, name)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * np.abs(y).max(), err_msg=name)


@pytest.mark.parametrize("ctype", ["full", "diag"])
def test_fit_on_the_cluster_equals_in_memory(client, ctype):
    X = _data()
    Xd = da.from_array(X, chunks=(700, 3)).persist()
    init = _init(ctype, X)
    ref = _quiet(_model(ctype, init).fit, X)
    got = _quiet(_model(ctype, init).fit, Xd)
    _same(got, ref)
    weights, means, cov, bounds = em_iterations(X, *init, ctype, N_ITER, 1e-6)
    np.testing.assert_allclose(got.means_, means, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(got.covariances_, cov, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(got.lower_bounds_, bounds, rtol=1e-10)


def test_weighted_fit_and_default_init_on_the_cluster(client):
    X = _data(seed=1)
    w = np.random.default_rng(1).uniform(0.0, 2.0, size=X.shape[0])
    Xd = da.from_array(X, chunks=(1000, 3))
    wd = da.from_array(w, chunks=(1000,))
    init = _init("tied", X, seed=1)
    got = _quiet(_model("tied", init).fit, Xd, sample_weight=wd)
    weights, means, cov, _ = em_iterations(X, *init, "tied", N_ITER, 1e-6, w)
    np.testing.assert_allclose(got.means_, means, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(got.covariances_, cov, rtol=1e-8, atol=1e-8)
    # All rows fit the initialisation sample: the same fit as in memory.
    kw = dict(n_components=3, random_state=5, tol=1e-6)
    ref = fastgmm.GaussianMixture(**kw).fit(X, sample_weight=w)
    got = fastgmm.GaussianMixture(**kw).fit(Xd, sample_weight=w)  # numpy weights too
    _same(got, ref)


def test_killing_a_worker_mid_fit_still_completes_with_the_same_parameters(client):
    X = _data(seed=2)
    init = _init("full", X, seed=2)
    ref = _quiet(_model("full", init).fit, X)
    Xd = da.from_array(X, chunks=(500, 3)).persist()
    pids = client.run(os.getpid)
    killed = []

    def kill_one(info):
        if info.iteration == 2:
            pid = sorted(pids.values())[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    got = _quiet(_model("full", init, callback=kill_one).fit, Xd)
    assert killed and got.n_iter_ == N_ITER
    _same(got, ref)
    # The nanny restarted the lost worker; the cluster still has two.
    client.wait_for_workers(2, timeout=60)
    assert killed[0] not in client.run(os.getpid).values()


def test_prediction_is_lazy_and_blockwise(client):
    X = _data(seed=3)
    model = fastgmm.GaussianMixture(3, random_state=0).fit(X)
    Xd = da.from_array(X, chunks=(1000, 3))
    proba = model.predict_proba(Xd)
    labels = model.predict(Xd)
    scores = model.score_samples(Xd)
    assert isinstance(proba, da.Array) and isinstance(labels, da.Array)
    assert proba.chunks == (Xd.chunks[0], (3,))
    assert labels.chunks == (Xd.chunks[0],) and scores.chunks == (Xd.chunks[0],)
    assert labels.dtype == np.int64
    resp, lse = e_step(X, model.weights_, model.means_, model.covariances_, "full")
    np.testing.assert_allclose(proba.compute(), resp, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(scores.compute(), lse, rtol=1e-10)
    np.testing.assert_array_equal(labels.compute(), resp.argmax(axis=1))
    assert model.score(Xd) == pytest.approx(lse.mean(), rel=1e-10)


def test_prediction_computes_nothing_until_asked():
    calls = []

    def block(x):
        calls.append(1)
        return x

    X = _data(seed=4)
    model = fastgmm.GaussianMixture(3, random_state=0).fit(X)
    Xd = da.from_array(X, chunks=(1000, 3)).map_blocks(block, meta=np.empty((0, 3)))
    with dask.config.set(scheduler="sync"):
        out = model.predict(Xd)
        assert calls == []
        out.compute()
    assert len(calls) == Xd.numblocks[0]


@pytest.mark.filterwarnings("ignore::fastgmm.ConvergenceWarning")
def test_threaded_blocks_with_threaded_kernels_match_in_memory():
    """Four scheduler threads each share their block's rows between threads."""
    X = np.random.default_rng(0).normal(size=(40000, 3))
    X[::2] += 5
    Xd = da.from_array(X, chunks=(5000, 3))
    init = dict(weights_init=[0.5, 0.5], means_init=[[0, 0, 0], [5, 5, 5]],
                precisions_init=np.stack([np.eye(3)] * 2), tol=0.0, max_iter=4)
    with dask.config.set(scheduler="threads", num_workers=4):
        got = fastgmm.GaussianMixture(2, **init).fit(fastgmm.DaskSource(Xd, parallel=True))
    ref = fastgmm.GaussianMixture(2, **init).fit(X)
    np.testing.assert_allclose(got.means_, ref.means_, rtol=1e-10, atol=0)


def test_dask_input_errors(client):
    X = _data()
    model = fastgmm.GaussianMixture(3, random_state=0).fit(X)
    bad = X.copy()
    bad[17, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        fastgmm.GaussianMixture(3).fit(da.from_array(bad, chunks=(1000, 3)))
    with pytest.raises(ValueError, match="2-dimensional"):
        fastgmm.GaussianMixture(3).fit(da.ones((10, 2, 2)))
    with pytest.raises(ValueError, match="features"):
        model.predict(da.from_array(X[:, :2], chunks=(1000, 2)))
    with pytest.raises(ValueError, match="negative"):
        fastgmm.GaussianMixture(3).fit(da.from_array(X, chunks=(1000, 3)),
                                       sample_weight=-np.ones(X.shape[0]))
    with pytest.raises(ValueError, match="sample_weight has 5 entries but X has"):
        fastgmm.GaussianMixture(3).fit(da.from_array(X, chunks=(1000, 3)),
                                       sample_weight=np.ones(5))
    with pytest.raises(TypeError, match="dask.array.Array"):
        DaskSource(X)
    # Column chunks are merged; float32 stays float32, integers become float64.
    src = DaskSource(da.from_array(X.astype(np.float32), chunks=(900, 1)))
    assert src.dtype == np.float32 and src.X.chunks[1] == (3,)
    assert DaskSource(da.from_array(X.astype(np.int16), chunks=900)).dtype == np.float64
