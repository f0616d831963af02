"""Time model selection over a 9 x 4 grid on the wholesale-customers data.

A script, not an asv benchmark: it compares four ways of fitting the same
grid (k = 1..9 x the four covariance types, ``n_init`` restarts per cell) on
the six log-transformed spending columns (440 rows):

``select``
    :func:`fastgmm.select` with its defaults: the cells and their restarts
    one after another (for data this small, each kernel call on one thread).
``select, concurrent``
    :func:`fastgmm.select` with ``concurrent=True``: the cells at once on
    ``n_threads`` Python threads (default: all of Numba's), kernels on one thread each.
``fastgmm loop``
    The loop a user writes by hand: one ``fastgmm.GaussianMixture`` fit after
    another, then its ``bic``, with the estimator's default threads.
``scikit-learn loop``
    The same loop with ``sklearn.mixture.GaussianMixture`` (same ``n_init``,
    ``tol``, ``max_iter``, ``reg_covar`` defaults and seeds).
``scikit-learn, 1 thread``
    The same, with its OpenMP and BLAS threads limited to one
    (``threadpoolctl``), which is faster on a busy machine.

Each variant runs ``--repeat`` times, round-robin so that a burst of load on
a shared machine hits every variant alike; the minimum wall time is the
headline (the least disturbed run) and the median is printed next to it, with
the CPU time other processes used meanwhile (from ``/proc/stat``, Linux only)
as a measure of the disturbance.  The JIT is warmed up first.  Run from the
repository root::

    python bench_scripts/compare_select.py --repeat 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fastgmm  # noqa: E402

TYPES = ("full", "tied", "diag", "spherical")


def load_spending() -> np.ndarray:
    """The six spending columns, log-transformed, shape (440, 6)."""
    spending = fastgmm.datasets.load_wholesale().spending
    return np.log(np.asarray(spending, dtype=np.float64))


def machine_busy() -> float | None:
    """CPU seconds all processes have used so far (Linux), or None."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def cell_seeds(ks, random_state: int) -> dict:
    """The per-k seeds :func:`fastgmm.select` draws from ``random_state``."""
    rng = np.random.RandomState(random_state)
    drawn = rng.randint(np.iinfo(np.int32).max, size=len(ks))
    return {k: int(s) for k, s in zip(ks, drawn, strict=True)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--n-init", type=int, default=5)
    ap.add_argument("--max-k", type=int, default=9)
    ap.add_argument("--random-state", type=int, default=0)
    ap.add_argument("--no-sklearn", action="store_true")
    args = ap.parse_args()

    import numba

    X = load_spending()
    ks = tuple(range(1, args.max_k + 1))
    seeds = cell_seeds(ks, args.random_state)
    common = dict(n_init=args.n_init, random_state=args.random_state)

    def run_select():
        return fastgmm.select(X, ks, TYPES, **common).values("bic").T

    def run_select_concurrent():
        return fastgmm.select(X, ks, TYPES, concurrent=True, **common).values("bic").T

    def run_loop_fastgmm():
        out = np.empty((len(TYPES), len(ks)))
        for i, ctype in enumerate(TYPES):
            for j, k in enumerate(ks):
                model = fastgmm.GaussianMixture(k, covariance_type=ctype, n_init=args.n_init,
                                                random_state=seeds[k]).fit(X)
                out[i, j] = model.bic(X)
        return out

    variants = {"select": run_select, "select, concurrent": run_select_concurrent,
                "fastgmm loop": run_loop_fastgmm}
    if not args.no_sklearn:
        from sklearn.mixture import GaussianMixture as SkGM

        def run_loop_sklearn():
            out = np.empty((len(TYPES), len(ks)))
            for i, ctype in enumerate(TYPES):
                for j, k in enumerate(ks):
                    model = SkGM(k, covariance_type=ctype, n_init=args.n_init,
                                 random_state=seeds[k]).fit(X)
                    out[i, j] = model.bic(X)
            return out

        variants["scikit-learn loop"] = run_loop_sklearn
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            def run_loop_sklearn_1thread():
                # scikit-learn's k-means (OpenMP) and BLAS threads spin and
                # wait on a busy machine; one thread shows its own cost.
                with threadpool_limits(1):
                    return run_loop_sklearn()

            variants["scikit-learn, 1 thread"] = run_loop_sklearn_1thread

    print(f"python {platform.python_version()}, numpy {np.__version__}, numba "
          f"{numba.__version__}, fastgmm {fastgmm.__version__}")
    print(f"cpus available: {len(os.sched_getaffinity(0))}, numba threads: "
          f"{numba.get_num_threads()}, load average before: "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(
            f"{i['internal_api']} {i['num_threads']} thread(s) in "
            f"{Path(i['filepath']).parent.name}"
            for i in threadpool_info() if i["user_api"] == "blas")
    except ImportError:
        blas = "unknown (threadpoolctl not installed)"
    print(f"BLAS: {blas}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    print(f"grid: k = {ks[0]}..{ks[-1]} x {len(TYPES)} covariance types, n_init="
          f"{args.n_init}, data {X.shape[0]} x {X.shape[1]} (log spending)")

    with warnings.catch_warnings():
        # Non-convergence at large k is expected here and irrelevant to timing.
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        fastgmm.select(X, (1, 2), TYPES, n_init=1, random_state=0)  # load/compile kernels
        fastgmm.select(X, (1, 2), TYPES, n_init=2, random_state=0, concurrent=True)
        if not args.no_sklearn:
            SkGM(2).fit(X)
        print(f"warm-up (JIT load): {time.perf_counter() - t0:.2f} s")

        walls = {name: [] for name in variants}
        cpus = {name: [] for name in variants}
        others = {name: [] for name in variants}
        tables = {}
        for _ in range(args.repeat):
            for name, fn in variants.items():
                b0, c0, t0 = machine_busy(), time.process_time(), time.perf_counter()
                tables[name] = fn()
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                walls[name].append(wall)
                cpus[name].append(cpu)
                if b0 is not None:
                    others[name].append(max(machine_busy() - b0 - cpu, 0.0) / wall)

    print(f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print()
    print(f"{'variant':20s} {'min s':>8s} {'median s':>9s} {'cpu s (med)':>12s}"
          f" {'others (med)':>13s} {'vs select (min)':>16s} {'vs select (median)':>19s}")
    ref_min = min(walls["select"])
    ref_med = statistics.median(walls["select"])
    for name in variants:
        lo, med = min(walls[name]), statistics.median(walls[name])
        busy = (f"{statistics.median(others[name]):13.2f}" if others[name]
                else f"{'n/a':>13s}")
        print(f"{name:20s} {lo:8.3f} {med:9.3f} {statistics.median(cpus[name]):12.3f}"
              f"{busy} {lo / ref_min:15.2f}x {med / ref_med:18.2f}x")
    print("(ratios: the variant's time over select's; above 1 means select is faster; "
          "others: cores that other processes kept busy meanwhile)")

    same = np.array_equal(tables["select"], tables["fastgmm loop"]) and np.array_equal(
        tables["select"], tables["select, concurrent"])
    print(f"\nselect, select concurrent and the fastgmm loop give identical BIC tables: "
          f"{same}")
    if "scikit-learn loop" in tables:
        diff = np.abs(tables["select"] - tables["scikit-learn loop"])
        print(f"largest |BIC(fastgmm) - BIC(scikit-learn)| over the grid: {diff.max():.3g} "
              "(different initialisations, so different local optima are possible)")

    result = fastgmm.select(X, ks, TYPES, **common)
    print("\nBIC, k x covariance type (lower is better):")
    header = "   k " + "".join(f"{t:>11s}" for t in TYPES)
    print(header)
    values = result.values("bic")
    for j, k in enumerate(ks):
        print(f"{k:4d} " + "".join(f"{values[j, i]:11.1f}" for i in range(len(TYPES))))
    print(f"best: {result.best_params_}, BIC {result.best_score_:.1f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
