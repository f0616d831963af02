"""Model selection: information criteria over numbers of components and covariance types.

:func:`select` fits one :class:`~fastgmm.GaussianMixture` per cell of the grid
``n_components x covariance_types`` and scores every cell with BIC, AIC and
ICL.  The cells run one after another, each fit's kernels sharing the rows
between threads where the data are large enough; ``concurrent=True`` instead
fits several cells at once on Python threads, one kernel thread each, which
pays only when the kernels (which release the GIL) dominate the fits rather
than the M-steps and bookkeeping (which hold it).

Each cell gets its seed from ``random_state`` before anything runs, so the
result is the same whatever the scheduling, and any cell can be refitted on
its own from the seed the result records.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy.special import xlogy

from . import _em, _exceptions
from ._compute import point_outputs
from ._covariance import COVARIANCE_TYPES, MCLUST_MODELS, SKLEARN_TYPES, family
from ._estimator import GaussianMixture
from ._missing import check_missing_option
from ._parallel import thread_limit
from ._validation import (
    check_array,
    check_int,
    check_random_state,
    check_sample_weight,
    feature_names,
)

__all__ = ["CRITERIA", "SelectionResult", "select"]

#: Criteria :func:`select` computes, all "lower is better".
CRITERIA = ("bic", "aic", "icl")

# GaussianMixture parameters that the grid itself sets; passing them through
# ``**params`` would be ambiguous.
_GRID_PARAMS = ("n_components", "covariance_type", "n_init", "random_state", "n_threads",
                "warm_start", "weights_init", "means_init", "precisions_init")

# Rows per block when scoring a fitted cell, so the (rows x k)
# responsibilities never exceed a few MiB whatever the data size.
_SCORE_BLOCK_ROWS = 65536

_FIELDS = ("covariance_type", "n_components", "bic", "aic", "icl", "log_likelihood",
           "entropy", "n_parameters", "converged", "n_iter", "seed")


class SelectionResult:
    """What :func:`select` returns: every fitted cell and its criteria.

    Attributes
    ----------
    criterion : str
        The criterion the best model was chosen by (``'bic'``, ``'aic'`` or
        ``'icl'``).
    best_model_ : GaussianMixture
        The fitted model with the lowest ``criterion``.
    best_params_ : dict
        ``{'n_components': k, 'covariance_type': type}`` of ``best_model_``.
    best_score_ : float
        Its ``criterion`` value.
    table_ : pandas.DataFrame or numpy structured array
        The ``criterion`` for every cell: one row per number of components
        (index ``n_components``), one column per covariance type.  Without
        pandas, a structured array with an ``n_components`` field and one
        float field per covariance type.
    criteria_ : pandas.DataFrame or numpy structured array
        One row per cell, in grid order (covariance types, then numbers of
        components), with the fields ``covariance_type``, ``n_components``,
        ``bic``, ``aic``, ``icl``, ``log_likelihood`` (total, weighted),
        ``entropy`` (of the responsibilities, see :func:`select`),
        ``n_parameters``, ``converged``, ``n_iter`` and ``seed`` (the
        ``random_state`` that refits the cell on its own).
    models_ : dict
        ``{(covariance_type, n_components): fitted GaussianMixture}`` for every
        cell.
    n_components : tuple of int
    covariance_types : tuple of str
    """

    def __init__(self, criterion: str, records: list[dict], models: dict,
                 n_components: tuple, covariance_types: tuple):
        self.criterion = criterion
        self.n_components = n_components
        self.covariance_types = covariance_types
        self.models_ = models
        self._records = records
        # Ties (practically only between identical models) go to the fewest
        # parameters, then to grid order.
        best = min(records, key=lambda r: (r[criterion], r["n_parameters"]))
        key = (best["covariance_type"], best["n_components"])
        self.best_model_ = models[key]
        self.best_params_ = {"n_components": key[1], "covariance_type": key[0]}
        self.best_score_ = float(best[criterion])
        self.criteria_ = _long_table(records)
        self.table_ = self.table(criterion)

    def values(self, criterion: str | None = None) -> np.ndarray:
        """The criterion as a float array of shape ``(len(n_components), len(covariance_types))``.

        Parameters
        ----------
        criterion : {'bic', 'aic', 'icl'}, optional
            Defaults to the selection criterion.
        """
        crit = self._check_criterion(criterion)
        out = np.empty((len(self.n_components), len(self.covariance_types)))
        row = {k: i for i, k in enumerate(self.n_components)}
        col = {c: j for j, c in enumerate(self.covariance_types)}
        for r in self._records:
            out[row[r["n_components"]], col[r["covariance_type"]]] = r[crit]
        return out

    def table(self, criterion: str | None = None):
        """The criterion as a components x covariance-types table.

        Parameters
        ----------
        criterion : {'bic', 'aic', 'icl'}, optional
            Defaults to the selection criterion.

        Returns
        -------
        pandas.DataFrame or numpy structured array
            As the ``table_`` attribute.
        """
        values = self.values(criterion)
        pd = _pandas()
        if pd is not None:
            index = pd.Index(list(self.n_components), name="n_components")
            return pd.DataFrame(values, index=index, columns=list(self.covariance_types))
        dtype = [("n_components", np.int64)] + [(c, np.float64) for c in self.covariance_types]
        out = np.empty(len(self.n_components), dtype=dtype)
        out["n_components"] = self.n_components
        for j, c in enumerate(self.covariance_types):
            out[c] = values[:, j]
        return out

    def curves(self, criterion: str | None = None) -> dict:
        """``{covariance_type: (ks, values)}``, as :func:`fastgmm.plotting.plot_criterion` takes.

        Parameters
        ----------
        criterion : {'bic', 'aic', 'icl'}, optional
            Defaults to the selection criterion.
        """
        values = self.values(criterion)
        ks = np.asarray(self.n_components)
        return {c: (ks.copy(), values[:, j].copy())
                for j, c in enumerate(self.covariance_types)}

    def plot(self, ax=None, criterion: str | None = None, **kwargs):
        """Plot the criterion against k, one curve per covariance type.

        Calls :func:`fastgmm.plotting.plot_criterion` (needs matplotlib).

        Parameters
        ----------
        ax : matplotlib Axes, optional
        criterion : {'bic', 'aic', 'icl'}, optional
            Defaults to the selection criterion.
        **kwargs
            Passed to :func:`~fastgmm.plotting.plot_criterion` (``mark_best``).

        Returns
        -------
        ax : matplotlib Axes
        """
        from .plotting import plot_criterion

        crit = self._check_criterion(criterion)
        return plot_criterion(self.curves(crit), ax, criterion=crit.upper(), **kwargs)

    def _check_criterion(self, criterion) -> str:
        return self.criterion if criterion is None else _check_criterion(criterion)

    def summary(self, criterion: str | None = None, top: int = 3) -> str:
        """The criterion table and the best ``top`` models, laid out as mclust prints BIC.

        One row per number of components, one column per covariance type,
        then the ``top`` best cells as ``type,k``.  The values are fastgmm's
        (``BIC = -2 log L + p log n``, lower is better): mclust's printout
        shows ``2 log L - p log n``, the same numbers with the opposite sign.
        ``print(result)`` prints this summary.

        Parameters
        ----------
        criterion : {'bic', 'aic', 'icl'}, optional
            Defaults to the selection criterion.
        top : int, default=3

        Returns
        -------
        str
        """
        crit = self._check_criterion(criterion)
        top = check_int(top, "top", 1)
        values = self.values(crit)
        names = {"bic": "Bayesian Information Criterion (BIC)",
                 "aic": "Akaike Information Criterion (AIC)",
                 "icl": "Integrated Complete-data Likelihood (ICL)"}
        cells = [[f"{v:.7g}" for v in row] for row in values]
        widths = [max(len(c), *(len(row[j]) for row in cells))
                  for j, c in enumerate(self.covariance_types)]
        kw = max(len(str(k)) for k in self.n_components)
        lines = [f"{names[crit]}, lower is better:",
                 " " * kw + " " + " ".join(c.rjust(w) for c, w in
                                           zip(self.covariance_types, widths, strict=True))]
        for k, row in zip(self.n_components, cells, strict=True):
            lines.append(str(k).rjust(kw) + " " + " ".join(
                v.rjust(w) for v, w in zip(row, widths, strict=True)))
        ranked = sorted(self._records, key=lambda r: (r[crit], r["n_parameters"]))[:top]
        labels = [f"{r['covariance_type']},{r['n_components']}" for r in ranked]
        scores = [f"{r[crit]:.7g}" for r in ranked]
        width = [max(len(a), len(b)) for a, b in zip(labels, scores, strict=True)]
        lines += ["", f"Top {len(ranked)} models based on the {crit.upper()} criterion:",
                  " ".join(a.rjust(w) for a, w in zip(labels, width, strict=True)),
                  " ".join(b.rjust(w) for b, w in zip(scores, width, strict=True))]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        bp = self.best_params_
        return (f"SelectionResult(criterion={self.criterion!r}, best: n_components="
                f"{bp['n_components']}, covariance_type={bp['covariance_type']!r}, "
                f"{self.criterion}={self.best_score_:.6g}; "
                f"{len(self._records)} cells)")


def select(X, n_components: Iterable[int] = range(1, 10),
           covariance_types: Iterable[str] | str = SKLEARN_TYPES, criterion: str = "bic",
           *, n_init: int = 1, sample_weight=None, random_state=None,
           n_threads: int | None = None, concurrent: bool = False, verbose: int = 0,
           **params: Any) -> SelectionResult:
    """Fit a grid of Gaussian mixtures and pick the best by BIC, AIC or ICL.

    One :class:`~fastgmm.GaussianMixture` is fitted per pair (number of
    components, covariance type); each is scored with all three criteria, and
    the model with the lowest ``criterion`` is returned with the whole table.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : iterable of int, default=range(1, 10)
        Numbers of components to try (distinct, each >= 1 and <= the number
        of samples of positive weight).
    covariance_types : str or iterable of str, default=('full', 'tied', 'diag', 'spherical')
        Covariance types (see :class:`~fastgmm.GaussianMixture`), or
        ``'mclust'`` for mclust's 14 models :data:`fastgmm.MCLUST_MODELS`
        (with ``n_components=range(1, 10)``, mclust's default grid).
    criterion : {'bic', 'aic', 'icl'}, default='bic'
        Which criterion chooses ``best_model_``.  All three are computed.
    n_init : int, default=1
        EM restarts per cell; the best lower bound is kept, as in
        :class:`~fastgmm.GaussianMixture`.
    sample_weight : array-like of shape (n_samples,), optional
        Used in the fits and in the criteria: the log-likelihood and the
        entropy are weighted, and BIC's ``n`` is the total weight.
    random_state : int, RandomState or Generator, optional
        Draws one seed per number of components before any fit starts; every
        covariance type with that number of components uses the same seed, so
        they start from the same k-means partition and differ only by the
        model.  An int makes the whole result reproducible, bit for bit,
        whatever the number of threads.
    n_threads : int, optional
        Numba threads for the kernels of each fit on large data, or the
        number of cells fitted at once with ``concurrent=True`` (default:
        Numba's current setting).  The returned models keep ``n_threads`` as
        their own parameter.
    concurrent : bool, default=False
        Fit up to ``n_threads`` cells at once on Python threads, each with its
        kernels on its own thread (they release the GIL), the most expensive
        cells first.  Results are identical either way.  See the module notes for
        when this pays.
    verbose : int, default=0
        1 prints a line on stderr as each cell finishes: cells done out of
        the grid, the cell and its criterion, whether it converged, the
        elapsed time and the best cell so far.  2 also prints each fit's EM
        progress (the cells get ``verbose=1``).
    **params
        Any other :class:`~fastgmm.GaussianMixture` parameter (``tol``,
        ``reg_covar``, ``max_iter``, ``init_params``, ``on_degenerate``, ...),
        the same for every cell.  ``missing='marginalize'`` takes ``X`` with
        NaN for missing entries: every cell is fitted with the missing-data
        EM and scored by the log-likelihood of the observed entries.

    Returns
    -------
    SelectionResult
        ``best_model_``, ``table_`` (the criterion, k x covariance type),
        ``criteria_`` (every criterion for every cell), ``models_``.

    Raises
    ------
    ValueError, TypeError
        On a bad grid, criterion or data, naming the argument; exceptions from
        a cell's fit propagate with a note naming the cell.

    Warns
    -----
    ConvergenceWarning
        Once, listing the cells whose best restart did not converge (instead
        of one warning per fit).

    See Also
    --------
    fastgmm.BayesianGaussianMixture : The alternative to a grid: one
        variational fit with more components than needed, whose unneeded
        components get weights near zero (``n_effective_components_``).

    Notes
    -----
    With ``log L`` the (weighted) log-likelihood of the fitted model, ``p``
    its number of free parameters and ``n`` the number of samples (total
    weight when weighted):

    * ``BIC = -2 log L + p log n`` (Schwarz 1978);
    * ``AIC = -2 log L + 2 p`` (Akaike 1974);
    * ``ICL = BIC + 2 EN`` with ``EN = -sum_i w_i sum_k r_ik log r_ik`` the
      entropy of the responsibilities ``r_ik`` of the fitted model
      (Biernacki, Celeux & Govaert 2000, their BIC-based approximation).

    All three are on the deviance scale, **lower is better**, and ``EN >= 0``,
    so ``ICL >= BIC``, with equality when every point belongs to one component
    with certainty (always for one component).  ICL penalises overlapping
    components and so prefers well-separated clusters.  (Some packages, e.g.
    R's mclust, use the opposite sign, ``2 log L - p log n``, higher is
    better; the rankings agree.)

    The BIC and AIC of each cell are those of the model's own
    :meth:`~fastgmm.GaussianMixture.bic` and
    :meth:`~fastgmm.GaussianMixture.aic` on ``X`` and ``sample_weight``.

    Examples
    --------
    >>> import numpy as np, fastgmm
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(c, 0.5, size=(200, 2)) for c in (0, 5, 10)])
    >>> result = fastgmm.select(X, range(1, 6), ("full", "diag"), random_state=0)
    >>> result.best_params_["n_components"]
    3
    """
    ks = _check_n_components(n_components)
    types = _check_covariance_types(covariance_types)
    crit = _check_criterion(criterion)
    n_init = check_int(n_init, "n_init", 1)
    check_int(n_threads, "n_threads", 1, allow_none=True)
    if not isinstance(concurrent, (bool, np.bool_)):
        raise TypeError(f"concurrent must be a bool, got {concurrent!r}")
    verbose = check_int(verbose, "verbose", 0)
    clash = sorted(set(params) & set(_GRID_PARAMS))
    if clash:
        raise TypeError(f"select() sets {clash} itself; pass n_init, random_state and "
                        "n_threads as select's own arguments")
    unknown = sorted(set(params) - set(GaussianMixture._get_param_names()))
    if unknown:
        raise TypeError(f"unknown GaussianMixture parameter(s) {unknown}")

    # missing='marginalize' fits every cell with the missing-data EM.
    marginalize = check_missing_option(params.get("missing", "error")) == "marginalize"
    Xa = check_array(X, min_samples=1, allow_nan=marginalize,
                     nan_hint=" (or pass missing='marginalize' to select to fit every cell "
                              "treating NaN as missing)")
    names = feature_names(X)
    n, d = Xa.shape
    w = check_sample_weight(sample_weight, n)
    n_pos = n if w is None else int(np.count_nonzero(w))
    if max(ks) > n_pos:
        what = "samples" if w is None else "samples of positive weight"
        raise ValueError(f"n_components goes up to {max(ks)}, but X has only {n_pos} {what}")

    rng = check_random_state(random_state)
    drawn = rng.randint(np.iinfo(np.int32).max, size=len(ks))
    seeds = {k: int(s) for k, s in zip(ks, drawn, strict=True)}
    cells = [(ctype, k) for ctype in types for k in ks]

    with thread_limit(n_threads) as threads:
        pooled = bool(concurrent) and threads > 1 and len(cells) > 1
        # Pooled cells run their kernels on one thread each.
        cell_threads = 1 if pooled else n_threads

        progress = _Progress(len(cells), crit) if verbose else None

        def fit_cell(cell):
            ctype, k = cell
            model = GaussianMixture(k, covariance_type=ctype, n_init=n_init,
                                    random_state=seeds[k], n_threads=cell_threads,
                                    **({"verbose": 1} if verbose >= 2 else {}), **params)
            try:
                model.fit(Xa, sample_weight=w)
                with thread_limit(cell_threads):
                    record = _record(model, *_score(model, Xa, w), seeds[k])
            except Exception as exc:
                if hasattr(exc, "add_note"):
                    exc.add_note(f"(fastgmm.select: while fitting covariance_type={ctype!r}, "
                                 f"n_components={k}, random_state={seeds[k]})")
                raise
            model.set_params(n_threads=n_threads)
            if names is not None:
                model.feature_names_in_ = names
            if progress is not None:
                progress.cell_done(record)
            return model, record

        with warnings.catch_warnings():
            # One summary below instead of a warning per cell.
            warnings.filterwarnings("ignore", message=_em.NOT_CONVERGED_MESSAGE)
            if pooled:
                # Longest cells first, so that no long fit starts last.
                order = sorted(cells, key=lambda c: -_cost(c, d))
                with ThreadPoolExecutor(max_workers=min(threads, len(cells))) as pool:
                    done = dict(zip(order, pool.map(fit_cell, order), strict=True))
            else:
                done = {cell: fit_cell(cell) for cell in cells}

    models = {cell: done[cell][0] for cell in cells}
    records = [done[cell][1] for cell in cells]
    failed = [(r["covariance_type"], r["n_components"]) for r in records if not r["converged"]]
    if failed and int(params.get("max_iter", 100)) > 0:
        listed = ", ".join(f"{c}/k={k}" for c, k in failed)
        warnings.warn(f"{len(failed)} of {len(cells)} cells did not converge (best restart): "
                      f"{listed}. Increase max_iter or tol, or check the data.",
                      _exceptions.ConvergenceWarning, stacklevel=2)
    return SelectionResult(crit, records, models, ks, types)


def _record(model: GaussianMixture, log_lik: float, entropy: float, total_weight: float,
            seed: int) -> dict:
    """One row of ``criteria_``: the criteria of a fitted cell (see :func:`select`)."""
    p = model._n_parameters()
    bic = -2.0 * log_lik + p * np.log(total_weight)
    return {"covariance_type": model.covariance_type, "n_components": model.n_components,
            "bic": float(bic), "aic": float(-2.0 * log_lik + 2.0 * p),
            "icl": float(bic + 2.0 * entropy), "log_likelihood": float(log_lik),
            "entropy": float(entropy), "n_parameters": p,
            "converged": bool(model.converged_), "n_iter": int(model.n_iter_), "seed": seed}


class _Progress:
    """One stderr line per finished cell (``select(verbose=1)``); safe from pool threads."""

    def __init__(self, n_cells: int, criterion: str):
        self.n_cells = n_cells
        self.criterion = criterion
        self.done = 0
        self.best: dict | None = None
        self.start = time.perf_counter()
        self.lock = threading.Lock()

    def cell_done(self, record: dict) -> None:
        crit = self.criterion
        with self.lock:
            self.done += 1
            if self.best is None or (record[crit], record["n_parameters"]) < (
                    self.best[crit], self.best["n_parameters"]):
                self.best = record
            best = self.best
            state = ("converged" if record["converged"] else "did not converge") + \
                f" in {record['n_iter']} iterations"
            print(f"select: {self.done}/{self.n_cells} cells  "
                  f"{record['covariance_type']} k={record['n_components']}: "
                  f"{crit.upper()} {record[crit]:.2f} ({state})  "
                  f"{time.perf_counter() - self.start:.1f} s  best so far: "
                  f"{best['covariance_type']} k={best['n_components']} "
                  f"{crit.upper()} {best[crit]:.2f}", file=sys.stderr, flush=True)


def _score(model: GaussianMixture, X: np.ndarray,
           w: np.ndarray | None) -> tuple[float, float, float]:
    """Total (weighted) log-likelihood, responsibility entropy and total weight.

    One pass over ``X`` in blocks of rows.  The log-likelihood is summed as
    ``GaussianMixture.bic`` sums it (float64 scores, then ``sum`` or
    ``w @ scores``), so for data within one block the criteria equal the
    model's own ``bic``/``aic`` exactly.
    """
    params = model._params()
    n = X.shape[0]
    log_lik = 0.0
    entropy = 0.0
    for lo in range(0, n, _SCORE_BLOCK_ROWS):
        hi = min(lo + _SCORE_BLOCK_ROWS, n)
        out = (model._estep().point(X[lo:hi], params, resp=True, score=True)
               if model._marginalize(None) else
               point_outputs(X[lo:hi], params, resp=True, score=True))
        scores = out["score"].astype(np.float64)
        # xlogy gives 0 log 0 = 0: a point certain of its component adds nothing.
        row_entropy = -xlogy(out["resp"], out["resp"]).sum(axis=1, dtype=np.float64)
        if w is None:
            log_lik += float(scores.sum())
            entropy += float(row_entropy.sum())
        else:
            log_lik += float(w[lo:hi] @ scores)
            entropy += float(w[lo:hi] @ row_entropy)
    total_weight = float(n) if w is None else float(w.sum())
    return log_lik, max(entropy, 0.0), total_weight


def _cost(cell: tuple[str, int], n_features: int) -> float:
    """Rough relative cost of a cell, to start the long ones first."""
    ctype, k = cell
    per_component = n_features * n_features if family(ctype).matrix else n_features
    return k * (per_component + 8.0)


def _check_n_components(n_components) -> tuple[int, ...]:
    if isinstance(n_components, (int, np.integer)) or isinstance(n_components, str):
        raise TypeError("n_components must be an iterable of integers, such as range(1, 10), "
                        f"got {n_components!r}")
    try:
        values = list(n_components)
    except TypeError:
        raise TypeError("n_components must be an iterable of integers, such as range(1, 10), "
                        f"got {n_components!r}") from None
    if not values:
        raise ValueError("n_components is empty; give at least one number of components")
    ks = tuple(check_int(v, "n_components", 1) for v in values)
    if len(set(ks)) != len(ks):
        raise ValueError(f"n_components has repeated values: {list(ks)}")
    return tuple(sorted(ks))


def _check_covariance_types(covariance_types) -> tuple[str, ...]:
    if isinstance(covariance_types, str) and covariance_types == "mclust":
        return MCLUST_MODELS
    if isinstance(covariance_types, str):
        covariance_types = (covariance_types,)
    try:
        types = tuple(covariance_types)
    except TypeError:
        raise TypeError("covariance_types must be a string or an iterable of strings, got "
                        f"{covariance_types!r}") from None
    if not types:
        raise ValueError("covariance_types is empty; give at least one covariance type")
    for t in types:
        if t not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_types must be among {COVARIANCE_TYPES}, got {t!r}")
    if len(set(types)) != len(types):
        raise ValueError(f"covariance_types has repeated values: {list(types)}")
    return types


def _check_criterion(criterion) -> str:
    if not isinstance(criterion, str) or criterion.lower() not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    return criterion.lower()


def _pandas():
    try:
        import pandas
    except ImportError:
        return None
    return pandas


def _long_table(records: list[dict]):
    pd = _pandas()
    if pd is not None:
        return pd.DataFrame.from_records(records, columns=list(_FIELDS))
    width = max(len(r["covariance_type"]) for r in records)
    dtype = [("covariance_type", f"U{width}"), ("n_components", np.int64),
             ("bic", np.float64), ("aic", np.float64), ("icl", np.float64),
             ("log_likelihood", np.float64), ("entropy", np.float64),
             ("n_parameters", np.int64), ("converged", np.bool_), ("n_iter", np.int64),
             ("seed", np.int64)]
    return np.array([tuple(r[f] for f in _FIELDS) for r in records], dtype=dtype)
