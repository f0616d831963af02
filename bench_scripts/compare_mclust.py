"""fastgmm against R's mclust: mclust's 9 x 14 BIC grid, from the same initial partitions.

Usage::

    python bench_scripts/compare_mclust.py [--n 100000] [--d 8] [--threads 1] [--skip-big]

Needs ``Rscript`` with mclust (Debian: ``apt-get install r-cran-mclust``).

Two data sets:

* mclust's ``diabetes`` (145 x 3, ``tests/data/mclust/diabetes.csv``):
  mclust's own ``mclustBIC(X)`` is timed (its whole default grid, k = 1..9
  and the 14 models, including its hierarchical initialisation), and then
  the same grid from the *same* initial partitions (mclust's
  ``hclass(hc(X), 1:9)``) with ``me()`` in R and with fastgmm;
* a synthetic ``n x d`` mixture (default 100,000 x 8, seed 0): the initial
  partitions are k-means labels (fastgmm's k-means, one per k), and both R's
  ``me()`` and fastgmm fit every cell from them.

Both stop EM on the same rule: mclust stops when the relative change of the
log-likelihood is below ``emControl()$tol[1]`` (1e-5); fastgmm's ``tol`` is
on the mean log-likelihood per sample, so it is set to 1e-5 times the mean
log-likelihood of the one-component full model (the same rule, to within
the change of the log-likelihood over the fit).  ``reg_covar=0``; mclust
runs on one core; fastgmm with ``--threads`` Numba threads.

A second table gives fastgmm's time per EM iteration of each model next to
the scikit-learn type it is evaluated as (same data, same start, 10
iterations), on the big data set.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fastgmm  # noqa: E402
from fastgmm._compute import resp_stats  # noqa: E402
from fastgmm._covariance import MCLUST_MODELS, family  # noqa: E402
from fastgmm._init import kmeans  # noqa: E402

R_GRID = r"""
suppressPackageStartupMessages(library(mclust))
args <- commandArgs(trailingOnly = TRUE)
X <- as.matrix(read.csv(args[1]))
labels <- as.matrix(read.csv(args[2]))
do_mclustbic <- args[3] == "yes"
if (do_mclustbic) {
  t <- system.time(b <- mclustBIC(X))[["elapsed"]]
  cat("mclustBIC", t, "\n")
}
models <- mclust.options("emModelNames")
failed <- 0
t <- system.time(for (G in seq_len(ncol(labels))) {
  z <- unmap(labels[, G])
  for (m in models) {
    fit <- if (G == 1) mvn(m, X) else me(data = X, modelName = m, z = z)
    if (is.null(fit$loglik) || is.na(fit$loglik)) failed <- failed + 1
  }
})[["elapsed"]]
cat("me_grid", t, "failed", failed, "\n")
"""

R_PARTITIONS = r"""
suppressPackageStartupMessages(library(mclust))
args <- commandArgs(trailingOnly = TRUE)
X <- as.matrix(read.csv(args[1]))
write.csv(hclass(hc(X), 1:9), args[2], row.names = FALSE)
"""


def rscript(code: str, *args: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as f:
        f.write(code)
    try:
        return subprocess.run(["Rscript", f.name, *args], capture_output=True, text=True,
                              check=True).stdout
    finally:
        os.unlink(f.name)


def start(X, labels, k, model):
    """The M-step of the hard partition ``labels`` (``me(z = unmap(labels))``)."""
    fam = family(model)
    shift = X.mean(axis=0) if fam.shared else np.zeros((k, X.shape[1]))
    stats = resp_stats(X, None, None, k, shift, model, labels=labels.astype(np.int64))
    return stats.m_step(0.0)


def fit_from(X, model, p0, tol, threads, max_iter=100000):
    gm = fastgmm.GaussianMixture(p0.n_components, covariance_type=model, reg_covar=0.0,
                                 tol=tol, max_iter=max_iter, weights_init=p0.weights,
                                 means_init=p0.means, precisions_init=p0.precisions,
                                 n_threads=threads, on_degenerate="ignore")
    return gm.fit(X)


def fastgmm_grid(X, partitions, tol, threads):
    """Seconds for the whole grid, the best cell by BIC, and the failed cells."""
    best = (np.inf, None)
    failed = 0
    t0 = time.perf_counter()
    for j in range(partitions.shape[1]):
        k = j + 1
        for model in MCLUST_MODELS:
            try:
                gm = fit_from(X, model, start(X, partitions[:, j], k, model), tol, threads)
            except (ValueError, FloatingPointError):
                # a singular start or a collapse (mclust's me() gives NA there)
                failed += 1
                continue
            bic = gm.bic(X)
            if bic < best[0]:
                best = (bic, f"{model},{k}")
    return time.perf_counter() - t0, best, failed


def mclust_tol(X):
    ll = fastgmm.GaussianMixture(1, covariance_type="full", reg_covar=0.0).fit(X).score(X)
    return 1e-5 * abs(ll)


def main():
    warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-big", action="store_true")
    args = ap.parse_args()
    import numba

    numba.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp())

    # warm up the compiled kernels (Numba's first compile is not a fit's cost)
    Xw = np.random.default_rng(1).normal(size=(500, 3))
    for model in MCLUST_MODELS:
        fastgmm.GaussianMixture(2, covariance_type=model, random_state=0).fit(Xw)

    print("== diabetes (145 x 3), 9 x 14 grid ==")
    csv = ROOT / "tests" / "data" / "mclust" / "diabetes.csv"
    X = np.loadtxt(csv, delimiter=",", skiprows=1)
    rscript(R_PARTITIONS, str(csv), str(tmp / "diabetes_parts.csv"))
    parts = np.loadtxt(tmp / "diabetes_parts.csv", delimiter=",", skiprows=1).astype(int) - 1
    out = rscript(R_GRID, str(csv), str(tmp / "diabetes_parts.csv"), "yes")
    print(out.strip())
    tol = mclust_tol(X)
    fastgmm_grid(X, parts, tol, args.threads)            # warm caches
    secs, best, failed = fastgmm_grid(X, parts, tol, args.threads)
    print(f"fastgmm_grid {secs:.3f}  (best {best[1]}, BIC {best[0]:.3f}; "
          f"{failed} cells failed)")
    t0 = time.perf_counter()
    res = fastgmm.select(X, range(1, 10), "mclust", random_state=0, reg_covar=0.0,
                         n_threads=args.threads, on_degenerate="ignore")
    print(f"fastgmm.select (k-means starts) {time.perf_counter() - t0:.3f}  "
          f"(best {res.best_params_})")

    if args.skip_big:
        return
    n, d = args.n, args.d
    print(f"\n== synthetic {n} x {d}, 9 x 14 grid ==")
    rng = np.random.default_rng(0)
    k_true = 5
    centres = rng.normal(scale=4.0, size=(k_true, d))
    X = np.vstack([rng.multivariate_normal(c, np.diag(rng.uniform(0.5, 2.0, d)), size=n // k_true)
                   for c in centres])
    np.savetxt(tmp / "big.csv", X, delimiter=",", header=",".join(f"x{i}" for i in range(d)),
               comments="")
    parts = np.empty((n, 9), dtype=np.int64)
    parts[:, 0] = 0
    for k in range(2, 10):
        seeds, _ = kmeans(X, None, k, np.random.RandomState(k))
        parts[:, k - 1] = np.argmin(((X[:, None, :] - seeds[None]) ** 2).sum(-1), axis=1)
    np.savetxt(tmp / "big_parts.csv", parts + 1, delimiter=",", fmt="%d",
               header=",".join(f"G{k}" for k in range(1, 10)), comments="")
    out = rscript(R_GRID, str(tmp / "big.csv"), str(tmp / "big_parts.csv"), "no")
    print(out.strip())
    tol = mclust_tol(X)
    secs, best, failed = fastgmm_grid(X, parts, tol, args.threads)
    print(f"fastgmm_grid {secs:.3f}  (best {best[1]}, BIC {best[0]:.3f}; "
          f"{failed} cells failed)")

    print(f"\n== time per EM iteration, {n} x {d}, k = 4, 10 iterations from the same start ==")
    nearest = {m: family(m).kind for m in MCLUST_MODELS}
    def per_iteration(model):
        """Best of three 10-iteration fits from the k = 4 partition, seconds per iteration."""
        p0 = start(X, parts[:, 3], 4, model)
        fit_from(X, model, p0, 0.0, args.threads, max_iter=2)      # warm
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            gm = fit_from(X, model, p0, 0.0, args.threads, max_iter=10)
            best = min(best, (time.perf_counter() - t0) / gm.n_iter_)
        return best

    base = {kind: per_iteration(kind) for kind in ("spherical", "diag", "tied", "full")}
    print(f"{'model':6s} {'ms/iter':>8s} {'kind':>10s} {'kind ms/iter':>13s} {'ratio':>6s}")
    for model in MCLUST_MODELS:
        per = per_iteration(model)
        kind = nearest[model]
        print(f"{model:6s} {per * 1e3:8.2f} {kind:>10s} {base[kind] * 1e3:13.2f} "
              f"{per / base[kind]:6.2f}")


if __name__ == "__main__":
    main()
