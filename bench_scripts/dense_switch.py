"""Listed against dense E-step, per benchmark family: where each path wins, and what "auto" picks.

Run from the repository root::

    python bench_scripts/dense_switch.py                    # every family, n / 5
    python bench_scripts/dense_switch.py --family overlap-full --divisor 1

For each case of ``benchmarks.common.FAMILIES`` (except tied, which has no
dense path) the parameters after a few EM iterations from the case's start
are fed to one E-step three times: forced listed (``DENSE_PATH="never"``),
forced dense (``"always"``) and the default per-chunk choice (``"auto"``),
timed alternately in one process (best of ``--repeats``), with the fraction
of rows the choice sent to the dense path.  The thresholds in
``fastgmm._compute.DENSE_SWITCH`` are meant to keep "auto" within a few per
cent of the faster of the two; this script is how to check it on a machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "asv_bench"))

from benchmarks.common import FAMILIES  # noqa: E402

import fastgmm  # noqa: E402
from fastgmm import _config, _parallel  # noqa: E402
from fastgmm._sources import ArraySource  # noqa: E402

MODES = ("never", "always", "auto")


def case_row(case, n, warm_iters, repeats):
    """Seconds per E-step of each mode and the fraction of rows "auto" sent dense."""
    X, means0 = case.data(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params = fastgmm.GaussianMixture(case.k, covariance_type=case.covariance_type, tol=0,
                                         max_iter=warm_iters, **case.start(means0)).fit(X)._params()
    sources = {mode: ArraySource(X) for mode in MODES}
    best = dict.fromkeys(MODES, np.inf)
    frac = 0.0
    with _parallel.thread_limit(None):
        for r in range(repeats + 1):  # the first round compiles and fills the hints
            for mode in MODES:
                _config.DENSE_PATH = mode
                t = time.perf_counter()
                sources[mode].stats(params)
                if r:
                    best[mode] = min(best[mode], time.perf_counter() - t)
                if mode == "auto":
                    frac = sources[mode]._workspace.dense_fraction
    _config.DENSE_PATH = "auto"
    return best, frac


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", action="append", default=[], metavar="NAME")
    ap.add_argument("--divisor", type=int, default=5, help="rows = the case's n / divisor")
    ap.add_argument("--warm-iters", type=int, default=3,
                    help="EM iterations from the case's start before timing")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    names = args.family or [n for n, c in FAMILIES.items() if c.covariance_type != "tied"]
    print(f"{'case':<28} {'n':>8} {'listed s':>9} {'dense s':>9} {'auto s':>9} "
          f"{'auto dense rows':>16} {'auto / best':>11}")
    for name in names:
        case = FAMILIES[name]
        n = case.rows(args.divisor)
        best, frac = case_row(case, n, args.warm_iters, args.repeats)
        fastest = min(best["never"], best["always"])
        print(f"{name:<28} {n:>8} {best['never']:>9.4f} {best['always']:>9.4f} "
              f"{best['auto']:>9.4f} {frac:>16.3f} {best['auto'] / fastest:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
