"""Online (stepwise) EM against batch EM: one pass, mean log-likelihood gap.

Generates ``--n`` points (default 1e6) from a fixed 3-component 2-D mixture,
streams them once through ``partial_fit`` in batches of ``--batch`` (default
1e4), fits the same data with batch EM, and reports both mean
log-likelihoods on all the data, their relative gap (target < 1 %) and the
times.  ``tests/test_online.py`` asserts the same gap on the same data.

Usage::

    python bench_scripts/bench_online.py [--n 1000000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CENTERS = np.array([[0.0, 0.0], [4.0, 4.0], [-4.0, 5.0]])
CHOL = [np.array([[1.0, 0.0], [0.6, 0.8]]), np.array([[0.7, 0.0], [-0.3, 0.5]]),
        np.array([[1.5, 0.0], [0.0, 0.4]])]


def make_data(n: int, seed: int = 42) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    X = np.empty((n, 2))
    for k in range(3):
        idx = labels == k
        X[idx] = rng.normal(size=(idx.sum(), 2)) @ CHOL[k].T + CENTERS[k]
    return X


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    import fastgmm

    X = make_data(args.n)
    fastgmm.GaussianMixture(3, random_state=0).fit(X[:5000]).partial_fit(X[:5000])  # warm-up
    t0 = time.perf_counter()
    online = fastgmm.GaussianMixture(3, random_state=0)
    for lo in range(0, args.n, args.batch):
        online.partial_fit(X[lo:lo + args.batch])
    t_online = time.perf_counter() - t0
    t0 = time.perf_counter()
    batch = fastgmm.GaussianMixture(3, random_state=0, tol=1e-6, max_iter=500).fit(X)
    t_batch = time.perf_counter() - t0
    ll_online, ll_batch = online.score(X), batch.score(X)
    gap = (ll_batch - ll_online) / abs(ll_batch)
    print(f"n={args.n}, batches of {args.batch} ({online.n_steps_} partial_fit calls, "
          f"learning_offset={online.learning_offset}, learning_decay={online.learning_decay})")
    print(f"mean log-likelihood: online {ll_online:.6f} ({t_online:.2f} s), "
          f"batch EM {ll_batch:.6f} ({batch.n_iter_} iterations, {t_batch:.2f} s)")
    print(f"relative gap (batch - online) / |batch| = {gap:.2e} (target < 1e-2)")


if __name__ == "__main__":
    main()
