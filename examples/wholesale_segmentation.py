"""Segmenting wholesale customers with Gaussian mixtures.

The classic lesson on the UCI wholesale-customers data (440 clients of a
Portuguese distributor, annual spending on six product categories), and a
few steps past it:

1. drop Channel and Region and look at Grocery against Milk;
2. standardise (population standard deviation, ddof=0), fit a two-component
   Gaussian mixture, and compare its hard labels with k-means (k=2) on the
   same data through the adjusted Rand index;
3. colour every customer by its probability of the second segment, so the
   uncertain ones in between show, and draw each component's 1 and 2 sigma
   covariance ellipses;
4. choose the number of segments on the six log-spending columns with BIC and
   AIC, for k = 1..8 and all four covariance types;
5. profile the segments in the original units: size, share, mean spending
   per category, and the Channel mix (Horeca vs Retail) that the model never
   saw.

Run::

    python examples/wholesale_segmentation.py --out wholesale_output
    python examples/wholesale_segmentation.py --quick      # fewer fits

It writes four PNG files into the output folder and prints the tables.
Needs matplotlib (``pip install "fastgmm[plot]"``); scikit-learn is not needed.
"""

from __future__ import annotations

import argparse
import os
import time
from math import comb

import numpy as np
from matplotlib.figure import Figure

import fastgmm
from fastgmm import plotting
from fastgmm._init import kmeans
from fastgmm._table import Table
from fastgmm.datasets import load_wholesale

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def adjusted_rand_index(labels_a, labels_b) -> float:
    """Adjusted Rand index of two labellings (Hubert and Arabie, 1985).

    1 for identical partitions (up to renaming), about 0 for independent ones.
    Computed from the contingency table ``n_ij`` of the two labellings:
    ``(sum_ij C(n_ij, 2) - E) / (max - E)`` with ``E = sum_i C(a_i, 2) *
    sum_j C(b_j, 2) / C(n, 2)`` and ``max`` the mean of the two row/column sums.
    """
    a = np.asarray(labels_a)
    b = np.asarray(labels_b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"labellings must be 1-D of equal length, got {a.shape} and {b.shape}")
    n = a.shape[0]
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)
    pairs = sum(comb(int(v), 2) for v in table.ravel())
    rows = sum(comb(int(v), 2) for v in table.sum(axis=1))
    cols = sum(comb(int(v), 2) for v in table.sum(axis=0))
    total = comb(n, 2)
    expected = rows * cols / total if total else 0.0
    maximum = (rows + cols) / 2.0
    if maximum == expected:  # both labellings trivial (one cluster, or all singletons)
        return 1.0
    return float((pairs - expected) / (maximum - expected))


def standardize(X):
    """Columns centred and divided by their population std (ddof=0)."""
    mean, std = X.mean(axis=0), X.std(axis=0, ddof=0)
    return (X - mean) / std, mean, std


def relabel_by(values, labels, k):
    """Rename labels 0..k-1 so that the segment mean of ``values`` increases."""
    means = np.array([values[labels == j].mean() if np.any(labels == j) else np.inf
                      for j in range(k)])
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(means, kind="stable")] = np.arange(k)
    return rank[labels], rank


def best_kmeans(Z, k, n_init, seed):
    """k-means (k-means++ seeds, Lloyd steps) restarted ``n_init`` times; lowest inertia."""
    rng = np.random.RandomState(seed)
    best = None
    for _ in range(n_init):
        centers, labels = kmeans(np.ascontiguousarray(Z), None, k, rng)
        inertia = float(((Z - centers[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels)
    return best[1]


def save(fig, out, name):
    path = os.path.join(out, name)
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")
    return path


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="wholesale_output", help="folder for the PNG files")
    parser.add_argument("--quick", action="store_true",
                        help="fewer restarts and k = 1..4 only (a quick check)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    n_init = 1 if args.quick else 5
    written = []
    start = time.perf_counter()

    # 1. The data, without Channel and Region; Grocery against Milk.
    data = load_wholesale()
    names = list(data.spending_columns)
    spend = data.spending                          # 440 x 6, Channel and Region dropped
    gm_cols = [names.index("Grocery"), names.index("Milk")]
    X = spend[:, gm_cols]
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.scatter(X[:, 0], X[:, 1], s=10, color="0.3")
    ax.set(xlabel="Grocery (m.u.)", ylabel="Milk (m.u.)",
           title=f"{len(X)} wholesale customers: Grocery vs Milk")
    written.append(save(fig, args.out, "1_grocery_vs_milk.png"))

    # 2. Standardise, fit two components, compare with k-means.
    Z, mean, std = standardize(X)
    gmm = fastgmm.GaussianMixture(2, covariance_type="full", n_init=n_init,
                                  random_state=args.seed).fit(Z)
    gmm_labels, gmm_rank = relabel_by(Z[:, 0], gmm.predict(Z), 2)
    km_labels, _ = relabel_by(Z[:, 0], best_kmeans(Z, 2, 3 if args.quick else 10, args.seed), 2)
    channel = data.channel
    agreement = Table(
        ("labellings", "adjusted Rand index"),
        (("GMM vs k-means", adjusted_rand_index(gmm_labels, km_labels)),
         ("GMM vs Channel", adjusted_rand_index(gmm_labels, channel)),
         ("k-means vs Channel", adjusted_rand_index(km_labels, channel))),
        {"adjusted Rand index": ".3f"}, "Agreement of the two-segment solutions")
    print(agreement, "\n")
    print(Table(("method", "segment 0", "segment 1"),
                (("GMM", *np.bincount(gmm_labels, minlength=2)),
                 ("k-means", *np.bincount(km_labels, minlength=2))),
                title="Customers per segment"), "\n")

    fig = Figure(figsize=(10, 4.3), layout="constrained")
    panels = fig.subplots(1, 2, sharex=True, sharey=True)
    for ax, labels, name in zip(panels, (gmm_labels, km_labels),
                                ("Gaussian mixture", "k-means"), strict=True):
        plotting.plot_labels(Z, labels, ax=ax)
        ax.set(xlabel="Grocery (standardised)", ylabel="Milk (standardised)",
               title=f"{name}, k = 2")
    fig.suptitle("Hard labels; adjusted Rand index between them: "
                 f"{adjusted_rand_index(gmm_labels, km_labels):.3f}")
    written.append(save(fig, args.out, "2_gmm_vs_kmeans.png"))

    # 3. Soft assignments and covariance ellipses.
    proba = np.empty((len(Z), 2))
    proba[:, gmm_rank] = gmm.predict_proba(Z)
    uncertain = (proba[:, 1] > 0.1) & (proba[:, 1] < 0.9)
    print(f"{uncertain.sum()} customers ({uncertain.mean():.0%}) have a probability of "
          "segment 1 between 0.1 and 0.9.\n")
    fig = Figure(figsize=(6.5, 5), layout="constrained")
    ax = fig.subplots()
    plotting.plot_soft_assignments(Z, proba, ax=ax, component=1,
                                   colorbar_label="P(segment 1)")
    plotting.plot_ellipses(gmm, ax=ax, colors=[("#2a3a9c", "#9c0f1f")[r] for r in gmm_rank])
    ax.set(xlabel="Grocery (standardised)", ylabel="Milk (standardised)",
           title="Soft assignments with 1σ (solid) and 2σ (dashed) ellipses")
    written.append(save(fig, args.out, "3_soft_assignments.png"))

    # 4. How many segments? BIC and AIC on the six log-spending columns.
    log_spend = np.log(spend)
    ks = np.arange(1, 5 if args.quick else 9)
    bic = {t: (ks, np.full(len(ks), np.nan)) for t in COVARIANCE_TYPES}
    aic = {t: (ks, np.full(len(ks), np.nan)) for t in COVARIANCE_TYPES}
    models = {}
    for ctype in COVARIANCE_TYPES:
        for i, k in enumerate(ks):
            model = fastgmm.GaussianMixture(int(k), covariance_type=ctype,
                                            n_init=1 if args.quick else 3,
                                            max_iter=500, random_state=args.seed)
            model.fit(log_spend)
            bic[ctype][1][i] = model.bic(log_spend)
            aic[ctype][1][i] = model.aic(log_spend)
            models[ctype, int(k)] = model
    for name, curves in (("BIC", bic), ("AIC", aic)):
        print(Table(("k",) + COVARIANCE_TYPES,
                    tuple((int(k),) + tuple(float(curves[t][1][i]) for t in COVARIANCE_TYPES)
                          for i, k in enumerate(ks)),
                    {t: ".1f" for t in COVARIANCE_TYPES},
                    f"{name} on log spending (lower is better)"), "\n")
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    for ax, name, curves in zip(fig.subplots(1, 2), ("BIC", "AIC"), (bic, aic), strict=True):
        plotting.plot_criterion(curves, ax=ax, criterion=name)
        ax.set_title(f"{name}, six log-spending columns")
    written.append(save(fig, args.out, "4_bic_aic.png"))
    best_type, best_i = min(((t, i) for t in COVARIANCE_TYPES for i in range(len(ks))),
                            key=lambda ti: bic[ti[0]][1][ti[1]])
    best_k = int(ks[best_i])
    print(f"BIC chooses k = {best_k} with {best_type} covariances.\n")

    # 5. Segment profiles in the original units.
    print(data.segment_profile(gmm_labels, 2, title="Two segments from Grocery and Milk "
                               "(mean annual spending, m.u.)"), "\n")
    best = models[best_type, best_k]
    best_labels, _ = relabel_by(log_spend[:, names.index("Grocery")],
                                best.predict(log_spend), best_k)
    print(data.segment_profile(best_labels, best_k,
                               title=f"{best_k} segments chosen by BIC on log spending "
                               f"({best_type}; mean annual spending, m.u.)"))
    print(f"\ndone in {time.perf_counter() - start:.1f} s")
    return written


if __name__ == "__main__":
    main()
