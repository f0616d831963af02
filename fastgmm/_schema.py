"""Model-file schemas: what the files of each estimator hold, declared by the estimator.

Each mixture estimator declares its files with a :class:`ModelSchema` (its
classmethod ``model_schema()``): the fitted arrays and their shapes as
functions of the :class:`Layout` (``covariance_type``, ``n_components``,
``n_features`` and options such as the weight prior type), their dtype rule,
the scalar and list attributes with their checks, the array-valued
constructor parameters, the value checks, and the four callables through
which :mod:`fastgmm._io` takes the fitted state out of an estimator and puts
it back.  :mod:`fastgmm._io` owns the file format (archive layout, digests,
bounded reads, the metadata keys) and writes and reads every estimator
through its schema alone, so it needs neither the estimator modules nor their
private members.

This module imports no estimator: the estimators import it to declare their
schemas, and :mod:`fastgmm._io` to read them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._covariance import family
from ._params import covariance_shape

#: The component weights must sum to 1 within this.
WEIGHT_SUM_TOL = 1e-6

#: Consistency of the fitted arrays, in machine epsilons of the model's dtype
#: (see :func:`check_gaussian_values`): room for rounding the float64
#: parameters to float32 and for the products that check them.
CONSISTENCY_ULPS = 64

#: Largest squared Mahalanobis distance from the origin to a mean a model file
#: may hold, as a fraction of the largest number of its dtype: room for rows
#: far from the origin to score finitely.
MAX_MAHALANOBIS_FRACTION = 2.0**-64

#: The dtype rules of an :class:`ArrayField`.
MODEL_DTYPE = "model"
FLOAT64 = "float64"


@dataclass(frozen=True)
class Layout:
    """What the shapes of a model's arrays follow from.

    Attributes
    ----------
    covariance_type : str
    n_components, n_features : int
    dtype : str
        The model's dtype, ``'float32'`` or ``'float64'``.
    options : dict
        The estimator's own layout options, from its stored constructor
        parameters (:attr:`ModelSchema.layout_options`), e.g. ``prior_type``.
    """

    covariance_type: str
    n_components: int
    n_features: int
    dtype: str = "float64"
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ArrayField:
    """A fitted array attribute stored as an array member named after it.

    Attributes
    ----------
    name : str
    shape : callable
        ``shape(layout) -> tuple``.
    dtype : {'model', 'float64'}
        ``'model'``: stored in the model's dtype (float32 or float64) and
        shaped by ``n_components`` (the fitted parameters); ``'float64'``:
        always float64 and shaped by ``n_features`` alone (resolved priors).
        Every array must be finite.
    """

    name: str
    shape: Callable[[Layout], tuple]
    dtype: str = MODEL_DTYPE


@dataclass(frozen=True)
class AttributeField:
    """A scalar or list fitted attribute stored in the JSON metadata.

    Attributes
    ----------
    name : str
    check : callable
        ``check(json_value) -> bool``.
    expected : str
        What ``check`` accepts, for error messages.
    """

    name: str
    check: Callable[[Any], bool]
    expected: str


@dataclass(frozen=True)
class ParamArrayField:
    """An array-valued constructor parameter, stored as the member ``param.<name>``.

    Attributes
    ----------
    name : str
    shape : callable
        ``shape(layout) -> tuple``, or None where the parameter cannot be
        an array in that layout (it is then stored in the JSON ``params``).
    """

    name: str
    shape: Callable[[Layout], tuple | None]


@dataclass(frozen=True)
class ModelSchema:
    """The declaration of one estimator's model files.

    The constructor parameters stored are all of ``get_params()``: those JSON
    can hold in the metadata, array-valued ones (:attr:`param_arrays`) as
    members, the others (a ``callback``) named as not saved.

    Attributes
    ----------
    format : str
        The ``format`` of the files, e.g. ``'fastgmm.GaussianMixture'``.
    arrays : tuple of ArrayField
        The fitted arrays, in the order their values are checked.
    attributes : tuple of AttributeField
        The scalar and list fitted attributes a file may hold.
    param_arrays : tuple of ParamArrayField
    value_checks : tuple of callable
        ``check(layout, arrays, attributes, bad)``, run in order once every
        array is known to be finite; ``bad(why)`` raises.
    layout_options : callable
        ``layout_options(params, bad) -> dict``: the layout options the
        stored constructor parameters ``params`` (a JSON object) imply.
    fitted : callable
        ``fitted(model) -> (params, dtype)`` or None when ``model`` is not
        fitted: its fitted parameters (shapes checked, and matching the
        constructor parameters, else ``ValueError``) and dtype.
    check_params : callable
        ``check_params(model)``: the estimator's own checks of its
        constructor parameters (``TypeError`` or ``ValueError``).
    check_array_params : callable
        ``check_array_params(model, n_features)``: the checks of its
        parameters that need ``n_features``.
    restore : callable
        ``restore(model, layout, arrays, attributes)``: set the fitted state
        of a new ``model`` from checked arrays (``{name: ndarray}`` of
        :attr:`arrays`) and attributes (``{name: JSON value}``).
    fit_attributes : callable, optional
        ``fit_attributes(model) -> dict``: fitted state the estimator keeps
        in private members (how it treats missing values, say), as JSON
        values under names of :attr:`attributes`; stored with the public
        fitted attributes and handed back to :attr:`restore`.
    """

    format: str
    arrays: tuple
    attributes: tuple
    param_arrays: tuple
    value_checks: tuple
    layout_options: Callable[[dict, Callable], dict]
    fitted: Callable[[Any], tuple | None]
    check_params: Callable[[Any], None]
    check_array_params: Callable[[Any, int], None]
    restore: Callable[[Any, Layout, dict, dict], None]
    fit_attributes: Callable[[Any], dict] | None = None

    def array(self, name: str) -> ArrayField | None:
        """The array field ``name``, or None."""
        return next((f for f in self.arrays if f.name == name), None)

    def attribute(self, name: str) -> AttributeField | None:
        """The attribute field ``name``, or None."""
        return next((f for f in self.attributes if f.name == name), None)

    def array_shapes(self, layout: Layout, dtype: str) -> dict[str, tuple]:
        """``{name: shape}`` of the fitted arrays of dtype rule ``dtype``."""
        return {f.name: tuple(f.shape(layout)) for f in self.arrays if f.dtype == dtype}

    def param_shapes(self, layout: Layout) -> dict[str, tuple]:
        """``{name: shape}`` of the constructor parameters stored as arrays in ``layout``."""
        shapes = {f.name: f.shape(layout) for f in self.param_arrays}
        return {name: tuple(shape) for name, shape in shapes.items() if shape is not None}


# ----------------------------------------------------------------------------
# value predicates of the JSON metadata
# ----------------------------------------------------------------------------


def is_int(value) -> bool:
    """A JSON integer (not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_log_likelihood(value) -> bool:
    """A mean log-likelihood: a number, ``-inf`` allowed, NaN and ``+inf`` not."""
    return is_real(value) and not math.isnan(value) and value != math.inf


def is_positive(value) -> bool:
    """A positive, finite number."""
    return is_real(value) and math.isfinite(value) and value > 0


def short_repr(value) -> str:
    """``repr(value)``, cut to 60 characters for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------
# what every mixture's files hold
# ----------------------------------------------------------------------------


def _covariances(layout: Layout) -> tuple:
    return covariance_shape(layout.covariance_type, layout.n_components, layout.n_features)


#: The Gaussian parameters every mixture stores, in the model's dtype.
GAUSSIAN_ARRAYS = (
    ArrayField("weights_", lambda lay: (lay.n_components,)),
    ArrayField("means_", lambda lay: (lay.n_components, lay.n_features)),
    ArrayField("covariances_", _covariances),
    ArrayField("precisions_", _covariances),
    ArrayField("precisions_cholesky_", _covariances),
)

#: The attributes of every fit (``lower_bound_`` may be ``-inf``, never NaN).
FIT_ATTRIBUTES = (
    AttributeField("converged_", lambda v: isinstance(v, bool), "true or false"),
    AttributeField("n_iter_", lambda v: is_int(v) and v >= 0, "a non-negative integer"),
    AttributeField("lower_bound_", is_log_likelihood, "a number (not NaN)"),
    AttributeField("lower_bounds_",
                   lambda v: isinstance(v, list) and all(map(is_log_likelihood, v)),
                   "a list of numbers (not NaN)"),
    AttributeField("n_features_in_", is_int, "an integer"),
)


def no_layout_options(params: dict, bad: Callable) -> dict:
    """The layout options of an estimator whose shapes need none."""
    return {}


def check_gaussian_values(layout: Layout, arrays: dict, attributes: dict, bad) -> None:
    """The Gaussian arrays must describe a valid mixture, consistently.

    Weights positive and summing to 1 (within :data:`WEIGHT_SUM_TOL`);
    covariances symmetric and positive definite; precision factors upper
    triangular with a positive diagonal (full, tied) or positive (diag,
    spherical), inverting the covariances and giving the precisions, within
    the tolerances of :data:`CONSISTENCY_ULPS`.  The arrays are finite already.
    """
    ctype = layout.covariance_type
    eps = float(np.finfo(np.dtype(layout.dtype)).eps)
    f64 = {f.name: arrays[f.name].astype(np.float64) for f in GAUSSIAN_ARRAYS}
    w = f64["weights_"]
    if not (w > 0).all():
        bad("the component weights are not a probability vector (a weight is not positive)")
    if abs(w.sum() - 1.0) > WEIGHT_SUM_TOL:
        bad(f"the component weights are not a probability vector (they sum to "
            f"{w.sum():.17g})")
    family(ctype).check_consistent(f64["covariances_"], f64["precisions_cholesky_"],
                                   f64["precisions_"], CONSISTENCY_ULPS * eps, bad)
    # Finite but extreme means or precisions (1e300) would make the squared
    # Mahalanobis distance of every ordinary row overflow, so every row would
    # score -inf: the distance from the origin to each mean must leave room.
    k, d = layout.n_components, layout.n_features
    chol = family(ctype).to_full(f64["precisions_cholesky_"], k, d)
    with np.errstate(all="ignore"):
        distance = (np.einsum("kd,kde->ke", f64["means_"], chol) ** 2).sum(axis=1)
    if not (distance <= MAX_MAHALANOBIS_FRACTION * np.finfo(np.dtype(layout.dtype)).max).all():
        bad("the means are too far from the origin for their precisions (the squared "
            "Mahalanobis distance of the origin overflows), so no row would score finitely")
