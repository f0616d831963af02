"""``fastgmm demo``: segment the bundled wholesale customers and draw the result.

The same lesson as ``examples/wholesale_segmentation.py``, condensed: two
segments on standardised Grocery and Milk spending with soft assignments and
covariance ellipses, the BIC and AIC of k = 1..8 mixtures of every
covariance type on the six log-spending columns next to a 10-component
variational (Dirichlet process) fit on the same columns that switches the
components it does not need off, and a segment profile in the original units.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._covariance import SKLEARN_TYPES
from ._io import atomic_path
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


def criterion_curves(X: np.ndarray, ks, covariance_types=SKLEARN_TYPES, *,
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


#: Components of the demo's variational fit, and the weight of its Wishart
#: prior in pseudo-observations (``degrees_of_freedom_prior``).
VB_COMPONENTS = 10
VB_PRIOR_DOF = 50


def variational_fit(X: np.ndarray, seed: int = 0):
    """A 10-component Dirichlet process mixture of ``X`` that switches components off.

    The point of a variational fit is that it needs no grid over k: it
    starts with more components than the data need and drives the weights of
    the unneeded ones towards zero.  Whether it does depends on the prior on
    the covariances.  With the default (a Wishart prior worth as many
    pseudo-observations as there are columns) ten narrow components each
    keep a small tight group of customers and none is switched off.  The
    demo gives the prior the weight of ``VB_PRIOR_DOF`` = 50 observations
    (about a ninth of the 440 customers) centred on the data's covariance: a
    component must then explain many customers before its covariance can be
    narrower than the data's, so a few broad components keep the weight and
    the others are switched off.

    Returns
    -------
    BayesianGaussianMixture
        The fitted model (full covariances, ``max_iter=500``).
    """
    # Imported here: ``import fastgmm`` does not load the Bayesian module.
    from ._bayesian import BayesianGaussianMixture

    return BayesianGaussianMixture(VB_COMPONENTS, covariance_type="full",
                                   weight_concentration_prior_type="dirichlet_process",
                                   degrees_of_freedom_prior=VB_PRIOR_DOF, max_iter=500,
                                   random_state=seed).fit(X)


def figure_caption(best_bic: tuple, seed: int) -> str:
    """What ``demo_segments.png`` shows, stored in the PNG (its Description)."""
    return (f"fastgmm demo, seed {seed}: two segments on standardised Grocery and Milk; "
            f"BIC on log spending lowest at k={best_bic[0]} with {best_bic[1]} covariances")


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


def save_figure(fig, path: str, description: str | None = None) -> None:
    """Save a matplotlib figure as PNG via a temporary file and a rename.

    ``description`` is stored in the PNG's text chunk ``Description``.
    """
    metadata = {"Software": "fastgmm demo"}
    if description is not None:
        metadata["Description"] = description
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata=metadata)


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
    #: The variational fit's component weights, largest first.
    vb_weights: np.ndarray | None = None


def run_demo(out_dir: str = "fastgmm_demo_output", *, quick: bool = False, seed: int = 0,
             progress: Callable[[str], None] | None = None, stdout=None) -> DemoResult:
    """Run the demo: fit, print the tables, write ``demo_segments.png`` and ``demo_bic_aic.png``.

    ``demo_bic_aic.png`` shows BIC, AIC and the weights of the variational
    fit's components, those switched off in grey.

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
    say(f"variational fit: {VB_COMPONENTS} components, Dirichlet process prior, on log "
        "spending")
    from ._bayesian import EFFECTIVE_WEIGHT_THRESHOLD

    vb = variational_fit(log_spend, seed)
    n_effective = int(vb.n_effective_components_)
    vb_weights = np.sort(np.asarray(vb.weights_))[::-1]
    print(f"\nVariational Bayes instead of a grid: {VB_COMPONENTS} components, Dirichlet "
          f"process prior, covariance prior worth {VB_PRIOR_DOF} observations.", file=stdout)
    print("Component weights, largest first: "
          + " ".join(f"{w:.3f}" for w in vb_weights), file=stdout)
    print(f"{VB_COMPONENTS - n_effective} of {VB_COMPONENTS} components are switched off "
          f"(weight below {EFFECTIVE_WEIGHT_THRESHOLD:g}); {n_effective} keep the data, "
          f"where BIC chose k={best_bic[0]}.", file=stdout)
    result = DemoResult(profile, bic, aic, best_bic, best_aic, n_uncertain, n_effective, [],
                        vb_weights)

    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("demo: plots skipped: they need matplotlib (pip install \".[plot]\" in a "
              "checkout of fastgmm, or pip install matplotlib)",
              file=sys.stderr)
        return result
    files = result.files
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
    save_figure(fig, path, figure_caption(best_bic, seed))
    files.append(path)
    say(f"wrote {path}")

    fig = Figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, name in zip(axes[:2], ("bic", "aic"), strict=True):
        plot_criterion(curves[name], ax=ax, criterion=name.upper())
        ax.set_title(f"{name.upper()} on the six log-spending columns")
    ax = axes[2]
    on = vb_weights >= EFFECTIVE_WEIGHT_THRESHOLD
    positions = np.arange(1, VB_COMPONENTS + 1)
    ax.bar(positions[on], vb_weights[on], color=_SEGMENT_COLORS[0], label="kept")
    ax.bar(positions[~on], vb_weights[~on], color="0.6", label="switched off")
    ax.axhline(EFFECTIVE_WEIGHT_THRESHOLD, color=_SEGMENT_COLORS[1], linestyle="--",
               label=f"weight {EFFECTIVE_WEIGHT_THRESHOLD:g}")
    ax.set_yscale("log")
    ax.set(xticks=positions, xlabel="component (heaviest first)", ylabel="weight (log scale)",
           title=f"Variational fit: {VB_COMPONENTS - n_effective} of {VB_COMPONENTS} "
                 "switched off")
    ax.legend()
    path = os.path.join(out_dir, "demo_bic_aic.png")
    save_figure(fig, path)
    files.append(path)
    say(f"wrote {path}")
    say(f"done in {time.perf_counter() - start:.1f} s")
    return result
