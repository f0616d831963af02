"""``fastgmm demo``: segment the bundled wholesale customers and draw the result.

The same lesson as ``examples/wholesale_segmentation.py``, condensed: two
segments on standardised Grocery and Milk spending with soft assignments and
covariance ellipses, the BIC and AIC of k = 1..8 mixtures of every
covariance type on the six log-spending columns next to the effective number
of components of a 10-component variational (Dirichlet process) fit on the
same columns, and a segment profile in the original units.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._io import atomic_path
from ._params import COVARIANCE_TYPES
from ._prep import standardize
from ._table import Table
from .datasets import Wholesale, load_wholesale

# The two ends of matplotlib's "coolwarm", darkened, so ellipses match points.
_SEGMENT_COLORS = ("#2a3a9c", "#9c0f1f")


def order_by_mean(means: np.ndarray, feature: int = 0) -> np.ndarray:
    """Relabelling map ``new = order[old]`` sorting components by one mean."""
    rank = np.empty(means.shape[0], dtype=np.int64)
    rank[np.argsort(means[:, feature], kind="stable")] = np.arange(means.shape[0])
    return rank


def criterion_curves(X: np.ndarray, ks, covariance_types=COVARIANCE_TYPES, *,
                     n_init: int = 1, seed: int = 0, verbose: int = 0) -> dict:
    """BIC and AIC of a mixture per number of components and covariance type.

    One :func:`fastgmm.select` grid (``verbose`` as there).

    Returns
    -------
    dict
        ``{"bic": {type: (ks, values)}, "aic": {type: (ks, values)}}``.
    """
    from ._select import select

    result = select(X, ks, covariance_types, n_init=n_init, random_state=seed, max_iter=500,
                    verbose=verbose)
    ks = np.asarray(result.n_components)
    return {name: {ctype: (ks, result.values(name)[:, j])
                   for j, ctype in enumerate(result.covariance_types)}
            for name in ("bic", "aic")}


def variational_count(X: np.ndarray, seed: int = 0) -> tuple[int, float]:
    """Effective components of a 10-component Dirichlet process mixture of ``X``.

    The alternative to a criterion grid: one variational fit whose unneeded
    components get weights near zero.  Full covariances and scikit-learn's
    default priors, so the count is not tuned to the data.

    Returns
    -------
    n_effective : int
        Components of weight above ``threshold``.
    threshold : float
        :class:`fastgmm.BayesianGaussianMixture`'s threshold.
    """
    # Imported here: ``import fastgmm`` does not load the Bayesian module.
    from ._bayesian import EFFECTIVE_WEIGHT_THRESHOLD, BayesianGaussianMixture

    model = BayesianGaussianMixture(10, covariance_type="full",
                                    weight_concentration_prior_type="dirichlet_process",
                                    max_iter=500, random_state=seed).fit(X)
    return model.n_effective_components_, EFFECTIVE_WEIGHT_THRESHOLD


def criterion_table(curves: dict, title: str) -> Table:
    """Rows k, one column per covariance type."""
    types = list(curves)
    ks = curves[types[0]][0]
    rows = tuple((int(k),) + tuple(float(curves[t][1][i]) for t in types)
                 for i, k in enumerate(ks))
    return Table(("k",) + tuple(types), rows, {t: ".1f" for t in types}, title)


def best_of(curves: dict) -> tuple[int, str, float]:
    """(k, covariance type, value) of the lowest finite criterion value."""
    best = (0, "", np.inf)
    for ctype, (ks, values) in curves.items():
        for k, v in zip(ks, values, strict=True):
            if np.isfinite(v) and v < best[2]:
                best = (int(k), ctype, float(v))
    return best


def save_figure(fig, path: str) -> None:
    """Save a matplotlib figure as PNG via a temporary file and a rename."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


@dataclass
class DemoResult:
    """What the demo computed and wrote."""

    profile: Table
    bic: Table
    aic: Table
    best_bic: tuple
    best_aic: tuple
    n_uncertain: int
    n_effective: int
    files: list


def run_demo(out_dir: str = "fastgmm_demo_output", *, quick: bool = False, seed: int = 0,
             progress: Callable[[str], None] | None = None, stdout=None) -> DemoResult:
    """Run the demo: fit, print the tables, write ``demo_segments.png`` and ``demo_bic_aic.png``.

    Without matplotlib the tables are still printed and the plots skipped,
    with a message on stderr.

    Parameters
    ----------
    out_dir : str
        Folder for the PNG files (created if missing).
    quick : bool
        Fewer restarts and k = 1..4 only (for tests).
    seed : int
    progress : callable, optional
        Receives one-line progress messages.
    stdout : file, optional
        Where the tables are printed (default ``sys.stdout``).
    """
    from .plotting import plot_criterion, plot_ellipses, plot_soft_assignments

    stdout = sys.stdout if stdout is None else stdout
    say = progress or (lambda message: None)
    start = time.perf_counter()
    data: Wholesale = load_wholesale()
    names = list(data.spending_columns)
    grocery_milk = data.spending[:, [names.index("Grocery"), names.index("Milk")]]
    Z, mean, std = standardize(grocery_milk)

    from ._estimator import GaussianMixture

    n_init = 1 if quick else 5
    say(f"fitting 2 segments on standardised Grocery and Milk ({n_init} initialisation(s))")
    model = GaussianMixture(2, covariance_type="full", n_init=n_init, random_state=seed).fit(Z)
    rank = order_by_mean(model.means_)      # segment 0: the lower grocery spenders
    proba = np.empty_like(model.predict_proba(Z))
    proba[:, rank] = model.predict_proba(Z)
    labels = proba.argmax(axis=1)
    n_uncertain = int((proba.max(axis=1) < 0.9).sum())

    profile = data.segment_profile(labels, 2, title="Segments (2-component GMM on "
                                   "standardised Grocery and Milk; mean annual spending, m.u.)")
    print(profile, file=stdout)
    print(f"{n_uncertain} of {len(labels)} customers ({n_uncertain / len(labels):.0%}) have "
          "no segment with probability >= 0.9.\n", file=stdout)

    ks = range(1, 5 if quick else 9)
    log_spend = np.log(data.spending)
    say(f"BIC and AIC for k = 1..{ks[-1]} and 4 covariance types on log spending "
        f"({4 * len(ks)} fits)")
    curves = criterion_curves(log_spend, ks, n_init=1 if quick else 3, seed=seed,
                              verbose=int(progress is not None))
    bic = criterion_table(curves["bic"], "BIC on the six log-spending columns (lower is better)")
    aic = criterion_table(curves["aic"], "AIC on the six log-spending columns (lower is better)")
    best_bic, best_aic = best_of(curves["bic"]), best_of(curves["aic"])
    print(bic, file=stdout)
    print(f"BIC prefers k={best_bic[0]} with {best_bic[1]} covariances.\n", file=stdout)
    print(aic, file=stdout)
    print(f"AIC prefers k={best_aic[0]} with {best_aic[1]} covariances.", file=stdout)
    say("variational fit: 10 components, Dirichlet process prior, on log spending")
    n_effective, threshold = variational_count(log_spend, seed)
    print(f"Variational Bayes (10 components, Dirichlet process prior, default priors) "
          f"keeps {n_effective} with weight above {threshold:g}; BIC chose k={best_bic[0]}.",
          file=stdout)

    files = []
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("demo: plots skipped: they need matplotlib (pip install \"fastgmm[plot]\")",
              file=sys.stderr)
        return DemoResult(profile, bic, aic, best_bic, best_aic, n_uncertain, n_effective, files)
    os.makedirs(out_dir, exist_ok=True)
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_soft_assignments(grocery_milk, proba, ax=left, component=1,
                          colorbar_label="P(segment 1)")
    plot_ellipses(model, ax=left, scale=std, offset=mean,
                  colors=[_SEGMENT_COLORS[r] for r in rank])
    left.set_xlabel("Grocery (annual spending, m.u.)")
    left.set_ylabel("Milk (annual spending, m.u.)")
    left.set_title("Two segments: soft assignments, 1σ and 2σ ellipses")
    plot_criterion(curves["bic"], ax=right, criterion="BIC")
    right.set_title("Choosing k on log spending")
    path = os.path.join(out_dir, "demo_segments.png")
    save_figure(fig, path)
    files.append(path)
    say(f"wrote {path}")

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    for ax, name in zip(fig.subplots(1, 2), ("bic", "aic"), strict=True):
        plot_criterion(curves[name], ax=ax, criterion=name.upper())
        ax.set_title(f"{name.upper()} on the six log-spending columns")
    path = os.path.join(out_dir, "demo_bic_aic.png")
    save_figure(fig, path)
    files.append(path)
    say(f"wrote {path}")
    say(f"done in {time.perf_counter() - start:.1f} s")
    return DemoResult(profile, bic, aic, best_bic, best_aic, n_uncertain, n_effective, files)
