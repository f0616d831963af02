"""fastgmm._dask: Dask arrays on a real two-process LocalCluster: fits, lost workers,
lazy prediction.

References: the in-memory fit from the same initial parameters (the spec's
1e-10), plain numpy/scipy EM (tests/naive.py) and scipy densities.  The
cluster (``dask_client``) is shared with test_bad_input.py through conftest.py.
"""

from __future__ import annotations

import os
import signal

import dask
import dask.array as da
import numpy as np
import pytest
from conftest import (
    N_ITER,
    assert_same_params,
    dask_blobs,
    fit_quiet,
    model_from,
    rough_start,
)
from naive import e_step, em_iterations

import fastgmm


@pytest.mark.parametrize("ctype", ["full", "diag"])
def test_fit_on_the_cluster_equals_in_memory(dask_client, ctype):
    """A fit of a persisted Dask array on two worker processes gives the in-memory fit to 1e-10
    and numpy/scipy EM.
    """
    X = dask_blobs()
    Xd = da.from_array(X, chunks=(700, 3)).persist()
    init = rough_start(ctype, X)
    ref = fit_quiet(model_from(ctype, init), X)
    got = fit_quiet(model_from(ctype, init), Xd)
    assert_same_params(got, ref, 1e-10)
    weights, means, cov, bounds = em_iterations(X, *init, ctype, N_ITER, 1e-6)
    np.testing.assert_allclose(got.means_, means, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(got.covariances_, cov, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(got.lower_bounds_, bounds, rtol=1e-10)


def test_weighted_fit_and_default_init_on_the_cluster(dask_client):
    """Dask weights give weighted numpy/scipy EM; with the default initialisation, Dask data and
    numpy weights give the in-memory fit.
    """
    X = dask_blobs(seed=1)
    w = np.random.default_rng(1).uniform(0.0, 2.0, size=X.shape[0])
    Xd = da.from_array(X, chunks=(1000, 3))
    wd = da.from_array(w, chunks=(1000,))
    init = rough_start("tied", X, seed=1)
    got = fit_quiet(model_from("tied", init), Xd, sample_weight=wd)
    weights, means, cov, _ = em_iterations(X, *init, "tied", N_ITER, 1e-6, w)
    np.testing.assert_allclose(got.means_, means, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(got.covariances_, cov, rtol=1e-8, atol=1e-8)
    # All rows fit the initialisation sample: the same fit as in memory.
    kw = dict(n_components=3, random_state=5, tol=1e-6)
    ref = fastgmm.GaussianMixture(**kw).fit(X, sample_weight=w)
    got = fastgmm.GaussianMixture(**kw).fit(Xd, sample_weight=w)  # numpy weights too
    assert_same_params(got, ref, 1e-10)


def test_killing_a_worker_mid_fit_still_completes_with_the_same_parameters(dask_client):
    """Killing a worker in the middle of a fit still gives the in-memory parameters, and the
    nanny restarts the worker.
    """
    X = dask_blobs(seed=2)
    init = rough_start("full", X, seed=2)
    ref = fit_quiet(model_from("full", init), X)
    Xd = da.from_array(X, chunks=(500, 3)).persist()
    pids = dask_client.run(os.getpid)
    killed = []

    def kill_one(info):
        if info.iteration == 2:
            pid = sorted(pids.values())[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    got = fit_quiet(model_from("full", init, callback=kill_one), Xd)
    assert killed and got.n_iter_ == N_ITER
    assert_same_params(got, ref, 1e-10)
    # The nanny restarted the lost worker; the cluster still has two.
    dask_client.wait_for_workers(2, timeout=60)
    assert killed[0] not in dask_client.run(os.getpid).values()


def test_prediction_is_lazy_and_blockwise(dask_client):
    """predict, predict_proba and score_samples of a Dask array are Dask arrays chunked like its
    rows, equal to scipy's answers when computed.
    """
    X = dask_blobs(seed=3)
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
    """Prediction on a Dask array reads no block until computed, then each block once."""
    calls = []

    def block(x):
        calls.append(1)
        return x

    X = dask_blobs(seed=4)
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
