"""The E-step seam: what turns a block of rows and the parameters into statistics.

Data sources (:mod:`fastgmm._sources`, :mod:`fastgmm._dask`) only deliver
blocks of rows; which E-step runs on them is an object they are handed with
every call (``source.stats(params, estep)``), never a flag they hold.  An
E-step

* checks a block's values (:meth:`EStep.check_block`, or
  :meth:`EStep.block_error` where an error must travel back from a Dask
  worker as text);
* prepares what it needs from a block (:meth:`EStep.prepare`: for missing
  data, the rows grouped by pattern), which a source that holds its rows in
  memory keeps between passes;
* computes the block's :class:`~fastgmm.SuffStats` (:meth:`EStep.stats`),
  with a :class:`BlockCache` for the workspaces and per-row hints that only
  save work;
* checks what a whole pass saw (:meth:`EStep.check_pass`);
* gives the per-row outputs (:meth:`EStep.point`: responsibilities, log
  densities, labels, scores).

:data:`COMPLETE` (:class:`CompleteData`) is the E-step of complete rows;
:data:`fastgmm._missing.MARGINALIZE` marginalises missing entries.  An
E-step must pickle (Dask tasks carry it) and hold no per-fit state: that
lives in the :class:`BlockCache` the source keeps.
"""

from __future__ import annotations

import numpy as np

from . import _parallel
from ._compute import RowHints, StatsWorkspace, compute_stats, kernel_inputs, point_outputs
from ._params import GaussianParams
from ._stats import SuffStats


class BlockCache:
    """What a source keeps for an E-step about one block (in memory) or one pass.

    Parameters
    ----------
    keep : bool
        The cache belongs to one block held between passes (an in-memory
        source): the E-step sizes its workspace to that block and keeps its
        own per-row hints.  Otherwise it serves the blocks of one pass, and
        hints come from the source (:attr:`row_hints`).

    Attributes
    ----------
    row_hints : RowHints or None
        Hints of the current block's rows, kept by the source (``keep`` False).
    prepared : object
        The block as :meth:`EStep.prepare` returned it (``keep`` True).
    """

    def __init__(self, keep: bool):
        self.keep = bool(keep)
        self.row_hints: RowHints | None = None
        self.prepared = None
        self._workspace: StatsWorkspace | None = None
        self._hints: RowHints | None = None
        self._inputs = None
        self._inputs_key = None

    def workspace(self, params: GaussianParams, n_rows: int) -> StatsWorkspace:
        """Statistics slots for ``params``, reused while the model's shape stays.

        With ``keep`` they are sized to ``n_rows`` (the block's rows) and the
        block's own hints are started afresh whenever the slots are.
        """
        ws = self._workspace
        if (ws is None or ws.covariance_type != params.covariance_type
                or ws.shapes[1] != (params.n_components, params.n_features)):
            ws = self._workspace = StatsWorkspace(
                params.covariance_type, params.n_components, params.n_features,
                _parallel.n_threads(), n_rows if self.keep else None)
            if self.keep:
                self._hints = RowHints(n_rows)
        return ws

    def hints(self) -> RowHints | None:
        """The hints of the block: its own (``keep``) or the source's view (else)."""
        return self._hints if self.keep else self.row_hints

    def inputs(self, params: GaussianParams, dtype):
        """:func:`fastgmm._compute.kernel_inputs` of ``params``, made once per pass."""
        # Holding ``params`` keeps the check by identity sound.
        key = np.dtype(dtype)
        if self._inputs is None or self._inputs[0] is not params or self._inputs_key != key:
            self._inputs = (params, kernel_inputs(params, dtype))
            self._inputs_key = key
        return self._inputs[1]

    def forget(self) -> None:
        """Drop what earlier passes left (hints only save work): a new run starts."""
        if self._hints is not None:
            self._hints.valid = False
        self._inputs = self._inputs_key = None


class EStep:
    """The E-step protocol (see the module notes); :class:`CompleteData` is the default.

    Attributes
    ----------
    allow_nan : bool
        NaN marks a missing entry (else it is refused).
    """

    allow_nan: bool = False

    def __reduce__(self):
        # Stateless: a pickled E-step (in a Dask task) is its class again.
        return (type(self), ())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def check_block(self, X: np.ndarray, start: int = 0, name: str = "X") -> None:
        """Raise ``ValueError`` naming the first row (``start`` + index) this E-step refuses."""
        raise NotImplementedError

    def block_error(self, X: np.ndarray, start: int = 0) -> str:
        """The error :meth:`check_block` would raise, as text (``""``: none)."""
        try:
            self.check_block(np.asarray(X), start)
        except ValueError as exc:
            return str(exc)
        return ""

    def prepare(self, X: np.ndarray, w: np.ndarray | None, start: int = 0):
        """What :meth:`stats` needs from a checked block (kept by in-memory sources)."""
        raise NotImplementedError

    def stats(self, block, params: GaussianParams, cache: BlockCache) -> SuffStats:
        """Sufficient statistics of a prepared block under ``params``."""
        raise NotImplementedError

    def observed(self, block) -> np.ndarray | None:
        """Per feature, the values a prepared block observed (None: all of them)."""
        return None

    def check_pass(self, observed: np.ndarray | None, where: str = "X",
                   names: np.ndarray | None = None) -> None:
        """Raise unless what a whole pass observed (summed :meth:`observed`) suffices."""

    def seeds_from_rows(self, block) -> bool:
        """Whether a row of the block may seed a component's mean (a complete row)."""
        return True

    def forget(self, block) -> None:
        """Drop per-row state a prepared block keeps (a new EM run starts)."""

    def point(self, X: np.ndarray, params: GaussianParams, **what) -> dict:
        """Per-row outputs (see :func:`fastgmm._compute.point_outputs`) of checked rows."""
        raise NotImplementedError


class CompleteData(EStep):
    """The E-step of complete rows: NaN and infinity are refused."""

    def check_block(self, X, start=0, name="X"):
        finite = np.isfinite(X)
        if not finite.all():
            row = start + int(np.argmin(finite.all(axis=1)))
            what = "NaN" if np.isnan(X).any() else "infinity"
            raise ValueError(f"{name} contains {what} (row {row}); remove or impute "
                             "non-finite values first")

    def block_error(self, X, start=0):
        # A Dask worker's verdict on its block: no row (blocks are checked
        # in parallel and reported together).
        if np.isfinite(X).all():
            return ""
        return "X contains NaN or infinity; remove or impute non-finite values first"

    def prepare(self, X, w, start=0):
        return X, w

    def stats(self, block, params, cache):
        X, w = block
        ws = cache.workspace(params, max(X.shape[0], 1))
        return compute_stats(X, w, params, ws, cache.inputs(params, X.dtype), cache.hints())

    def point(self, X, params, **what):
        return point_outputs(X, params, **what)


#: The complete-data E-step (the default everywhere).
COMPLETE = CompleteData()


def block_stats(estep: EStep, X: np.ndarray, w: np.ndarray | None,
                params: GaussianParams) -> SuffStats:
    """Statistics of one checked in-memory block, nothing kept (``suff_stats``, online EM)."""
    return estep.stats(estep.prepare(X, w), params, BlockCache(keep=True))
