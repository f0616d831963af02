"""What every data source shares: the base of the source protocol, the initialisation sample.

The protocol itself is described in :mod:`fastgmm._sources`; this module
holds only what :mod:`fastgmm._sources` and :mod:`fastgmm._dask` both build
on, so that neither imports the other at module level.
"""

from __future__ import annotations

import copy

import numpy as np

from . import _config
from ._estep import COMPLETE, EStep
from ._params import GaussianParams

#: Rows the initialisation sees at most (a uniform sample of the data).
DEFAULT_INIT_SAMPLE_SIZE = _config.INIT_MAX_SAMPLES


def uniform_rows(n: int, m: int, seed: int) -> np.ndarray:
    """``m`` distinct row indices out of ``n``, uniformly, in increasing order.

    Drawn by a generator seeded with ``seed``, in time proportional to
    ``m`` rather than ``n``.
    """
    gen = np.random.default_rng(seed)
    return np.sort(gen.choice(n, size=m, replace=False))


def draw_seed(rng: np.random.RandomState) -> int:
    """A seed drawn from a *copy* of ``rng``: sampling leaves ``rng`` untouched.

    Initialisation then consumes ``rng`` exactly as an in-memory fit would,
    so that a source whose rows all fit in the sample gives the in-memory
    result.
    """
    return int(copy.deepcopy(rng).randint(np.iinfo(np.int32).max))


class SourceBase:
    """What every source shares: no column names, nothing to validate, no reseed rows."""

    feature_names: np.ndarray | None = None

    def validate(self, estep: EStep = COMPLETE) -> None:
        """Nothing to check beyond what the constructor checked."""

    def start_run(self) -> None:
        """Drop the per-row hints of earlier passes (they only save work)."""
        hints = getattr(self, "_hints", None)
        if hints is not None:
            hints.valid = False

    def worst_explained(self, params: GaussianParams, count: int, estep: EStep = COMPLETE):
        """``None``: finding the worst-explained rows would cost a pass over the data."""
        return None
