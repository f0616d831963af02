"""The ``fastgmm`` command line.

::

    fastgmm demo [--out DIR] [--quick]
    fastgmm fit DATA --k K|auto [--covariance TYPE] [--columns a,b] [--standardize] [--log]
                [--sample-weight COL] [--missing] [--n-init N] [--max-iter N] [--seed S]
                [--header auto|yes|no] --out MODEL
    fastgmm predict MODEL DATA [--proba] [--header auto|yes|no] --out FILE
    fastgmm score MODEL DATA [--header auto|yes|no] --out FILE
    fastgmm impute MODEL DATA [--seed S] [--header auto|yes|no] --out FILE
    fastgmm sample MODEL --n N [--seed S] --out FILE
    fastgmm info MODEL

DATA is a CSV file, a ``.npy`` array (columns named ``0``, ``1``, ...) or,
when pandas and pyarrow are installed, a Parquet file.  A CSV file's first
row is a header of column names when ``--header yes`` says so, or, by
default, when it looks like one: names only, or each name above a number in
the next row.  A first row of numbers only is read as data (the columns are
named ``0``, ``1``, ... and a note on stderr says so); a first row that could
be either is an error asking for ``--header``.  Every row counts: nothing is
a comment.  One reader decides what a number is, for every command and
option: ASCII decimal notation (``-1.5e3``), ``inf`` or ``nan``; an empty
cell, ``NA``, ``N/A``, ``NULL`` or ``NaN`` is a missing value, accepted only
where missing values are (``fit --missing``, ``impute``, and ``predict`` or
``score`` with a model fitted with ``--missing``).

Output files end in ``.csv`` or ``.npy``, and never replace an input file;
numbers are written as the shortest text that reads back to the same double.
The preprocessing chosen at fit time (columns, ``--log``, ``--standardize``)
is stored in the model file and applied again by ``predict``, ``score`` and
``impute``, and undone by ``sample`` and ``impute`` (which writes observed
cells exactly as read and fills only the gaps).

Progress goes to stderr (``--quiet`` silences it), results to stdout.  Bad
input prints one line, ``fastgmm <command>: error: ...``, and exits with
status 2; outputs are written to a temporary file and renamed into place, so
a failed command leaves no partial file behind.  Argument errors name the
subcommand (``fastgmm fit: error: ...``).  A closed standard output (``fastgmm
fit ... | head -1``) is not an error: the command finishes its work quietly
and exits with status 0.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._params import COVARIANCE_TYPES

__all__ = ["main"]

_OUTPUT_SUFFIXES = (".csv", ".npy")

#: The seed of ``fit --k auto`` when ``--seed`` is not given: the choice of k
#: is then the same from run to run.
AUTO_SEED = 0

#: The subcommands, in the order of ``--help``.
COMMANDS = ("demo", "fit", "predict", "score", "impute", "sample", "info")


class CLIError(Exception):
    """Bad input: reported as one line, exit status 2."""


class _UsageError(Exception):
    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become one line and exit status 2."""

    def error(self, message):  # noqa: D102
        raise _UsageError(self.prog, message)


# ----------------------------------------------------------------------------
# reading data
# ----------------------------------------------------------------------------


class _Data:
    """Named numeric columns read from a file, converted on demand."""

    def __init__(self, path: str, names: list[str], loader, has_header: bool,
                 note: str | None = None):
        self.path = path
        self.names = names
        self._loader = loader
        self.has_header = has_header
        #: How the header was decided, when it is worth telling (printed on stderr).
        self.note = note
        #: Whether the values were read from text (CSV) rather than stored as numbers.
        self.text = False

    def columns(self, names: Sequence[str], missing: bool = False,
                why: str = "remove or impute such rows first") -> np.ndarray:
        """The given columns as a float64 (n_rows, len(names)) array, checked.

        With ``missing``, empty cells (and NA, N/A, NULL, NaN) become NaN and
        only infinite values are refused.  Without it a missing value is an
        error, whose message ends with ``why`` (what to do about it here).
        """
        for name in names:
            if name not in self.names:
                shown = ", ".join(self.names[:12]) + (", ..." if len(self.names) > 12 else "")
                raise CLIError(f"{self.path}: unknown column {name!r}; the columns are {shown}")
        idx = [self.names.index(n) for n in names]
        X = self._loader(idx)
        if X.shape[0] == 0:
            raise CLIError(f"{self.path} has no data rows")
        bad = np.isinf(X) if missing else ~np.isfinite(X)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            if np.isnan(X[row, col]):
                if self.text:
                    raise CLIError(f"{self.path}: column {names[col]!r} has a missing value "
                                   f"in data row {row + 1} (an empty, NA, N/A, NULL or NaN "
                                   f"cell); {why}")
                raise CLIError(f"{self.path}: column {names[col]!r} is NaN (a missing value) "
                               f"in data row {row + 1}; {why}")
            raise CLIError(f"{self.path}: column {names[col]!r} is infinite in data row "
                           f"{row + 1}; remove or correct such rows first")
        return X


def _read_data(path: str, header: str = "auto") -> _Data:
    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a folder, not a data file")
    lower = path.lower()
    if lower.endswith(".npy"):
        return _read_npy(path)
    if lower.endswith((".parquet", ".pq")):
        return _read_parquet(path)
    return _read_csv(path, "\t" if lower.endswith(".tsv") else ",", header)


def _read_npy(path: str) -> _Data:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise CLIError(f"{path} is not a readable .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray):
        raise CLIError(f"{path} is not a single .npy array")
    if arr.dtype.kind not in "biuf":
        raise CLIError(f"{path} holds {arr.dtype} values; a numeric array is needed")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise CLIError(f"{path} holds a {arr.ndim}-dimensional array; 1 or 2 dimensions needed")
    names = [str(j) for j in range(arr.shape[1])]
    return _Data(path, names,
                 lambda idx: np.asarray(arr[:, idx], dtype=np.float64), False)


def _read_parquet(path: str) -> _Data:
    try:
        import pandas as pd
        import pyarrow  # noqa: F401
    except ImportError:
        raise CLIError("reading Parquet needs pandas and pyarrow "
                       "(pip install pandas pyarrow)") from None
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises its own error types
        raise CLIError(f"{path} is not a readable Parquet file ({exc})") from None
    names = [str(c) for c in frame.columns]

    def load(idx):
        out = np.empty((len(frame), len(idx)))
        for j, i in enumerate(idx):
            col = frame.iloc[:, i]
            if col.dtype.kind not in "biuf":
                raise CLIError(f"{path}: column {names[i]!r} is not numeric "
                               f"(dtype {col.dtype})")
            out[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    return _Data(path, names, load, True)


#: Cells read as a missing value (never as a column name), compared in upper case.
_MISSING = ("", "NA", "N/A", "NULL", "NAN")


def parse_cell(cell: str) -> float | None:
    """A text cell as a number: NaN for a missing value, None if it is not a number.

    The one number reader of the command line: every CSV path (header
    detection, data with or without ``--missing``, row weights) reads cells
    with it, so a cell means the same whatever the command or option.  A
    number is ASCII decimal notation (an optional sign, digits with an
    optional point, an optional exponent) or inf, infinity or nan (any
    case); ``1_000`` and digits of other scripts are not numbers, although
    Python's ``float`` takes them.  Spaces around the text are ignored.
    """
    text = cell.strip()
    if text.upper() in _MISSING:
        return math.nan
    # Python's float() without what a data file never means: its grammar
    # restricted to ASCII and without digit-group underscores is exactly
    # sign, digits, point, exponent, or inf / infinity / nan.
    if not text.isascii() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _cell_kind(cell: str) -> str:
    value = parse_cell(cell)
    if value is None:
        return "name"
    return "empty" if math.isnan(value) else "number"


def _first_rows(path: str, delimiter: str) -> tuple[list | None, int, list | None]:
    """The first two non-blank rows, and the physical lines up to the end of the first."""
    first, lines, second = None, 0, None
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            for row in reader:
                if any(cell.strip() for cell in row):
                    if first is None:
                        first, lines = row, reader.line_num
                    else:
                        second = row
                        break
    except UnicodeDecodeError:
        raise CLIError(f"{path} is not a text (UTF-8) CSV file") from None
    except csv.Error as exc:
        raise CLIError(f"{path} is not a readable CSV file ({exc})") from None
    return first, lines, second


def _decide_header(path: str, first: list, second: list | None,
                   header: str) -> tuple[bool, str | None]:
    """Whether ``first`` is a header row, and a note saying so when it was guessed.

    A header row is never taken for data, nor a data row for a header,
    without a word: a guess that could drop or invent a row is an error.
    """
    if header != "auto":
        return header == "yes", None
    kinds = [_cell_kind(cell) for cell in first]
    if all(kind == "number" for kind in kinds):
        return False, (f"{path}: the first row holds numbers only, so it is read as data "
                       f"and the columns are named 0..{len(first) - 1}; if it names the "
                       "columns, say --header yes (--header no silences this note)")
    if "name" not in kinds:
        return False, None  # numbers and missing values: a data row, never a header
    if all(kind == "name" for kind in kinds):
        return True, None
    if "empty" not in kinds and second is not None and len(second) == len(first) and all(
            _cell_kind(cell) == "number"
            for kind, cell in zip(kinds, second, strict=True) if kind == "name"):
        return True, None  # every name above a number
    shown = ",".join(first)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise CLIError(f"{path}: cannot tell whether the first row ({shown!r}) is a header: it "
                   "mixes names with numbers or empty cells; say --header yes or --header no")


def _read_csv(path: str, delimiter: str, header: str = "auto") -> _Data:
    first, header_lines, second = _first_rows(path, delimiter)
    if first is None:
        raise CLIError(f"{path} is empty")
    has_header, note = _decide_header(path, first, second, header)
    if has_header:
        names = [cell.strip() for cell in first]
        if "" in names:
            raise CLIError(f"{path}: the header row has no name for column "
                           f"{names.index('') + 1}")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise CLIError(f"{path}: duplicate column name(s) {dupes}")
    else:
        names = [str(j) for j in range(len(first))]

    def load(idx):
        return _load_csv(path, delimiter, has_header, names, idx)

    data = _Data(path, names, load, has_header, note)
    data.text = True
    return data


def _load_csv(path: str, delimiter: str, has_header: bool, names: list[str],
              idx: list[int]) -> np.ndarray:
    """The columns ``idx`` of a CSV file as float64, missing values as NaN.

    Every data row must have one field per column; an empty line is skipped,
    a line of spaces is an error (it is neither a row nor nothing).
    """
    rows: list[list[float]] = []
    n_columns = len(names)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            lines = iter(reader)
            if has_header:  # the header is the first line with a non-blank cell
                next((row for row in lines if any(cell.strip() for cell in row)), None)
            row_no = 0
            for row in lines:
                if not row:
                    continue  # an empty line
                row_no += 1
                if len(row) != n_columns:
                    where = f"data row {row_no} (line {reader.line_num})"
                    if len(row) == 1 and not row[0].strip():
                        raise CLIError(f"{path}: {where} holds only spaces; delete that "
                                       "line or give its fields (empty fields are written ,,)")
                    fields = f"{len(row)} field" + ("" if len(row) == 1 else "s")
                    raise CLIError(f"{path}: data row {row_no} has {fields} but the file "
                                   f"has {n_columns} columns (line {reader.line_num})")
                values = [parse_cell(row[i]) for i in idx]
                if None in values:
                    i = idx[values.index(None)]
                    raise CLIError(f"{path}: column {names[i]!r} is not numeric "
                                   f"(data row {row_no} holds {row[i]!r})")
                rows.append(values)
        except csv.Error as exc:
            raise CLIError(f"{path} is not a readable CSV file ({exc})") from None
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(idx))


# ----------------------------------------------------------------------------
# writing results
# ----------------------------------------------------------------------------


def _check_output(path: str, suffixes=_OUTPUT_SUFFIXES, inputs: Sequence[str] = ()) -> str:
    for source in inputs:
        if os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
            raise CLIError(f"--out {path} is the input file {source}; writing there would "
                           "replace it, so choose another name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CLIError(f"--out {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise CLIError(f"--out {path}: the folder {folder} is not writable")
    if os.path.isdir(path):
        raise CLIError(f"--out {path} is a folder; give a file name")
    if suffixes and not path.lower().endswith(suffixes):
        raise CLIError(f"--out {path}: the file name must end in "
                       f"{' or '.join(suffixes)}")
    return path


def _write_table(path: str, header: list[str], values: np.ndarray,
                 integer_columns: Sequence[int] = ()) -> None:
    """Write a table as CSV (shortest round-trip numbers) or ``.npy``, atomically.

    ``integer_columns`` (indices) are written as integers in a CSV file.
    """
    from ._io import atomic_path

    with atomic_path(path) as tmp:
        if path.lower().endswith(".npy"):
            with open(tmp, "wb") as f:
                np.save(f, values)
        else:
            ints = set(integer_columns)
            with open(tmp, "w", newline="") as f:
                # Quoted where needed: a name may hold a comma or a quote.
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(header)
                for row in np.asarray(values).tolist():
                    writer.writerow([str(int(v)) if j in ints else repr(float(v))
                                     for j, v in enumerate(row)])


# ----------------------------------------------------------------------------
# progress
# ----------------------------------------------------------------------------


class _Progress:
    """The estimator callback that reports EM iterations on stderr.

    Prints the first iteration of each initialisation and then at most one
    line per ``interval`` seconds.
    """

    def __init__(self, interval: float = 1.0, stream=None):
        self.interval = interval
        self.stream = sys.stderr if stream is None else stream
        self._last = -math.inf
        self._lock = threading.Lock()

    def __call__(self, info) -> bool:
        now = time.perf_counter()
        with self._lock:
            if info.iteration == 1 or now - self._last >= self.interval:
                self._last = now
                print(f"fit: init {info.init}  iteration {info.iteration:4d}  "
                      f"log-likelihood {info.lower_bound: .6f}  change {info.change: .3e}  "
                      f"{info.elapsed:7.2f} s", file=self.stream, flush=True)
        return False


def _note(args, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(f"{args.command}: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# preprocessing stored with the model
# ----------------------------------------------------------------------------


def _transform(X: np.ndarray, names: Sequence[str], prep: dict, center, scale) -> np.ndarray:
    if prep.get("log"):
        bad = X <= 0
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise CLIError(f"--log needs positive values, but column {names[col]!r} is "
                           f"{X[row, col]:g} in data row {row + 1}")
        X = np.log(X)
    if prep.get("standardize"):
        X = (X - center) / scale
    return X


def _untransform(Z: np.ndarray, prep: dict, center, scale) -> np.ndarray:
    X = Z
    if prep.get("standardize"):
        X = center + scale * X
    if prep.get("log"):
        X = np.exp(X)
    return X


def _model_features(names: Sequence[str], prep: dict) -> list[str]:
    out = []
    for name in names:
        if prep.get("log"):
            name = f"log({name})"
        if prep.get("standardize"):
            name = f"z({name})"
        out.append(name)
    return out


def _read_model(path: str):
    from ._io import ModelFileError, read

    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file")
    try:
        # Only the extra arrays the command line stores are read.
        mf = read(path, extra_arrays=("center", "scale"))
    except ModelFileError as exc:
        raise CLIError(str(exc)) from None
    return mf, _check_prep(path, mf)


_PREP_KEYS = frozenset({"columns", "log", "standardize", "sample_weight", "data"})


def _check_prep(path: str, mf) -> dict | None:
    """The preprocessing ``fit`` stored in the model (``extra.cli``), checked; None if none.

    The file checks of :func:`fastgmm.load` do not cover what an application
    stores beside the model, so this one is checked here, before use.
    """
    prep: Any = mf.extra.get("cli")
    if prep is None:
        return None
    d = mf.model.n_features_in_

    def bad(why):
        raise CLIError(f"{path}: the command-line preprocessing stored in the model "
                       f"(extra.cli) is not valid: {why}")

    if not isinstance(prep, dict):
        bad("it is not a JSON object")
    unknown = sorted(set(prep) - _PREP_KEYS)
    if unknown:
        bad(f"unknown key(s) {unknown}")
    columns = prep.get("columns")
    if not (isinstance(columns, list) and len(columns) == d
            and all(isinstance(c, str) and c for c in columns)):
        bad(f"'columns' must list the model's {d} column names")
    if len(set(columns)) != d:
        bad("'columns' names a column twice")
    for key in ("log", "standardize"):
        if not isinstance(prep.get(key, False), bool):
            bad(f"{key!r} must be true or false")
    for key in ("sample_weight", "data"):
        if prep.get(key) is not None and not isinstance(prep[key], str):
            bad(f"{key!r} must be a string or null")
    if prep.get("standardize"):
        for name in ("center", "scale"):
            arr = mf.extra_arrays.get(name)
            if arr is None or arr.shape != (d,) or not np.isfinite(arr).all():
                bad(f"--standardize needs the array extra.{name} of {d} finite numbers")
        if not (mf.extra_arrays["scale"] > 0).all():
            bad("the array extra.scale must be positive")
    return prep


# ----------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------


def _cmd_demo(args) -> int:
    from ._demo import run_demo

    progress = None if args.quiet else (lambda m: print(f"demo: {m}", file=sys.stderr,
                                                        flush=True))
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        pass  # no plots, so no folder (run_demo says why)
    else:
        _prepare_folder(args.out)
    run_demo(args.out, quick=args.quick, seed=args.seed, progress=progress)
    return 0


def _prepare_folder(path: str) -> None:
    """Create the output folder ``path`` and try writing there, before any work."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise CLIError(f"--out {path} exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise CLIError(f"--out {path}: cannot write there "
                       f"({exc.strerror or exc})") from None


def _cmd_fit(args) -> int:
    from ._estimator import GaussianMixture
    from ._io import save

    data = _read_data(args.data, args.header)
    if args.columns is not None:
        columns = [c.strip() for c in args.columns.split(",")]
        if any(c == "" for c in columns):
            raise CLIError(f"--columns {args.columns!r} has an empty name")
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if dupes:
            raise CLIError(f"--columns names {dupes} more than once")
    else:
        columns = [c for c in data.names if c != args.sample_weight]
    if args.sample_weight is not None and args.sample_weight in columns:
        raise CLIError(f"--sample-weight {args.sample_weight!r} is also a feature column")
    X = data.columns(columns, missing=args.missing,
                     why="remove or impute such rows first, or fit with --missing")
    _say_header(args, data)
    weights = None
    if args.sample_weight is not None:
        weights = data.columns([args.sample_weight],
                               why="every row needs a weight (--missing is for the "
                               "feature columns only)")[:, 0]
        if (weights < 0).any():
            raise CLIError(f"--sample-weight column {args.sample_weight!r} has negative values")
        if not weights.sum() > 0:
            raise CLIError(f"--sample-weight column {args.sample_weight!r} sums to zero")
    n = X.shape[0]
    if args.k != "auto" and args.k > n:
        raise CLIError(f"--k {args.k} is larger than the number of data rows ({n})")
    if weights is not None and args.k != "auto" and np.count_nonzero(weights) < args.k:
        raise CLIError(f"--k {args.k} is larger than the number of rows with positive "
                       f"weight ({np.count_nonzero(weights)})")
    _check_output(args.out, suffixes=None, inputs=(args.data,))

    prep = {"columns": columns, "log": bool(args.log), "standardize": bool(args.standardize),
            "sample_weight": args.sample_weight, "data": os.path.basename(args.data)}
    Z = _transform(X, columns, {"log": prep["log"]}, None, None)
    extra_arrays = {}
    center = scale = None
    if args.standardize:
        from ._prep import standardize

        try:
            Z, center, scale = standardize(Z, columns, ignore_nan=args.missing)
        except ValueError as exc:
            raise CLIError(f"--standardize: {exc}") from None
        extra_arrays = {"center": center, "scale": scale}

    if args.k == "auto" and args.bayesian:
        raise CLIError("--k auto chooses k by BIC; with --bayesian give the most components "
                       "(unused ones get weights near zero)")
    if args.k == "auto" and args.missing:
        raise CLIError("--k auto is not available with --missing; give the number of "
                       "components")
    if args.k == "auto":
        if args.seed is None:
            args.seed = AUTO_SEED
            _note(args, f"--k auto: seed {AUTO_SEED} (the default; give --seed for another)")
        args.k, args.seed = _choose_k(args, Z, weights)
    if not args.bayesian:
        _warn_few_distinct_rows(args.k, X, weights)
    if args.bayesian:
        from ._bayesian import BayesianGaussianMixture as GaussianMixture  # same arguments
    if args.missing and args.bayesian:
        raise CLIError("--missing is not available with --bayesian")
    more = {"missing": "marginalize"} if args.missing else {}
    model = GaussianMixture(args.k, covariance_type=args.covariance, n_init=args.n_init,
                            max_iter=args.max_iter, random_state=args.seed,
                            callback=None if args.quiet else _Progress(), **more)
    _note(args, f"{n} rows x {len(columns)} columns from {args.data}; fitting k={args.k}, "
          f"{args.covariance} covariances, {args.n_init} initialisation(s)")
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(Z, sample_weight=weights)
    seconds = time.perf_counter() - start
    for w in caught:
        print(f"fastgmm fit: warning: {_printable(w.message)}", file=sys.stderr)
    model.callback = None
    model.feature_names_in_ = np.asarray(_model_features(columns, prep), dtype=object)
    save(model, args.out, extra={"cli": prep}, extra_arrays=extra_arrays)

    print(f"Fitted a {args.k}-component Gaussian mixture ({args.covariance} covariances) "
          f"to {n} rows x {len(columns)} columns of {args.data} in {seconds:.2f} s")
    steps = [name for name, on in (("log", args.log), ("standardised", args.standardize)) if on]
    weighting = f"; row weights from {args.sample_weight!r}" if weights is not None else ""
    print(f"columns: {', '.join(_printable(c) for c in columns)}; "
          f"preprocessing: {', '.join(steps) or 'none'}"
          f"{weighting}")
    state = "converged" if model.converged_ else "did NOT converge"
    if args.bayesian:
        print(f"EM {state} after {model.n_iter_} iterations; variational lower bound "
              f"{model.lower_bound_:.6f}; {model.n_effective_components_} effective components")
    else:
        print(f"EM {state} after {model.n_iter_} iterations; mean log-likelihood "
              f"{model.lower_bound_:.6f}")
        print(f"BIC {model.bic(Z, weights):.2f}   AIC {model.aic(Z, weights):.2f}")
    _print_components(model, columns, prep, center, scale)
    print(f"model written to {args.out}")
    return 0


def _warn_few_distinct_rows(k: int, X: np.ndarray, weights) -> None:
    """Warn on stderr when there are no more distinct rows (of positive weight) than k."""
    rows = X if weights is None else X[weights > 0]
    # NaN != NaN: compare rows with their gaps as one marker value
    n_distinct = np.unique(np.where(np.isnan(rows), np.inf, rows), axis=0).shape[0]
    if k >= n_distinct:
        print(f"fastgmm fit: warning: {k} components for {n_distinct} distinct data rows"
              f"{' of positive weight' if weights is not None else ''}: components can sit "
              "on single points, with covariances set by the regularisation alone; the fit "
              "says little about the data (use fewer components or more data)",
              file=sys.stderr, flush=True)


def _choose_k(args, Z: np.ndarray, weights) -> tuple[int, int]:
    """``--k auto``: the BIC-best k in 1..9 for ``--covariance``; prints the criteria.

    Returns the chosen k and the seed of its cell: refitting that cell from the
    seed gives the selected model bit for bit, so the usual single-fit path
    (progress, warnings, saving) runs unchanged.
    """
    from ._select import select

    n_pos = Z.shape[0] if weights is None else int(np.count_nonzero(weights))
    ks = range(1, min(9, n_pos) + 1)
    _note(args, f"--k auto: fitting k = 1..{ks[-1]} ({args.covariance} covariances, "
          f"{args.n_init} initialisation(s) each) and choosing k by BIC")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = select(Z, ks, (args.covariance,), "bic", n_init=args.n_init,
                        sample_weight=weights, random_state=args.seed,
                        max_iter=args.max_iter, verbose=0 if args.quiet else 1)
    for w in caught:
        print(f"fastgmm fit: warning: {_printable(w.message)}", file=sys.stderr)
    best = result.best_params_["n_components"]
    print(f"--k auto: criteria for k = 1..{ks[-1]}, {args.covariance} covariances "
          "(lower is better; k chosen by BIC)")
    print(f"{'k':>4s} {'BIC':>14s} {'AIC':>14s} {'ICL':>14s}")
    values = {c: result.values(c)[:, 0] for c in ("bic", "aic", "icl")}
    for i, k in enumerate(ks):
        mark = "  <- chosen" if k == best else ""
        print(f"{k:4d} {values['bic'][i]:14.2f} {values['aic'][i]:14.2f} "
              f"{values['icl'][i]:14.2f}{mark}")
    return best, int(result.best_model_.random_state)


def _print_components(model, columns, prep, center, scale) -> None:
    from ._table import Table

    means = np.asarray(model.means_, dtype=np.float64)
    if prep.get("standardize"):
        means = center + scale * means
    heads = [_printable(f"log({c})" if prep.get("log") else c) for c in columns]
    rows = tuple((j, float(model.weights_[j])) + tuple(float(v) for v in means[j])
                 for j in range(means.shape[0]))
    title = "component means" + (" (log units)" if prep.get("log") else "")
    print(Table(("component", "weight") + tuple(heads), rows, {"weight": ".3f"}, title))


def _fitted_with_missing(model) -> bool:
    """Whether the model scores rows with gaps by default (fitted with ``--missing``).

    The fitted option, which the model file records, as ``predict`` uses it.
    """
    fitted = getattr(model, "_fit_missing", None)
    if fitted is not None:
        return bool(fitted)
    return getattr(model, "missing", "error") == "marginalize"


def _model_input(mf, prep, data: _Data, missing: bool | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The model's columns of DATA as read, and as the model sees them (preprocessed).

    ``missing`` None: rows with gaps are accepted when the model was fitted
    with ``--missing`` (as :meth:`GaussianMixture.predict` does), and refused
    otherwise.
    """
    model = mf.model
    d = model.n_features_in_
    if missing is None:
        missing = _fitted_with_missing(model)
    why = ("the model was fitted without --missing, so it cannot score rows with gaps; "
           "remove them, fill them with 'fastgmm impute', or refit with --missing")

    def read(names):
        return data.columns(names, missing, why)

    if prep is not None:
        columns = prep["columns"]
        if data.has_header or all(c in data.names for c in columns):
            X = read(columns)
        elif len(data.names) == d:
            X = read(data.names)
        else:
            raise CLIError(f"{data.path} has {len(data.names)} unnamed columns; the model "
                           f"needs {d} ({', '.join(columns)})")
        return X, _transform(X, columns, prep, mf.extra_arrays.get("center"),
                             mf.extra_arrays.get("scale"))
    names = getattr(model, "feature_names_in_", None)
    if names is not None and data.has_header:
        X = read([str(n) for n in names])
    elif len(data.names) != d:
        raise CLIError(f"{data.path} has {len(data.names)} columns; the model needs {d}")
    else:
        X = read(data.names)
    return X, X


def _say_header(args, data: _Data) -> None:
    """Print how the header of DATA was decided, once its rows were read.

    After the rows, so that an error reading them stays the only line.
    """
    if data.note:
        print(f"fastgmm {args.command}: note: {data.note}", file=sys.stderr, flush=True)


def _model_and_rows(args, missing: bool | None = None):
    """``(model file, preprocessing, rows as read, rows as the model sees them)`` of a command.

    The shared start of ``predict``, ``score`` and ``impute``: read the model
    and the data, check the output path, read the model's columns, and say
    how the header was decided.
    """
    mf, prep = _read_model(args.model)
    data = _read_data(args.data, args.header)
    _check_output(args.out, inputs=(args.model, args.data))
    X, Z = _model_input(mf, prep, data, missing=missing)
    _say_header(args, data)
    return mf, prep, X, Z


def _cmd_predict(args) -> int:
    mf, _, _, Z = _model_and_rows(args)
    model = mf.model
    gaps = _gaps_note(Z)
    if args.proba:
        values = model.predict_proba(Z)
        header = [f"p{j}" for j in range(values.shape[1])]
        _write_table(args.out, header, values)
        print(f"wrote the component probabilities of {Z.shape[0]} rows{gaps} to {args.out}")
    else:
        values = model.predict(Z)
        _write_table(args.out, ["component"], values[:, None], integer_columns=(0,))
        counts = np.bincount(values, minlength=model.weights_.shape[0])
        print(f"wrote the components of {Z.shape[0]} rows{gaps} to {args.out}")
        print("rows per component: " + ", ".join(f"{j}: {c}" for j, c in enumerate(counts)))
    return 0


def _gaps_note(Z: np.ndarray) -> str:
    n = int(np.isnan(Z).any(axis=1).sum())
    return f" ({n} with missing values, scored on their observed columns)" if n else ""


def _log_jacobian(X: np.ndarray, prep: dict | None, scale) -> np.ndarray:
    """The log |dz/dx| per row of the preprocessing x -> z, over each row's observed cells.

    Adding it to the model's log-density of z gives the log-density of x.
    """
    out = np.zeros(X.shape[0])
    if prep is None:
        return out
    observed = ~np.isnan(X)
    if prep.get("log"):
        out -= np.where(observed, np.log(np.where(observed, X, 1.0)), 0.0).sum(axis=1)
    if prep.get("standardize"):
        out -= (observed * np.log(scale)).sum(axis=1)
    return out


def _cmd_score(args) -> int:
    mf, prep, X, Z = _model_and_rows(args)
    model = mf.model
    values = model.score_samples(Z) + _log_jacobian(X, prep, mf.extra_arrays.get("scale"))
    _write_table(args.out, ["log_density"], values[:, None])
    units = "" if prep is None or not (prep.get("log") or prep.get("standardize")) else (
        " in the units of the data (the preprocessing's Jacobian included)")
    print(f"wrote the log-density of {Z.shape[0]} rows{_gaps_note(Z)}{units} to {args.out}")
    print(f"mean log-density per row: {float(np.mean(values)):.6f}")
    return 0


def _cmd_impute(args) -> int:
    mf, prep, X, Z = _model_and_rows(args, missing=True)
    model = mf.model
    if not hasattr(model, "impute"):
        raise CLIError(f"{args.model}: this kind of model cannot impute")
    imputed = np.asarray(model.impute(Z, random_state=args.seed), dtype=np.float64)
    if prep is not None:
        imputed = _untransform(imputed, prep, mf.extra_arrays.get("center"),
                               mf.extra_arrays.get("scale"))
        names = list(prep["columns"])
    else:
        fitted = getattr(model, "feature_names_in_", None)
        names = ([str(v) for v in fitted] if fitted is not None
                 else [f"x{j}" for j in range(X.shape[1])])
    # Only the gaps are filled: every observed cell is written exactly as read,
    # never passed through the preprocessing and back.
    gaps = np.isnan(X)
    filled = X.copy()
    filled[gaps] = imputed[gaps]
    _write_table(args.out, names, filled)
    how = (f"one draw from the conditional distribution (seed {args.seed})"
           if args.seed is not None else "the conditional expectation")
    print(f"filled {int(gaps.sum())} missing cells in {int(gaps.any(axis=1).sum())} of "
          f"{X.shape[0]} rows with {how}; wrote {args.out}")
    return 0


def _cmd_sample(args) -> int:
    mf, prep = _read_model(args.model)
    _check_output(args.out, inputs=(args.model,))
    model = mf.model
    values = args.n * (model.n_features_in_ + 1)
    if values > np.iinfo(np.intp).max // 8:
        raise CLIError(f"--n {args.n} is too large: {values} values cannot be held in memory")
    Z, y = model.sample(args.n, random_state=args.seed)
    if prep is not None:
        X = _untransform(np.asarray(Z, dtype=np.float64), prep,
                         mf.extra_arrays.get("center"), mf.extra_arrays.get("scale"))
        names = list(prep["columns"])
    else:
        X = np.asarray(Z, dtype=np.float64)
        fitted = getattr(model, "feature_names_in_", None)
        names = ([str(v) for v in fitted] if fitted is not None
                 else [f"x{j}" for j in range(X.shape[1])])
    _write_table(args.out, names + ["component"], np.column_stack([X, y]),
                 integer_columns=(len(names),))
    print(f"wrote {args.n} samples ({len(names)} columns and the component) to {args.out}")
    return 0


def _printable(text) -> str:
    r"""``text`` with every character a terminal would act on escaped.

    Control characters (escape sequences, newlines, carriage returns),
    format characters (bidirectional overrides) and other non-printable
    code points are written as Python escapes (``\x1b``, ``\n``,
    ``\u202e``); printable text, non-ASCII letters included, is unchanged.
    Text read from a model or data file goes through here before it is printed.
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _cmd_info(args) -> int:
    mf, prep = _read_model(args.model)
    meta, model = mf.metadata, mf.model
    p = _printable
    print(f"file: {p(args.model)}")
    print(f"format: {p(meta['format'])} version {meta['format_version']} "
          f"(written by fastgmm {p(meta.get('fastgmm_version', '?'))})")
    print(f"components: {meta['n_components']}   features: {meta['n_features']}   "
          f"covariance: {p(meta['covariance_type'])}   dtype: {p(meta['dtype'])}")
    if meta.get("feature_names"):
        print(f"features: {', '.join(p(n) for n in meta['feature_names'])}")
    if prep is not None:
        steps = [s for s, on in (("log", prep.get("log")),
                                 ("standardise", prep.get("standardize"))) if on]
        print(f"fitted by the command line on {p(prep.get('data'))}, columns "
              f"{', '.join(p(c) for c in prep['columns'])}; "
              f"preprocessing: {', '.join(steps) or 'none'}")
    converged = getattr(model, "converged_", None)
    if converged is not None:
        bound = "lower bound" if hasattr(model, "mean_precision_") else "mean log-likelihood"
        print(f"EM: {'converged' if converged else 'not converged'} after "
              f"{getattr(model, 'n_iter_', '?')} iterations, {bound} "
              f"{getattr(model, 'lower_bound_', float('nan')):.6f}")
    print("weights: " + ", ".join(f"{w:.4f}" for w in np.asarray(model.weights_)))
    return 0


# ----------------------------------------------------------------------------
# parser and entry point
# ----------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _k_value(text: str):
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or 'auto', got {text!r}") from None


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"the seed must be in [0, 2**32), got {value}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="fastgmm", description="Gaussian mixture models fitted by EM "
                     "with Numba kernels.")
    parser.add_argument("--version", action="version", version=f"fastgmm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(p):
        p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")

    def header(p):
        p.add_argument("--header", choices=("auto", "yes", "no"), default="auto",
                       help="whether the first row of a CSV file names the columns "
                       "(default auto: names only, or names above numbers)")

    p = sub.add_parser("demo", prog="fastgmm demo",
                       help="segment the bundled wholesale customers and plot them",
                       description="Fit mixtures to the bundled wholesale-customers data, "
                       "print a segment table and the BIC/AIC tables, and write PNG plots.")
    p.add_argument("--out", default="fastgmm_demo_output", metavar="DIR",
                   help="folder for the plots (default: fastgmm_demo_output)")
    p.add_argument("--quick", action="store_true", help="fewer fits (k = 1..4, 1 restart)")
    p.add_argument("--seed", type=_seed, default=0, metavar="S", help="random seed (default 0)")
    common(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("fit", prog="fastgmm fit",
                       help="fit a mixture to a data file and save the model",
                       description="Fit a Gaussian mixture to DATA (CSV, .npy or Parquet) "
                       "and save it as a model file.")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--k", type=_k_value, required=True,
                   help="number of components, or 'auto' to choose k in 1..9 by BIC")
    p.add_argument("--covariance", choices=COVARIANCE_TYPES, default="full",
                   help="covariance type (default full)")
    p.add_argument("--columns", metavar="a,b,...",
                   help="comma-separated feature columns (default: all but the weight column)")
    p.add_argument("--standardize", action="store_true",
                   help="centre and scale each column (population std)")
    p.add_argument("--log", action="store_true",
                   help="take natural logarithms first (values must be positive)")
    p.add_argument("--sample-weight", metavar="COL", help="column of non-negative row weights")
    p.add_argument("--n-init", type=_positive_int, default=1, metavar="N",
                   help="restarts (default 1)")
    p.add_argument("--max-iter", type=_positive_int, default=100, metavar="N",
                   help="EM iterations per restart (default 100)")
    p.add_argument("--seed", type=_seed, default=None, metavar="S",
                   help="random seed (default: unseeded, except that --k auto uses seed "
                   f"{AUTO_SEED} so that it chooses the same k every run)")
    p.add_argument("--bayesian", action="store_true",
                   help="variational Bayesian mixture: --k is the most components")
    p.add_argument("--missing", action="store_true",
                   help="empty (or NA) cells are missing values: fit by exact "
                   "missing-data EM (see 'fastgmm impute')")
    header(p)
    p.add_argument("--out", required=True, metavar="MODEL", help="model file to write (.npz)")
    common(p)
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("predict", prog="fastgmm predict",
                       help="assign rows of a data file to components",
                       description="Write the most probable component of each row of DATA "
                       "(or, with --proba, every component's probability).  With a model "
                       "fitted with --missing, rows with empty cells are scored on their "
                       "observed columns.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--proba", action="store_true", help="write probabilities p0, p1, ...")
    header(p)
    p.add_argument("--out", required=True, metavar="FILE", help="output .csv or .npy")
    common(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("score", prog="fastgmm score",
                       help="write the log-density of each row of a data file",
                       description="Write the log-density of each row of DATA under the "
                       "model, in the units of DATA (with --log or --standardize, the "
                       "Jacobian of the preprocessing is included), and print its mean.  "
                       "With a model fitted with --missing, a row with empty cells gets the "
                       "density of its observed columns.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    header(p)
    p.add_argument("--out", required=True, metavar="FILE", help="output .csv or .npy")
    common(p)
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("impute", prog="fastgmm impute",
                       help="fill the missing cells of a data file",
                       description="Fill the empty (or NA) cells of the model's columns of "
                       "DATA with their conditional expectation under the model, or with "
                       "--seed one draw from their conditional distribution (multiple "
                       "imputation: repeat with other seeds).")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--seed", type=_seed, default=None, metavar="S",
                   help="draw from the conditional distribution with this seed")
    header(p)
    p.add_argument("--out", required=True, metavar="FILE", help="output .csv or .npy")
    common(p)
    p.set_defaults(func=_cmd_impute)

    p = sub.add_parser("sample", prog="fastgmm sample",
                       help="draw samples from a model",
                       description="Draw N rows from the model, in the units of the data it "
                       "was fitted on, with the component of each.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--n", type=_positive_int, required=True, help="number of samples")
    p.add_argument("--seed", type=_seed, default=None, metavar="S", help="random seed")
    p.add_argument("--out", required=True, metavar="FILE", help="output .csv or .npy")
    common(p)
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("info", prog="fastgmm info",
                       help="describe a model file",
                       description="Describe a model file: format, components, "
                       "preprocessing, convergence and weights.")
    p.add_argument("model", metavar="MODEL")
    common(p)
    p.set_defaults(func=_cmd_info)
    return parser


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "not enough memory" + (f" ({' '.join(str(exc).split())})" if str(exc) else "")
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{_printable(exc.filename)}: no such file"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{_printable(exc.filename)}: {exc.strerror}" if exc.filename else exc.strerror
    text = _printable(" ".join(str(exc).split()))
    return text or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastgmm`` command line; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        prog = exc.prog
        if prog == "fastgmm":
            # The main parser reports a subcommand's unrecognised arguments:
            # name the subcommand all the same.
            command = next((a for a in argv if not a.startswith("-")), None)
            if command in COMMANDS:
                prog = f"fastgmm {command}"
        print(f"{prog}: error: {exc} (see '{prog} --help')", file=sys.stderr)
        return 2
    if args.command is None:
        print(f"fastgmm: error: choose a command: {', '.join(COMMANDS[:-1])} or "
              f"{COMMANDS[-1]} (see 'fastgmm --help')", file=sys.stderr)
        return 2
    stdout = sys.stdout
    guard = _ClosedPipeGuard(stdout)
    sys.stdout = guard
    try:
        status = int(args.func(args) or 0)
        guard.flush()
        return status
    except KeyboardInterrupt:
        print(f"fastgmm {args.command}: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, TypeError, OSError, ImportError, FloatingPointError,
            np.linalg.LinAlgError, MemoryError, OverflowError) as exc:
        print(f"fastgmm {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        sys.stdout = stdout


class _ClosedPipeGuard:
    """Standard output that a closed pipe (``fastgmm fit ... | head -1``) cannot stop.

    The first write or flush that meets a closed pipe points the file
    descriptor at the null device, as Python's documentation advises for
    SIGPIPE, and the command goes on to finish its work quietly: the reader
    has all it wanted.
    """

    def __init__(self, stream):
        self._stream = stream
        self.pipe_closed = False

    def _closed(self) -> None:
        self.pipe_closed = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass  # not a file descriptor (a test's capture): nothing to redirect

    def write(self, text: str) -> int:
        if not self.pipe_closed:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._closed()
        return len(text)

    def flush(self) -> None:
        if not self.pipe_closed:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._closed()

    def __getattr__(self, name):
        return getattr(self._stream, name)


if __name__ == "__main__":
    sys.exit(main())
