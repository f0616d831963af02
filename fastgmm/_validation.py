"""Input checking: every public entry point validates here, kernels never do."""

from __future__ import annotations

import numbers
import os

import numpy as np


def compute_dtype(dtype, name: str = "X") -> np.dtype:
    """The dtype fastgmm computes in for data of ``dtype``.

    Any float32 (either byte order) stays float32; every other real numeric
    dtype (integers, booleans, float16, float64) is computed in float64.

    Raises
    ------
    ValueError
        Complex dtypes (as scikit-learn raises).
    TypeError
        Non-numeric dtypes.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has complex dtype {dtype}; "
                         "fastgmm needs real numbers")
    if dtype.kind not in "biuf":
        raise TypeError(f"{name} has non-numeric dtype {dtype}; fastgmm needs real numbers")
    is_f32 = dtype.kind == "f" and dtype.itemsize == 4
    return np.dtype(np.float32 if is_f32 else np.float64)


def feature_names(X) -> np.ndarray | None:
    cols = getattr(X, "columns", None)
    if cols is None or not hasattr(X, "iloc"):
        return None
    names = [c for c in cols]
    if not names or not all(isinstance(c, str) for c in names):
        return None
    return np.asarray(names, dtype=object)


def reject_masked(value, name: str) -> None:
    """Refuse a numpy masked array that masks anything.

    ``np.asarray`` would drop the mask and use whatever the masked entries
    hold, so masked values must be removed or filled by the caller; a masked
    array that masks nothing is plain data.

    Raises
    ------
    ValueError
        ``value`` is a masked array with at least one masked entry.
    """
    if isinstance(value, np.ma.MaskedArray) and np.ma.is_masked(value):
        raise ValueError(f"{name} is a masked array with {int(np.ma.count_masked(value))} "
                         "masked entries; fastgmm does not use masks: drop the rows that "
                         "hold them or fill them (e.g. X.filled(value)) first")


#: The advice of :func:`check_array`'s NaN error when its caller gives none.
NAN_HINT = " (or fit with missing='marginalize' to treat NaN as missing)"


class NaNError(ValueError):
    """Data hold NaN where the call takes no missing values.

    The message is the finding followed by advice for the call that raised
    it; :meth:`advise` gives the same finding with other advice, for a caller
    that knows better which option applies.
    """

    def __init__(self, finding: str, hint: str = ""):
        super().__init__(finding + hint)
        self.finding = finding

    def advise(self, hint: str) -> NaNError:
        """The same finding with the advice ``hint`` (text appended to it)."""
        return NaNError(self.finding, hint)


def _pandas_na(arr: np.ndarray) -> np.ndarray | None:
    """Where an object array holds pandas' missing markers (``pd.NA``); None without pandas."""
    import sys

    pd = sys.modules.get("pandas")
    if pd is None:
        return None
    try:
        return np.asarray(pd.isna(arr), dtype=bool)
    except Exception:
        return None


def check_array(X, *, name: str = "X", min_samples: int = 1, n_features: int | None = None,
                allow_float32: bool = True, estimator: str = "the model",
                allow_nan: bool = False, nan_hint: str | None = None) -> np.ndarray:
    """Validate a data matrix and return a C-contiguous float32/float64 array.

    float32 stays float32 (when ``allow_float32``); every other real numeric
    dtype (integers, booleans, float16, float64 in any byte order) becomes
    native float64.
    The input is never modified: a copy is made whenever conversion is needed.

    The error texts contain those of scikit-learn's own validation
    ("Reshape your data", "0 feature(s) (shape=...) while a minimum of 1 is
    required", "X has 1 features, but ... is expecting 2 features as input",
    "Complex data not supported"), which its estimator checks and its users
    match on.

    Parameters
    ----------
    X : array-like
    name : str
        How ``X`` is called in messages.
    min_samples : int
    n_features : int, optional
        The number of features the model was fitted with.
    allow_float32 : bool
    estimator : str
        The class name, for the message of a feature-count mismatch.
    allow_nan : bool
        Let NaN through (missing values); infinity is still refused.
    nan_hint : str, optional
        The advice appended to the NaN error (:data:`NAN_HINT` if None): the
        caller's, so that it applies to the call that raised it.

    A pandas missing marker (``pd.NA``, as nullable columns hold) reads as
    NaN, as scikit-learn reads it.

    Raises
    ------
    TypeError
        Non-numeric or object data.
    ValueError
        Complex data, wrong number of dimensions, too few samples, zero
        features, NaN or infinite values, or a feature count other than
        ``n_features``.
    """
    if X is None:
        raise TypeError(f"{name} is None; expected an array of shape (n_samples, n_features)")
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"{name} is a sparse matrix; fastgmm needs dense data "
                        "(call .toarray() if it fits in memory)")
    if type(X).__module__.startswith("dask"):
        raise TypeError(f"{name} is a Dask array; pass it to fit/predict of the estimator, "
                        "which handles Dask input, or compute it first")
    if isinstance(X, (str, bytes, os.PathLike)):
        raise TypeError(f"{name} is a file path ({os.fsdecode(X)!r}), not an array; load it "
                        "first (fit also reads a .npy path block by block)")
    reject_masked(X, name)
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists, odd objects
        raise TypeError(f"{name} could not be converted to a numeric array: {exc}") from None
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            na = _pandas_na(arr)
            converted = None
            if na is not None and na.any():
                try:
                    converted = np.where(na, np.nan, arr).astype(np.float64)
                except (TypeError, ValueError):
                    pass
            if converted is None:
                raise TypeError(f"{name} has dtype object with non-numeric entries ({exc}); "
                                "fastgmm needs real numbers") from None
            arr = converted
    target = compute_dtype(arr.dtype, name)
    if arr.ndim != 2:
        hint = (" Reshape your data with X.reshape(-1, 1) for a single feature or "
                "X.reshape(1, -1) for a single sample.") if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-dimensional (n_samples, n_features), "
                         f"got {arr.ndim} dimension(s) with shape {arr.shape}.{hint}")
    n, d = arr.shape
    if d == 0:
        raise ValueError(f"{name} has 0 features: found array with 0 feature(s) "
                         f"(shape={arr.shape}) while a minimum of 1 is required.")
    if n < min_samples:
        raise ValueError(f"{name} has {n} sample(s); at least {min_samples} required")
    if n_features is not None and d != n_features:
        raise ValueError(f"{name} has {d} features, but {estimator} is expecting "
                         f"{n_features} features as input")
    if not allow_float32:
        target = np.dtype(np.float64)
    out = np.ascontiguousarray(arr, dtype=target)  # native byte order
    if not out.flags.writeable:
        # Numba types a read-only array differently and would compile every
        # kernel again for it (tens of seconds); a private copy avoids that.
        out = out.copy()
    if not np.isfinite(out).all():
        if allow_nan:
            if np.isinf(out).any():
                raise ValueError(f"{name} contains infinity; only NaN may mark a missing "
                                 "value")
        else:
            if np.isnan(out).any():
                raise NaNError(f"{name} contains NaN; remove or impute non-finite values "
                               "first", NAN_HINT if nan_hint is None else nan_hint)
            raise ValueError(f"{name} contains infinity; remove or impute non-finite values "
                             "first")
    return out


def check_sample_weight(sample_weight, n_samples: int) -> np.ndarray | None:
    """Validate sample weights: 1-D, length ``n_samples``, finite, >= 0, sum > 0.

    Returns ``None`` for ``None`` (all weights one), else a new float64 array;
    a scalar weight is repeated ``n_samples`` times.
    """
    if sample_weight is None:
        return None
    w = _weight_array(sample_weight)
    if w.ndim == 0:
        w = np.full(n_samples, w)
    w = check_weight_block(w, n_samples)
    with np.errstate(over="ignore"):
        check_weight_total(w.sum())
    return w


def check_weight_block(sample_weight, n_rows: int, start: int | None = None) -> np.ndarray:
    """Validate the weights of ``n_rows`` rows (a whole data set, or rows from ``start``).

    Returns a new float64 array: 1-D, finite and non-negative.
    """
    w = _weight_array(sample_weight)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must be real numbers, got dtype {w.dtype}")
    check_weight_shape(w.shape, n_rows, start)
    w = np.array(w, dtype=np.float64)  # always a private copy
    check_weight_values(np.isfinite(w).all(), (w >= 0).all())
    return w


def _weight_array(sample_weight) -> np.ndarray:
    reject_masked(sample_weight, "sample_weight")
    try:
        return np.asarray(sample_weight)
    except Exception as exc:  # ragged lists, odd objects
        raise TypeError(f"sample_weight could not be converted to an array: {exc}") from None


def check_weight_shape(shape: tuple, n_rows: int, start: int | None = None) -> None:
    """Raise unless ``shape`` is ``(n_rows,)``: the rows of X, or ``n_rows`` rows from ``start``."""
    if len(shape) != 1:
        raise ValueError(f"sample_weight must be 1-dimensional, got shape {shape}")
    if shape[0] != n_rows:
        rows = "" if start is None else f" (rows {start}..{start + n_rows - 1})"
        raise ValueError(f"sample_weight has {shape[0]} entries but X has {n_rows} "
                         f"samples{rows}")


def check_weight_values(all_finite: bool, all_non_negative: bool) -> None:
    """Raise the error for weights that are not all finite, or not all non-negative."""
    if not all_finite:
        raise ValueError("sample_weight contains NaN or infinity")
    if not all_non_negative:
        raise ValueError("sample_weight contains negative values")


def check_weight_total(total: float) -> None:
    """Raise unless the total weight is positive and finite.

    Finite weights can still add up to infinity; every weighted mean (and
    the initialisation's sampling probabilities) would then be NaN.
    """
    with np.errstate(over="ignore"):
        total = float(total)
    if not total > 0:
        raise weight_sum_error()
    if not np.isfinite(total):
        raise ValueError("sample_weight sums to infinity (float64 overflow); divide the "
                         "weights by a common factor (only their ratios matter to the fit)")


def weight_sum_error() -> ValueError:
    """The error for weights that sum to zero (every row would be ignored)."""
    return ValueError("sample_weight sums to zero; at least one weight must be positive")


def check_int(value, name: str, minimum: int, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(value, name: str, minimum: float, strict: bool = False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < minimum or (strict and value == minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{name} must be {op} {minimum}, got {value}")
    return value


def check_random_state(seed) -> np.random.RandomState:
    """``None``, an int, a ``RandomState`` or a ``Generator`` to a ``RandomState``."""
    if seed is None:
        return np.random.RandomState()
    if isinstance(seed, np.random.RandomState):
        return seed
    if isinstance(seed, np.random.Generator):
        return np.random.RandomState(seed.integers(0, 2**31 - 1))
    if isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)):
        if not 0 <= seed < 2**32:
            raise ValueError(f"random_state must be in [0, 2**32), got {seed}")
        return np.random.RandomState(int(seed))
    raise TypeError(f"random_state must be None, an int, a numpy RandomState or "
                    f"Generator, got {seed!r}")


def check_finite_array(value, name: str, shape: tuple) -> np.ndarray:
    """A user-given parameter array as float64 of ``shape``: real numbers, finite.

    Raises
    ------
    TypeError
        Not a real numeric array (or a masked array).
    ValueError
        Of another shape, or holding NaN or infinity.
    """
    reject_masked(value, name)
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    arr = np.array(arr, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def check_positive_rows(X: np.ndarray, w: np.ndarray | None, n_components: int,
                        whole: bool) -> None:
    """At least one row of positive weight per component among the initialisation rows.

    ``whole``: ``X`` holds all the rows (else a sample of them, as the
    message then says).
    """
    n_pos = X.shape[0] if w is None else int(np.count_nonzero(w))
    if n_pos < n_components:
        where = "samples" if whole else "rows of the initialisation sample"
        raise ValueError(f"only {n_pos} {where} have positive weight, fewer than "
                         f"n_components={n_components}")
