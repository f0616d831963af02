"""Plots for Gaussian mixtures: covariance ellipses, BIC/AIC curves, soft assignments.

matplotlib is an optional dependency (``pip install "fastgmm[plot]"``); it
is imported only when a function here is called.  Every function draws on
the axis it is given (default: the current pyplot axis) and returns it.

>>> import numpy as np, fastgmm
>>> from matplotlib.figure import Figure
>>> from fastgmm import plotting
>>> X = np.random.default_rng(0).normal(size=(300, 2))
>>> model = fastgmm.fit(X, n_components=2, random_state=0)
>>> ax = Figure().subplots()
>>> ax = plotting.plot_soft_assignments(X, model.predict_proba(X), ax=ax)
>>> ax = plotting.plot_ellipses(model, ax=ax)
>>> len(ax.patches)      # one ellipse per component and standard deviation
4
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ._covariance import FAMILIES

__all__ = ["marginal_covariances", "plot_criterion", "plot_ellipses", "plot_labels",
           "plot_soft_assignments"]

_MISSING = ("fastgmm.plotting needs matplotlib, which is not installed; install it with "
            "`pip install \"fastgmm[plot]\"` or `pip install matplotlib`")


def _require_matplotlib():
    """Import matplotlib or raise an ImportError that says how to get it."""
    try:
        import matplotlib
        import matplotlib.patches  # noqa: F401
    except ImportError as exc:
        raise ImportError(_MISSING) from exc
    return matplotlib


def _axis(ax):
    _require_matplotlib()
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(_MISSING) from exc
    return plt.gca()


def _check_dims(dims, n_features: int) -> tuple[int, int]:
    try:
        i, j = (int(v) for v in dims)
    except (TypeError, ValueError):
        raise TypeError(f"dims must be a pair of feature indices, got {dims!r}") from None
    if i == j or not (0 <= i < n_features and 0 <= j < n_features):
        raise ValueError(f"dims must be two different feature indices in [0, {n_features}), "
                         f"got {dims!r}")
    return i, j


def _mixture_parts(model):
    """(covariance_type, means, covariances) from an estimator or GaussianParams."""
    if hasattr(model, "means_"):
        # A fastgmm model knows the type its arrays were fitted with, which
        # set_params may since have changed; other estimators have only one.
        fitted_type = getattr(model, "_fitted_covariance_type", None)
        ctype = fitted_type() if callable(fitted_type) else model.covariance_type
        return ctype, np.asarray(model.means_, np.float64), \
            np.asarray(model.covariances_, np.float64)
    if hasattr(model, "means") and hasattr(model, "covariances"):
        return model.covariance_type, np.asarray(model.means, np.float64), \
            np.asarray(model.covariances, np.float64)
    if hasattr(model, "fit"):
        from ._exceptions import NotFittedError  # made on first use

        raise NotFittedError("the model is not fitted yet; call fit before plotting it")
    raise TypeError("model must be a fitted GaussianMixture or GaussianParams, "
                    f"got {type(model).__name__}")


def marginal_covariances(model, dims=(0, 1)) -> tuple[np.ndarray, np.ndarray]:
    """Means and 2 x 2 covariances of each component on two features.

    The marginal of a Gaussian on a subset of features is the Gaussian with
    the matching entries of its mean and covariance.

    Parameters
    ----------
    model : GaussianMixture or GaussianParams
        Fitted, any covariance type.
    dims : pair of int
        The two features.

    Returns
    -------
    means : ndarray of shape (n_components, 2)
    covariances : ndarray of shape (n_components, 2, 2)
    """
    ctype, means, cov = _mixture_parts(model)
    k, d = means.shape
    i, j = _check_dims(dims, d)
    idx = np.array([i, j])
    fam = FAMILIES.get(ctype) if isinstance(ctype, str) else None
    if fam is None:
        raise ValueError(f"unknown covariance_type {ctype!r}")
    cov2 = np.array(fam.to_full(fam.marginal(cov, idx), k, 2))
    return means[:, idx].copy(), cov2


def plot_ellipses(model, ax=None, *, dims=(0, 1), n_std=(1.0, 2.0), colors=None,
                  scale=None, offset=None, show_means: bool = True,
                  linewidth: float = 1.5, **kwargs):
    """Draw each component's covariance ellipses on an axis.

    The ellipse for ``r`` in ``n_std`` is the set of points at Mahalanobis
    distance ``r`` from the component mean in the 2-D marginal on ``dims``
    (for a 2-D Gaussian it holds ``1 - exp(-r^2 / 2)`` of the mass: 39 % for
    1 sigma, 86 % for 2 sigma).  Works for all four covariance types.

    Parameters
    ----------
    model : GaussianMixture or GaussianParams
        A fitted mixture.
    ax : matplotlib Axes, optional
        Default: the current pyplot axis.
    dims : pair of int, default=(0, 1)
        Features on the x and y axes.
    n_std : sequence of float, default=(1, 2)
        Mahalanobis radii; the first is drawn solid, the others dashed.
    colors : sequence of colours, optional
        One per component; default: the axis colour cycle ``C0, C1, ...``.
    scale, offset : array-like of shape (2,), optional
        Draw in the units ``offset + scale * x`` (for example, undo a
        standardisation the model was fitted on).
    show_means : bool, default=True
        Mark each mean with a cross.
    linewidth : float, default=1.5
    **kwargs
        Passed to :class:`matplotlib.patches.Ellipse`.

    Returns
    -------
    ax : matplotlib Axes
    """
    mpl = _require_matplotlib()
    ax = _axis(ax)
    means, cov2 = marginal_covariances(model, dims)
    radii = np.atleast_1d(np.asarray(n_std, dtype=np.float64))
    if radii.ndim != 1 or radii.size == 0 or not np.all(np.isfinite(radii)) or np.any(radii <= 0):
        raise ValueError(f"n_std must be positive numbers, got {n_std!r}")
    s = np.ones(2) if scale is None else np.asarray(scale, dtype=np.float64)
    o = np.zeros(2) if offset is None else np.asarray(offset, dtype=np.float64)
    if s.shape != (2,) or o.shape != (2,):
        raise ValueError("scale and offset must have shape (2,)")
    means = o + s * means
    cov2 = cov2 * np.outer(s, s)
    k = means.shape[0]
    if colors is None:
        colors = [f"C{c % 10}" for c in range(k)]
    elif len(colors) < k:
        raise ValueError(f"colors has {len(colors)} entries for {k} components")
    for c in range(k):
        vals, vecs = np.linalg.eigh(cov2[c])
        vals = np.clip(vals, 0.0, None)
        # The major axis follows the eigenvector of the larger eigenvalue.
        angle = math.degrees(math.atan2(vecs[1, 1], vecs[0, 1]))
        for n, r in enumerate(radii):
            ax.add_patch(mpl.patches.Ellipse(
                xy=means[c], width=2.0 * r * math.sqrt(vals[1]),
                height=2.0 * r * math.sqrt(vals[0]), angle=angle, fill=False,
                edgecolor=colors[c], linewidth=linewidth,
                linestyle="-" if n == 0 else "--", **kwargs))
        if show_means:
            ax.plot(means[c, 0], means[c, 1], marker="x", color="black", markersize=8,
                    markeredgewidth=2, linestyle="none")
    ax.autoscale_view()
    return ax


def _curves_from(curves) -> dict:
    if hasattr(curves, "columns") and hasattr(curves, "index"):  # a DataFrame: index k
        ks = np.asarray(curves.index, dtype=np.float64)
        return {str(c): (ks, np.asarray(curves[c], dtype=np.float64)) for c in curves.columns}
    if not isinstance(curves, Mapping):
        raise TypeError("curves must be a mapping {covariance_type: (ks, values)} or a "
                        f"DataFrame indexed by k, got {type(curves).__name__}")
    out = {}
    for name, pair in curves.items():
        try:
            ks, values = pair
        except (TypeError, ValueError):
            raise TypeError(f"curves[{name!r}] must be a pair (ks, values)") from None
        ks = np.asarray(ks, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        if ks.ndim != 1 or ks.shape != values.shape:
            raise ValueError(f"curves[{name!r}]: ks and values must be 1-D and of equal "
                             f"length, got shapes {ks.shape} and {values.shape}")
        out[str(name)] = (ks, values)
    if not out:
        raise ValueError("curves is empty")
    return out


def plot_criterion(curves, ax=None, *, criterion: str = "BIC", mark_best: bool = True):
    """Plot an information criterion against the number of components.

    Parameters
    ----------
    curves : mapping or DataFrame
        ``{label: (ks, values)}``, one curve per label (usually per covariance
        type), or a DataFrame indexed by k with one column per label.
        Non-finite values (failed fits) are left out of the curve.
    ax : matplotlib Axes, optional
    criterion : str, default='BIC'
        Name for the y axis label.
    mark_best : bool, default=True
        Star the lowest value over all curves and name it in the legend.

    Returns
    -------
    ax : matplotlib Axes
    """
    ax = _axis(ax)
    data = _curves_from(curves)
    best = None
    for n, (name, (ks, values)) in enumerate(data.items()):
        ok = np.isfinite(values)
        ax.plot(ks[ok], values[ok], marker="o", markersize=4, color=f"C{n % 10}", label=name)
        if ok.any():
            i = int(np.argmin(np.where(ok, values, np.inf)))
            if best is None or values[i] < best[2]:
                best = (name, ks[i], values[i], n)
    if mark_best and best is not None:
        name, k, value, n = best
        ax.plot([k], [value], marker="*", markersize=16, color=f"C{n % 10}",
                markeredgecolor="black", linestyle="none",
                label=f"lowest: k={k:g}, {name}")
    ax.set_xlabel("number of components k")
    ax.set_ylabel(f"{criterion} (lower is better)")
    ax.legend(fontsize="small")
    return ax


def _points(X, dims) -> np.ndarray:
    Xa = np.asarray(X, dtype=np.float64)
    if Xa.ndim != 2:
        raise ValueError(f"X must be 2-dimensional, got shape {Xa.shape}")
    i, j = _check_dims(dims, Xa.shape[1])
    return Xa[:, [i, j]]


def plot_soft_assignments(X, proba, ax=None, *, component: int = 1, dims=(0, 1),
                          cmap: str = "coolwarm", colorbar: bool = True,
                          colorbar_label: str | None = None, s: float = 14.0, **kwargs):
    """Scatter points coloured by their probability of one component.

    Points the model is unsure about (probability near 0.5) take the middle
    colour of ``cmap``, so the boundary between segments shows.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    proba : array-like of shape (n_samples, n_components) or (n_samples,)
        ``model.predict_proba(X)``, or directly the probabilities to show.
    ax : matplotlib Axes, optional
    component : int, default=1
        Column of ``proba`` to show (ignored for 1-D ``proba``).
    dims : pair of int, default=(0, 1)
    cmap : str, default='coolwarm'
    colorbar : bool, default=True
    colorbar_label : str, optional
        Default ``"P(component <component>)"``.
    s : float, default=14
        Marker size.
    **kwargs
        Passed to ``ax.scatter``.

    Returns
    -------
    ax : matplotlib Axes
    """
    ax = _axis(ax)
    P = _points(X, dims)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim == 2:
        if not 0 <= component < p.shape[1]:
            raise ValueError(f"component must be in [0, {p.shape[1]}), got {component}")
        p = p[:, component]
        label = f"P(component {component})"
    elif p.ndim == 1:
        label = "probability"
    else:
        raise ValueError(f"proba must be 1- or 2-dimensional, got shape {p.shape}")
    if p.shape[0] != P.shape[0]:
        raise ValueError(f"proba has {p.shape[0]} rows but X has {P.shape[0]}")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("proba must lie in [0, 1]")
    points = ax.scatter(P[:, 0], P[:, 1], c=p, cmap=cmap, vmin=0.0, vmax=1.0, s=s,
                        edgecolors="none", **kwargs)
    if colorbar:
        ax.figure.colorbar(points, ax=ax, label=label if colorbar_label is None
                           else colorbar_label)
    return ax


def plot_labels(X, labels, ax=None, *, dims=(0, 1), s: float = 14.0,
                names: Sequence[str] | None = None, **kwargs):
    """Scatter points coloured by hard labels (``C0, C1, ...``), with a legend.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    labels : array-like of int, shape (n_samples,)
    ax : matplotlib Axes, optional
    dims : pair of int, default=(0, 1)
    s : float, default=14
    names : sequence of str, optional
        Legend entry per label value (default ``"segment <label>"``).
    **kwargs
        Passed to ``ax.scatter``.

    Returns
    -------
    ax : matplotlib Axes
    """
    ax = _axis(ax)
    P = _points(X, dims)
    lab = np.asarray(labels)
    if lab.shape != (P.shape[0],) or lab.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers of shape ({P.shape[0]},), "
                         f"got {lab.dtype} of shape {lab.shape}")
    for value in np.unique(lab):
        members = lab == value
        name = names[value] if names is not None else f"segment {value}"
        ax.scatter(P[members, 0], P[members, 1], s=s, color=f"C{value % 10}",
                   edgecolors="none", label=name, **kwargs)
    ax.legend(fontsize="small")
    return ax
