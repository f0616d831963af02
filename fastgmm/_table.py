"""Aligned plain-text tables for the command line, the demo and the data sets."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Table:
    """A small table of results that prints aligned, for terminals and logs.

    Attributes
    ----------
    columns : tuple of str
        Column headers.
    rows : tuple of tuple
        One tuple per row; numbers are formatted with ``formats`` when printed.
    formats : dict
        Optional ``{column: format spec}``, e.g. ``{"share": ".1%"}``; other
        floats print with ``.4g``, other values with ``str``.
    title : str, optional
        A line printed above the table.
    """

    columns: tuple
    rows: tuple
    formats: dict = field(default_factory=dict)
    title: str | None = None

    def column(self, name: str) -> list:
        """The values of one column, in row order."""
        j = self.columns.index(name)
        return [row[j] for row in self.rows]

    def _cell(self, name: str, value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        spec = self.formats.get(name)
        if spec is not None:
            return format(value, spec)
        if isinstance(value, (float, np.floating)):
            return format(float(value), ".4g")
        return str(value)

    def to_string(self) -> str:
        """The table as aligned text (numbers right-aligned)."""
        cells = [[self._cell(c, v) for c, v in zip(self.columns, row, strict=True)]
                 for row in self.rows]
        widths = [max([len(str(c))] + [len(r[j]) for r in cells])
                  for j, c in enumerate(self.columns)]
        numeric = [all(isinstance(row[j], (int, float, np.integer, np.floating)) or row[j] is None
                       for row in self.rows) for j in range(len(self.columns))]

        def line(values):
            return "  ".join(v.rjust(w) if num else v.ljust(w)
                             for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

        out = [] if self.title is None else [self.title]
        out.append(line([str(c) for c in self.columns]))
        out.append(line(["-" * w for w in widths]))
        out.extend(line(r) for r in cells)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_string()

    def to_frame(self):
        """The table as a :class:`pandas.DataFrame` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(list(self.rows), columns=list(self.columns))
