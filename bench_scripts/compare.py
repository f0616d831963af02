"""fastgmm against scikit-learn, in one run on this machine.

Run from the repository root::

    python bench_scripts/compare.py            # full sizes (n = 1e6; several minutes)
    python bench_scripts/compare.py --quick    # smaller sizes, for a smoke run

Prints the machine's dense GEMM rate, then per case the seconds per EM
iteration of fastgmm and of scikit-learn started from the same parameters,
their ratio, fastgmm's GFLOP/s (counting n k (2 d^2 + 7 d) flops for
full/tied, n k (4 d) for diag/spherical) and its fraction of the GEMM rate,
and the extra peak resident memory of each fit.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "asv_bench"))

from benchmarks.common import make_problem, start_params  # noqa: E402  (same seeded data)

import fastgmm  # noqa: E402

try:
    import psutil
except ImportError:  # pragma: no cover
    psutil = None


def gemm_rate(dtype, n=4096, repeat=3):
    rng = np.random.default_rng(0)
    a = rng.random((n, n)).astype(dtype)
    b = rng.random((n, n)).astype(dtype)
    a @ b
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


class PeakRSS:
    """Extra peak resident memory during a block, sampled every 2 ms."""

    def __enter__(self):
        gc.collect()
        self.proc = psutil.Process() if psutil else None
        self.base = self.proc.memory_info().rss if self.proc else 0
        self.peak = self.base
        self._stop = False
        if self.proc:
            self.thread = threading.Thread(target=self._watch, daemon=True)
            self.thread.start()
        return self

    def _watch(self):
        while not self._stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop = True
        if self.proc:
            self.thread.join()
            self.peak = max(self.peak, self.proc.memory_info().rss)
        self.extra_mb = (self.peak - self.base) / 2**20


def time_fits(makers, X, iters, repeat=2):
    """Seconds per EM iteration of each maker: difference of two fixed-iteration fits.

    ``makers`` maps a name to ``make(n_iter) -> estimator``; ``iters`` and
    ``repeat`` map the same names to the extra iterations timed and the
    number of repeats (an int applies to all).  The repeats of all makers are
    interleaved and the fastest of each kept, so a slow spell of this shared
    machine lands on every column alike instead of on one of them; a short
    pause before each fit lets the thread pools of the previous one go idle.
    """
    if isinstance(repeat, int):
        repeat = {name: repeat for name in makers}
    best = {(name, m): np.inf for name in makers for m in (1, 1 + iters[name])}
    for r in range(max(repeat.values())):
        for name, make in makers.items():
            if r >= repeat[name]:
                continue
            for m in (1, 1 + iters[name]):
                e = make(m)
                time.sleep(0.3)
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    e.fit(X)
                best[name, m] = min(best[name, m], time.perf_counter() - t)
    return {name: (best[name, 1 + iters[name]] - best[name, 1]) / iters[name]
            for name in makers}


def flops(covariance_type, n, d, k):
    if covariance_type in ("full", "tied"):
        return n * k * (2 * d * d + 7 * d)
    return n * k * 4 * d


def run_case(name, covariance_type, n, d, k, dtype, iters, gemm, with_sklearn):
    X, means0 = make_problem(n, d, k, dtype)
    init = start_params(covariance_type, means0)

    def ours(m):
        return fastgmm.GaussianMixture(k, covariance_type=covariance_type, tol=0, max_iter=m,
                                       **init)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours(1).fit(X[:2000])  # compile outside the timing
    makers, iters_of, repeats = {"fastgmm": ours}, {"fastgmm": iters}, {"fastgmm": 4}
    if with_sklearn:
        from sklearn.mixture import GaussianMixture as SK

        def theirs(m):
            return SK(k, covariance_type=covariance_type, tol=0, max_iter=m,
                      init_params="random_from_data", **init)

        makers["sklearn"], iters_of["sklearn"], repeats["sklearn"] = theirs, 2, 2
    per_iter = time_fits(makers, X, iters_of, repeats)
    t_f = per_iter["fastgmm"]
    with PeakRSS() as mem_f:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours(1).fit(X)
    row = dict(case=name, fastgmm=t_f, gflops=flops(covariance_type, n, d, k) / t_f / 1e9,
               mem_f=mem_f.extra_mb, xmb=X.nbytes / 2**20)
    row["frac"] = row["gflops"] / gemm[np.dtype(dtype).name]
    if with_sklearn:
        t_s = per_iter["sklearn"]
        with PeakRSS() as mem_s:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs(1).fit(X)
        row.update(sklearn=t_s, ratio=t_s / t_f, mem_s=mem_s.extra_mb)
    return row


def end_to_end(n, with_sklearn):
    """Default fits (k-means init, tol 1e-3), full, d = k = 16."""
    X, _ = make_problem(n, 16, 16)
    fastgmm.fit(X[:3000], 16, random_state=0)
    with PeakRSS() as mem:
        t = time.perf_counter()
        ours = fastgmm.fit(X, 16, random_state=0)
        elapsed = time.perf_counter() - t
    ours.predict_proba(X[:3000])
    with PeakRSS() as mem_p:
        proba = ours.predict_proba(X)
    row = dict(fastgmm=elapsed, ll_f=ours.score(X), it_f=ours.n_iter_, mem=mem.extra_mb,
               mem_p=mem_p.extra_mb, out_mb=proba.nbytes / 2**20, x_mb=X.nbytes / 2**20)
    del proba
    if with_sklearn:
        from sklearn.mixture import GaussianMixture as SK

        t = time.perf_counter()
        ref = SK(16, random_state=0).fit(X)
        row.update(sklearn=time.perf_counter() - t, ll_s=ref.score(X), it_s=ref.n_iter_)
    return row


def tiny(with_sklearn, repeat=20):
    """The wholesale size: 440 x 2, k = 2, defaults, best of ``repeat``."""
    X, _ = make_problem(440, 2, 2, seed=3)
    fastgmm.fit(X, 2, random_state=0)
    best = {}
    makers = [("fastgmm", lambda: fastgmm.fit(X, 2, random_state=0))]
    if with_sklearn:
        from sklearn.mixture import GaussianMixture as SK

        makers.append(("sklearn", lambda: SK(2, random_state=0).fit(X)))
    for name, make in makers:
        make()
        b = np.inf
        for _ in range(repeat):
            t = time.perf_counter()
            make()
            b = min(b, time.perf_counter() - t)
        best[name] = b
    return best


def thread_scaling(n, iters, repeat=5):
    X, means0 = make_problem(n, 16, 16)
    init = start_params("full", means0)
    makers = {}
    for t in (1, 2):
        def make(m, t=t):
            return fastgmm.GaussianMixture(16, tol=0, max_iter=m, n_threads=t, **init)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make(1).fit(X[:3000])
        makers[t] = make
    return time_fits(makers, X, {1: iters, 2: iters}, repeat=repeat)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--no-sklearn", action="store_true", help="fastgmm only")
    ap.add_argument("--only", default=None, help="comma-separated case names")
    args = ap.parse_args(argv)
    with_sklearn = not args.no_sklearn
    n = 100_000 if args.quick else 1_000_000
    iters = 2 if args.quick else 3
    import numba
    print(f"fastgmm {fastgmm.__version__}, numba {numba.__version__}, numpy {np.__version__}, "
          f"threads {numba.get_num_threads()}")
    gemm = {"float64": gemm_rate(np.float64), "float32": gemm_rate(np.float32)}
    print(f"dense GEMM (numpy A @ B, 4096^2): float64 {gemm['float64']:.1f} GFLOP/s, "
          f"float32 {gemm['float32']:.1f} GFLOP/s")
    cases = [
        ("full", "full", n, 16, 16, np.float64),
        ("tied", "tied", n, 16, 16, np.float64),
        ("diag", "diag", n, 16, 16, np.float64),
        ("spherical", "spherical", n, 16, 16, np.float64),
        ("full-f32", "full", n, 16, 16, np.float32),
        ("full-d64", "full", n // 5, 64, 8, np.float64),
    ]
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c[0] in keep]
    head = (f"{'case':<10} {'fastgmm s/it':>12} {'sklearn s/it':>12} {'ratio':>7} "
            f"{'GFLOP/s':>8} {'%GEMM':>6} {'mem MB':>8} {'sk mem MB':>9} {'X MB':>7}")
    print(head)
    print("-" * len(head))
    for case in cases:
        r = run_case(*case, iters=iters, gemm=gemm, with_sklearn=with_sklearn)
        print(f"{r['case']:<10} {r['fastgmm']:12.4f} {r.get('sklearn', np.nan):12.4f} "
              f"{r.get('ratio', np.nan):7.1f} {r['gflops']:8.1f} {100 * r['frac']:6.1f} "
              f"{r['mem_f']:8.1f} {r.get('mem_s', np.nan):9.1f} {r['xmb']:7.1f}", flush=True)
    if args.only:
        return
    e = end_to_end(n, with_sklearn)
    print(f"\nend to end, defaults (k-means init, tol 1e-3), full, n={n}, d=k=16:")
    print(f"  fastgmm {e['fastgmm']:.2f} s ({e['it_f']} EM iterations), mean log-likelihood "
          f"{e['ll_f']:.6f}; extra peak RSS {e['mem']:.1f} MB (X is {e['x_mb']:.1f} MB); "
          f"predict_proba extra peak RSS {e['mem_p']:.1f} MB for a {e['out_mb']:.1f} MB output")
    if with_sklearn:
        print(f"  sklearn {e['sklearn']:.2f} s ({e['it_s']} EM iterations), mean log-likelihood "
              f"{e['ll_s']:.6f}; ratio {e['sklearn'] / e['fastgmm']:.1f}x, "
              f"log-likelihood gap {e['ll_f'] - e['ll_s']:+.2e}")
    t = tiny(with_sklearn)
    print(f"tiny (440 x 2, k=2, defaults, best of 20): fastgmm {1e3 * t['fastgmm']:.2f} ms"
          + (f", sklearn {1e3 * t['sklearn']:.2f} ms" if with_sklearn else ""))
    sc = thread_scaling(n, iters)
    print(f"threads (full, n={n}, d=k=16): 1 thread {sc[1]:.4f} s/iter, 2 threads "
          f"{sc[2]:.4f} s/iter, speed-up {sc[1] / sc[2]:.2f}x")


if __name__ == "__main__":
    main()
