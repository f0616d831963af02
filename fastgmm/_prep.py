"""Preprocessing shared by the command line and the demo."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def standardize(X: np.ndarray, names: Sequence[str] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre and scale each column by its mean and population std (ddof=0).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    names : sequence of str, optional
        Column names, for the error message.

    Returns
    -------
    Z, mean, std : ndarray

    Raises
    ------
    ValueError
        A column is constant (zero standard deviation), naming it.
    """
    mean = X.mean(axis=0)
    std = X.std(axis=0, ddof=0)
    constant = np.flatnonzero(std == 0)
    if constant.size:
        j = int(constant[0])
        raise ValueError(f"column {names[j] if names is not None else j!r} is constant")
    return (X - mean) / std, mean, std
