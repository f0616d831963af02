"""Data sets shipped with fastgmm.

Only one for now: the wholesale-customers data (UCI id 292, CC BY 4.0), the
annual spending of 440 clients of a Portuguese wholesale distributor.

>>> from fastgmm.datasets import load_wholesale
>>> data = load_wholesale()
>>> data.spending.shape
(440, 6)
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

from ._table import Table

__all__ = ["Wholesale", "channel_names", "load_wholesale", "region_names"]

_WHOLESALE_FILE = "wholesale_customers.csv"
_WHOLESALE_COLUMNS = ("Channel", "Region", "Fresh", "Milk", "Grocery", "Frozen",
                      "Detergents_Paper", "Delicassen")
_CHANNELS = {1: "Horeca", 2: "Retail"}
_REGIONS = {1: "Lisbon", 2: "Oporto", 3: "Other"}

CITATION = ("Cardoso, M. (2013). Wholesale customers [Dataset]. UCI Machine Learning "
            "Repository. https://doi.org/10.24432/C5030X")


def _data_file(name: str):
    return resources.files("fastgmm").joinpath("data", name)


@dataclass(frozen=True, repr=False)
class Wholesale:
    """The wholesale-customers data set.

    Attributes
    ----------
    data : ndarray of shape (440, 8), int64
        All columns, in file order: ``Channel, Region, Fresh, Milk, Grocery,
        Frozen, Detergents_Paper, Delicassen``.
    columns : tuple of str
        The column names.
    descr : str
        Description, source and licence (the bundled README).
    citation : str
        How to cite the data.
    """

    data: np.ndarray
    columns: tuple
    descr: str
    citation: str = CITATION

    def __repr__(self) -> str:
        return (f"Wholesale(n_customers={self.data.shape[0]}, "
                f"columns={list(self.columns)})")

    def col(self, name: str) -> np.ndarray:
        """One column as a new int64 array."""
        if name not in self.columns:
            raise KeyError(f"unknown column {name!r}; columns are {list(self.columns)}")
        return self.data[:, self.columns.index(name)].copy()

    @property
    def spending_columns(self) -> tuple:
        """The six spending categories (every column but Channel and Region)."""
        return self.columns[2:]

    @property
    def spending(self) -> np.ndarray:
        """Annual spending, shape (440, 6), float64 (Channel and Region dropped)."""
        return self.data[:, 2:].astype(np.float64)

    @property
    def channel(self) -> np.ndarray:
        """Channel code per customer: 1 = Horeca, 2 = Retail."""
        return self.col("Channel")

    @property
    def region(self) -> np.ndarray:
        """Region code per customer: 1 = Lisbon, 2 = Oporto, 3 = Other."""
        return self.col("Region")

    def frame(self):
        """All columns as a :class:`pandas.DataFrame` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.data, columns=list(self.columns))

    def segment_profile(self, labels, n_segments: int | None = None,
                        title: str | None = None) -> Table:
        """Describe customer segments in the original units.

        Parameters
        ----------
        labels : array-like of int, shape (440,)
            Segment of each customer, ``0 .. n_segments - 1``.
        n_segments : int, optional
            Number of segments (default: ``max(labels) + 1``); segments with
            no customer get a row of dashes.
        title : str, optional

        Returns
        -------
        table
            Prints as an aligned text table; ``.to_frame()`` gives a
            :class:`pandas.DataFrame`, ``.column(name)`` one column.  One row
            per segment: ``segment``, ``customers``, ``share`` (of all
            customers), the mean annual spending per category, and the
            Channel mix (share of Horeca and of Retail customers).
        """
        n = self.data.shape[0]
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.shape[0] != n:
            raise ValueError(f"labels must have shape ({n},), got {lab.shape}")
        if lab.dtype.kind not in "iu":
            if lab.dtype.kind == "f" and np.all(np.isfinite(lab)) and np.all(lab == np.round(lab)):
                lab = lab.astype(np.int64)
            else:
                raise TypeError(f"labels must be integers, got dtype {lab.dtype}")
        if n_segments is None:
            n_segments = int(lab.max()) + 1
        if lab.min() < 0 or lab.max() >= n_segments:
            raise ValueError(f"labels must lie in [0, {n_segments}), "
                             f"got values from {lab.min()} to {lab.max()}")
        spend = self.spending
        channel = self.channel
        cols = (("segment", "customers", "share") + tuple(self.spending_columns)
                + tuple(f"% {name}" for name in _CHANNELS.values()))
        rows = []
        for s in range(n_segments):
            members = lab == s
            size = int(members.sum())
            if size == 0:
                rows.append((s, 0, 0.0) + (None,) * (len(cols) - 3))
                continue
            means = tuple(float(v) for v in spend[members].mean(axis=0))
            mix = tuple(float(np.mean(channel[members] == code)) for code in _CHANNELS)
            rows.append((s, size, size / n) + means + mix)
        formats = {"share": ".1%"}
        formats.update({c: ",.0f" for c in self.spending_columns})
        formats.update({f"% {name}": ".0%" for name in _CHANNELS.values()})
        return Table(cols, tuple(rows), formats, title)


def load_wholesale() -> Wholesale:
    """Load the wholesale-customers data bundled with fastgmm.

    440 clients of a wholesale distributor in Portugal: their channel
    (1 = Horeca, 2 = Retail), region (1 = Lisbon, 2 = Oporto, 3 = Other) and
    annual spending on six product categories, in monetary units.

    Source: UCI Machine Learning Repository, data set 292, donated by
    Margarida G. M. S. Cardoso; DOI 10.24432/C5030X; licence CC BY 4.0.

    Returns
    -------
    Wholesale
        ``data`` (440 x 8 int64), ``columns``, ``spending`` (440 x 6 float64),
        ``channel``, ``region``, ``descr`` and ``citation``.
    """
    csv = _data_file(_WHOLESALE_FILE)
    with csv.open("r", encoding="ascii") as f:
        header = tuple(f.readline().strip().split(","))
        if header != _WHOLESALE_COLUMNS:
            raise OSError(f"the bundled {_WHOLESALE_FILE} has an unexpected header {header}; "
                          "the fastgmm installation looks damaged")
        data = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    descr = _data_file("README.md").read_text(encoding="utf-8")
    data.setflags(write=False)
    return Wholesale(data, header, descr)


def channel_names() -> dict:
    """Channel codes to names: ``{1: 'Horeca', 2: 'Retail'}``."""
    return dict(_CHANNELS)


def region_names() -> dict:
    """Region codes to names: ``{1: 'Lisbon', 2: 'Oporto', 3: 'Other'}``."""
    return dict(_REGIONS)
