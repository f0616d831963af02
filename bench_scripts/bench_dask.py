"""Seconds per EM iteration: a 2-worker Dask LocalCluster against in memory.

n = 1e7, d = 16, k = 16, full covariances (1.28 GB of float64).  The data
are generated block by block from per-block seeds, once on the workers
(persisted there) and once in this process, so both fits see the same rows.
Both fits start from the same parameters and run a fixed number of
iterations (``tol=0``); the time of each iteration comes from the EM
callback.  The in-memory fit uses Numba's threads (all cores); the cluster
has 2 worker processes of 1 thread each, each task's kernels on one
thread.  Reports the median seconds per iteration of each, their ratio
(target <= 1.5) and the largest relative difference of the parameters.

Usage::

    python bench_scripts/bench_dask.py [--n 10000000] [--iters 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

D, K = 16, 16
BLOCK = 250_000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def centers():
    return np.random.default_rng(12345).normal(scale=3.0, size=(K, D))


def make_block(i: int, rows: int) -> np.ndarray:
    """Rows of block ``i``: blobs around fixed centres, seeded by the block index."""
    rng = np.random.default_rng(1000 + i)
    labels = rng.integers(0, K, size=rows)
    return centers()[labels] + rng.normal(size=(rows, D)) * (0.6 + labels[:, None] / K)


def _block_from_index(idx):
    i = int(idx[0, 0])
    return make_block(i, int(idx[0, 1]))


def initial_params(X_first: np.ndarray):
    idx = np.random.default_rng(7).choice(X_first.shape[0], K, replace=False)
    return (np.full(K, 1.0 / K), np.array(X_first[idx]),
            np.stack([np.eye(D) * 0.25] * K))


def timed_fit(X, init, iters):
    import fastgmm

    times = []
    w0, m0, c0 = init
    model = fastgmm.GaussianMixture(K, weights_init=w0, means_init=m0,
                                    precisions_init=np.linalg.inv(c0), tol=0.0,
                                    max_iter=iters, callback=lambda info: times.append(
                                        info.elapsed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        model.fit(X)
    return model, np.diff([0.0] + times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternate in-memory and Dask fits this many times")
    args = ap.parse_args()

    sys.path.insert(0, ROOT)
    os.environ["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
    import dask.array as da
    import numba
    from distributed import Client, LocalCluster, wait

    from fastgmm._dask import warm_up

    n = args.n
    sizes = [min(BLOCK, n - lo) for lo in range(0, n, BLOCK)]
    t0 = time.perf_counter()
    X = np.concatenate([make_block(i, m) for i, m in enumerate(sizes)])
    print(f"in-memory data: {n} x {D} float64 = {X.nbytes / 1e9:.2f} GB "
          f"({time.perf_counter() - t0:.1f} s); threads: {numba.get_num_threads()}")
    init = initial_params(X[:BLOCK])
    warm_up(("full",))

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=40)
    client = Client(cluster)
    try:
        layers = client.run(warm_up, ("full",))
        index = np.array([[i, m] for i, m in enumerate(sizes)], dtype=np.int64)
        idx = da.from_array(index, chunks=(1, 2))
        Xd = idx.map_blocks(_block_from_index, chunks=(tuple(sizes), (D,)),
                            meta=np.empty((0, D)))
        t0 = time.perf_counter()
        Xd = Xd.persist()
        wait(Xd)
        print(f"dask data: {Xd.numblocks[0]} blocks of {BLOCK} rows persisted on 2 workers "
              f"({time.perf_counter() - t0:.1f} s); worker Numba layers: "
              f"{sorted(set(layers.values()))}")
        mem_times, dask_times = [], []
        for r in range(args.rounds):
            ref, t_mem = timed_fit(X, init, args.iters)
            got, t_dask = timed_fit(Xd, init, args.iters)
            mem_times.extend(t_mem)
            dask_times.extend(t_dask)
            print(f"round {r + 1}: in-memory s/iter {np.round(t_mem, 3).tolist()}, "
                  f"dask s/iter {np.round(t_dask, 3).tolist()}")
        diff = max(float(np.max(np.abs(getattr(got, a) - getattr(ref, a)))
                         / np.max(np.abs(getattr(ref, a))))
                   for a in ("weights_", "means_", "covariances_"))
        m_mem, m_dask = float(np.median(mem_times)), float(np.median(dask_times))
        print(f"median seconds per iteration: in-memory {m_mem:.3f}, dask {m_dask:.3f}, "
              f"ratio {m_dask / m_mem:.2f} (target <= 1.5)")
        print(f"largest relative parameter difference dask vs in-memory: {diff:.2e}")
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
