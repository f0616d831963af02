"""E-step timings of an old copy of fastgmm against this one, alternately in one process.

Make the old copy first, with its relative imports intact::

    mkdir -p /tmp/oldpkg && git archive <commit> fastgmm | tar -x -C /tmp/oldpkg
    mv /tmp/oldpkg/fastgmm /tmp/oldpkg/fastgmm_old
    PYTHONPATH=. python bench_scripts/old_vs_new_estep.py [--threads N] [--repeats R]
    PYTHONPATH=. python bench_scripts/old_vs_new_estep.py --missing

Complete rows (``compute_stats``): every covariance type, float64 and
float32, an overlapping (d = 8) and a separated (d = 24) data set of 2e5
rows, k = 8; "bits same" says whether both copies give identical
statistics.  ``--missing`` (``incomplete_stats``): 2e5 x 12 with 20% of the
entries missing at random, k = 8, full and tied covariances.  Best of
``R`` runs of each, the two copies taking turns.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

N_ROWS, N_COMPONENTS = 200_000, 8


def _clusters(rng, n, d, k, spread):
    """Rows from ``k`` Gaussian clusters with random covariances: (X, means, covariances)."""
    means = rng.normal(scale=spread, size=(k, d))
    a = rng.normal(size=(k, d, d)) / np.sqrt(d)
    cov = a @ np.swapaxes(a, 1, 2) + 0.3 * np.eye(d)
    lab = rng.integers(k, size=n)
    chol = np.linalg.cholesky(cov)
    X = means[lab] + np.einsum("nij,nj->ni", chol[lab], rng.normal(size=(n, d)))
    return np.ascontiguousarray(X), means, cov


def _covariances(ctype, cov):
    """The covariance parameter of type ``ctype`` from full covariances."""
    if ctype == "full":
        return cov
    if ctype == "tied":
        return cov.mean(axis=0)
    diag = np.diagonal(cov, axis1=1, axis2=2).copy()
    return diag if ctype == "diag" else diag.mean(axis=1)


def _race(runs, repeats):
    """Best time of each callable in ``runs``, taking turns."""
    best = dict.fromkeys(runs, np.inf)
    for _ in range(repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def complete(pkgs, repeats):
    print(f"{'data':10s} {'d':>3s} {'type':9s} {'dtype':7s} {'old':>8s} {'new':>8s} new/old")
    k = N_COMPONENTS
    for kind, d, spread in (("overlap", 8, 1.0), ("separated", 24, 12.0)):
        X64, means, cov = _clusters(np.random.default_rng(0), N_ROWS, d, k, spread)
        for dtype in (np.float64, np.float32):
            X = np.ascontiguousarray(X64, dtype=dtype)
            for ctype in ("full", "tied", "diag", "spherical"):
                runs, stats = {}, {}
                for name, (compute, params_mod, _) in pkgs.items():
                    params = params_mod.GaussianParams.from_covariances(
                        ctype, np.full(k, 1.0 / k), means, _covariances(ctype, cov))
                    ws = compute.StatsWorkspace(ctype, k, d, n_samples=N_ROWS)
                    hints = compute.RowHints(N_ROWS) if ctype == "full" else None

                    def run(compute=compute, params=params, ws=ws, hints=hints, X=X):
                        inputs = compute.kernel_inputs(params, X.dtype)
                        return compute.compute_stats(X, None, params, ws, inputs, hints)

                    stats[name] = run()
                    runs[name] = run
                same = all(np.array_equal(getattr(stats["old"], f), getattr(stats["new"], f))
                           for f in ("nk", "t", "s", "log_likelihood"))
                best = _race(runs, repeats)
                print(f"{kind:10s} {d:3d} {ctype:9s} {np.dtype(dtype).name:7s} "
                      f"{best['old']:8.4f} {best['new']:8.4f} {best['new'] / best['old']:7.3f}"
                      f"  bits {'same' if same else 'differ'}", flush=True)


def missing(pkgs, repeats):
    k, d = N_COMPONENTS, 12
    rng = np.random.default_rng(0)
    for spread in (1.5, 6.0):
        X, means, cov = _clusters(rng, N_ROWS, d, k, spread)
        X[rng.random(X.shape) < 0.2] = np.nan
        X = X[~np.isnan(X).all(axis=1)]
        for ctype in ("full", "tied"):
            runs, stats = {}, {}
            for name, (_, params_mod, missing_mod) in pkgs.items():
                params = params_mod.GaussianParams.from_covariances(
                    ctype, np.full(k, 1.0 / k), means, _covariances(ctype, cov))
                runs[name] = (lambda m=missing_mod, p=params, X=X: m.incomplete_stats(X, None, p))
                stats[name] = runs[name]()
            best = _race(runs, repeats)
            old, new = stats["old"], stats["new"]
            rel = max(float(np.max(np.abs(getattr(old, f) - getattr(new, f))
                                   / np.max(np.abs(getattr(old, f))))) for f in ("nk", "t", "s"))
            print(f"spread {spread:4.1f} {ctype:5s} old {best['old']:.4f} new {best['new']:.4f} "
                  f"new/old {best['new'] / best['old']:.3f} max rel diff {rel:.1e}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="/tmp/oldpkg", help="folder holding fastgmm_old")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--missing", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, args.old)
    import numba
    from fastgmm_old import _compute as old_compute
    from fastgmm_old import _missing as old_missing
    from fastgmm_old import _params as old_params

    from fastgmm import _compute, _missing, _params

    numba.set_num_threads(args.threads)
    pkgs = {"old": (old_compute, old_params, old_missing), "new": (_compute, _params, _missing)}
    print(f"threads {numba.get_num_threads()}, best of {args.repeats}; seconds per E-step")
    (missing if args.missing else complete)(pkgs, args.repeats)


if __name__ == "__main__":
    main()
