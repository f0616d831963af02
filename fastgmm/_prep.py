"""Preprocessing shared by the command line and the demo."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def standardize(X: np.ndarray, names: Sequence[str] | None = None, ignore_nan: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre and scale each column by its mean and population std (ddof=0).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    names : sequence of str, optional
        Column names, for the error message.
    ignore_nan : bool
        NaN marks a missing value: the statistics use the observed values and
        NaN stays NaN.

    Returns
    -------
    Z, mean, std : ndarray

    Raises
    ------
    ValueError
        A column is constant (zero standard deviation), naming it.
    """
    if ignore_nan:
        observed = (~np.isnan(X)).sum(axis=0)
        never = np.flatnonzero(observed == 0)
        if never.size:
            j = int(never[0])
            raise ValueError(f"column {names[j] if names is not None else j!r} has no values")
        mean = np.nanmean(X, axis=0)
        std = np.nanstd(X, axis=0, ddof=0)
    else:
        mean = X.mean(axis=0)
        std = X.std(axis=0, ddof=0)
    constant = np.flatnonzero(std == 0)
    if constant.size:
        j = int(constant[0])
        raise ValueError(f"column {names[j] if names is not None else j!r} is constant")
    return (X - mean) / std, mean, std
