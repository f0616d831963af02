"""The current checkout against an earlier commit, timed alternately in one process.

Run from the repository root::

    python bench_scripts/ab_compare.py --ref 62ce10b            # every case, n / 5
    python bench_scripts/ab_compare.py --ref 62ce10b --divisor 1 --case overlap-full
    python bench_scripts/ab_compare.py --ref 62ce10b --cold     # also cold and warm start-ups

The package at ``--ref`` is extracted (``git archive``) into a temporary
folder as ``fastgmm_old`` and imported beside this checkout's ``fastgmm``;
both fit the same data from the same start, their fits interleaved repeat by
repeat (``compare.time_fits``), so a slow spell of the machine lands on both.
Per case it prints the seconds per EM iteration of each and their ratio
(new / old; above 1 is slower).  The cases: every per-iteration case of
``benchmarks.common.FAMILIES``; the missing-data E-step (20 % of the entries
of the overlapping full case missing at random); ``BayesianGaussianMixture``
per iteration (full and diag); and whole default fits (``END_TO_END``).

``--cold`` adds, per version, the seconds of a fresh interpreter that imports
the package and fits each covariance type once on 2,000 rows: with an empty
Numba cache (compile time) and again with the cache that run left (start-up).
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "asv_bench"))

from benchmarks.common import END_TO_END, FAMILIES  # noqa: E402
from compare import cpu_line, time_fits  # noqa: E402

import fastgmm  # noqa: E402

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def extract(ref: str, into: str) -> str:
    """The package at ``ref``, as ``fastgmm_old`` under ``into``; returns its parent folder."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", ref, "fastgmm"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    os.rename(os.path.join(into, "fastgmm"), os.path.join(into, "fastgmm_old"))
    return into


def _quiet_fit(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X)


def per_iteration(pkgs, X, make, iters, repeats):
    """``{version: seconds per iteration}`` of ``make(pkg, m)`` fits (see ``time_fits``)."""
    makers = {name: (lambda m, p=pkg: make(p, m)) for name, pkg in pkgs.items()}
    for maker in makers.values():
        _quiet_fit(maker(1), X[:4000])  # compile or load the kernels outside the timing
    got, notes = time_fits(makers, X, {name: iters for name in pkgs}, repeats, pause=0.2)
    return got, notes


def whole_fits(pkgs, X, k, repeats):
    """``{version: best seconds}`` of whole default fits (k-means start), alternately."""
    best = {name: np.inf for name in pkgs}
    for pkg in pkgs.values():
        _quiet_fit(pkg.GaussianMixture(k, random_state=0), X[:4000])
    for _ in range(repeats):
        for name, pkg in pkgs.items():
            time.sleep(0.2)
            t = time.perf_counter()
            _quiet_fit(pkg.GaussianMixture(k, random_state=0), X)
            best[name] = min(best[name], time.perf_counter() - t)
    return best, {}


def with_gaps(X, fraction, seed=0):
    """``X`` (float64) with ``fraction`` of its entries NaN, no row left empty."""
    rng = np.random.default_rng(seed)
    Xm = np.array(X, dtype=np.float64)
    gaps = rng.random(Xm.shape) < fraction
    gaps[gaps.all(axis=1), 0] = False
    Xm[gaps] = np.nan
    return Xm


def cases(divisor: int):
    """``(name, rows, run(pkgs, repeats))`` for every case."""
    out = []
    for case in FAMILIES.values():
        n = case.rows(divisor)

        def run(pkgs, repeats, case=case, n=n):
            X, means0 = case.data(n)
            init = case.start(means0)
            return per_iteration(pkgs, X, lambda p, m: p.GaussianMixture(
                case.k, covariance_type=case.covariance_type, tol=0, max_iter=m, **init),
                3, repeats)
        out.append((case.name, n, run))
    base = FAMILIES["overlap-full"]
    n = base.rows(divisor)

    def missing(pkgs, repeats, n=n):
        X, means0 = base.data(n)
        init = base.start(means0)
        return per_iteration(pkgs, with_gaps(X, 0.2), lambda p, m: p.GaussianMixture(
            base.k, tol=0, max_iter=m, missing="marginalize", **init), 2, repeats)
    out.append(("missing-20%-mcar", n, missing))
    for ctype in ("full", "diag"):
        case = FAMILIES["overlap-full"]
        n = case.rows(divisor * 4)

        def bayes(pkgs, repeats, ctype=ctype, n=n, case=case):
            X, _ = case.data(n)
            return per_iteration(pkgs, X, lambda p, m: p.BayesianGaussianMixture(
                case.k, covariance_type=ctype, tol=0, max_iter=m, random_state=0),
                3, repeats)
        out.append((f"bayes-overlap-{ctype}", n, bayes))
    for case in END_TO_END.values():
        n = case.rows(divisor)

        def e2e(pkgs, repeats, case=case, n=n):
            X, _ = case.data(n)
            return whole_fits(pkgs, X, case.k, repeats)
        out.append((case.name + " (whole fit, s)", n, e2e))
    return out


_STARTUP = """
import time, warnings
t0 = time.perf_counter()
import numpy as np
import {pkg}
X = np.random.default_rng(0).normal(size=(2000, 3))
warnings.simplefilter("ignore")
for ctype in {types!r}:
    {pkg}.GaussianMixture(3, covariance_type=ctype, random_state=0, max_iter=5).fit(X)
print(time.perf_counter() - t0)
"""


def startup(pkg: str, path: str, cache: str) -> tuple[float, float]:
    """Seconds (wall, CPU) of a fresh interpreter importing ``pkg`` and fitting every type.

    The CPU seconds (user and system, of the child) are the figure to compare
    on a shared machine, where the wall time also counts the other loads.
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=path)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", _STARTUP.format(pkg=pkg,
                                                               types=COVARIANCE_TYPES)],
                         env=env, check=True, capture_output=True, text=True, cwd=path)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(out.stdout.strip().splitlines()[-1]), cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="the earlier commit")
    parser.add_argument("--divisor", type=int, default=5, help="rows: each case's n / this")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--case", action="append", help="only these (repeatable)")
    parser.add_argument("--cold", action="store_true", help="also cold and warm start-ups")
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="fastgmm_ab_")
    sys.path.insert(0, extract(args.ref, tmp))
    old = importlib.import_module("fastgmm_old")
    pkgs = {"new": fastgmm, "old": old}
    print(cpu_line())
    print(f"new: this checkout; old: {args.ref}; rows n / {args.divisor}; best of "
          f"{args.repeats}, alternating\n")
    print(f"{'case':34s} {'n':>8s} {'new':>10s} {'old':>10s} {'new/old':>8s}")
    for name, n, run in cases(args.divisor):
        if args.case and name.split(" ")[0] not in args.case:
            continue
        got, notes = run(pkgs, args.repeats)
        note = "; ".join(f"{k}: {v}" for k, v in notes.items() if v)
        print(f"{name:34s} {n:8d} {got['new']:10.4f} {got['old']:10.4f} "
              f"{got['new'] / got['old']:8.3f}  {note}", flush=True)
    if args.cold:
        print("\nstart-up: fresh interpreter, import and one fit of each covariance type")
        for label, pkg, path in (("new", "fastgmm", ROOT), ("old", "fastgmm_old", tmp)):
            cache = tempfile.mkdtemp(prefix="numba_cache_")
            cold = startup(pkg, path, cache)
            warm = min(startup(pkg, path, cache) for _ in range(3))
            print(f"  {label}: empty cache {cold[0]:6.2f} s ({cold[1]:6.2f} CPU s), "
                  f"warm cache {warm[0]:6.2f} s ({warm[1]:6.2f} CPU s)")


if __name__ == "__main__":
    main()
