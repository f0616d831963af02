"""Model files: save a fitted :class:`~fastgmm.GaussianMixture`, load it back.

A model file is a ZIP archive in NumPy's ``.npz`` layout, so any NumPy can
open it with ``np.load(path, allow_pickle=False)``; nothing in it needs
pickle.  Its members:

``metadata``
    1-D ``uint8`` array holding UTF-8 JSON (described below).
``<attribute>``
    One member per fitted array attribute of the estimator, named after it:
    ``weights_``, ``means_``, ``covariances_``, ``precisions_``,
    ``precisions_cholesky_``, in the model's dtype (float32 or float64).
``param.<name>``
    Array-valued constructor parameters (``weights_init``, ``means_init``,
    ``precisions_init``) when they are set.
``extra.<name>``
    Arrays an application stores beside the model (the command line keeps
    its preprocessing there).

The JSON metadata holds ``format`` (``"fastgmm.GaussianMixture"``),
``format_version`` (an integer, :data:`FORMAT_VERSION`), ``fastgmm_version``,
``covariance_type``, ``dtype``, ``n_components``, ``n_features``,
``feature_names`` (a list, or null), ``params`` (the JSON-representable
constructor parameters), ``params_not_saved`` (the names of those that are
not, such as a ``callback``; they load as their defaults), ``attributes``
(scalar and list fitted attributes: ``converged_``, ``n_iter_``,
``lower_bound_``, ``lower_bounds_``, ``n_features_in_``, ``n_steps_``, and
``fit_missing_``, how the fitted model treats rows with gaps,
``"marginalize"`` or ``"error"``, whatever ``missing`` says; a file
without it, from before, treats them as its ``missing`` parameter says),
``attributes_not_saved`` (names of other fitted attributes, not stored), ``arrays``
(dtype, shape and SHA-256 of every array member), ``extra`` (application
metadata) and ``sha256``, a digest of all the other metadata keys serialised
canonically (sorted keys, no spaces).  The digests detect damaged or edited
files; they are not a signature.

What the files of each estimator hold (the fitted arrays and the shapes the
layout gives them, their dtypes, the attributes, the array-valued parameters,
the value checks, and how the state goes in and out of the estimator) is
declared by the estimator itself: its ``model_schema()``, a
:class:`fastgmm._schema.ModelSchema`.  This module owns the format and reads
and writes every estimator through that declaration and its public
parameters (``get_params``, ``set_params``) alone; the class a ``format``
names comes from :mod:`fastgmm._registry`, so no estimator module is imported
here.

A model file is untrusted data, so :func:`read` checks all of it before an
estimator is built, and every failure is a :class:`ModelFileError` naming
the problem:

* a closed schema: exactly the keys above; only the five fitted arrays,
  ``param.weights_init``, ``param.means_init``, ``param.precisions_init``
  and ``extra.*`` members; only the attributes listed above (and
  ``n_steps_``), each of its type; only the estimator's constructor
  parameters, which must then pass the estimator's own checks and agree with
  the arrays (``n_components``, ``covariance_type``);
* bounded reads: each member's ``.npy`` header is read first (at most
  10,000 bytes; an object dtype is refused as pickled), the metadata is at
  most :data:`MAX_METADATA_BYTES`, nested at most :data:`MAX_JSON_DEPTH`
  deep, with integers of at most :data:`MAX_INT_DIGITS` digits and no
  repeated keys; an unlisted member is refused unread, and a listed one is
  decompressed only once its declared size equals what its header and the
  metadata describe;
* every value: fitted arrays in the model's dtype, of the shapes
  ``n_components``, ``n_features`` and ``covariance_type`` imply, finite;
  weights positive, summing to 1 within :data:`WEIGHT_SUM_TOL`; covariances
  symmetric (to ``CONSISTENCY_ULPS * d * eps`` relative) and positive
  definite; precision factors upper triangular with a positive diagonal (or
  positive), with ``U^T Sigma U = I`` within ``CONSISTENCY_ULPS * d * eps *
  cond(Sigma)`` (``U^2 Sigma = 1`` within ``CONSISTENCY_ULPS * eps`` for
  diag and spherical), and precisions equal to ``U U^T`` within
  ``CONSISTENCY_ULPS * d * eps`` relative; ``eps`` is the machine epsilon of
  the model's dtype; the squared Mahalanobis distance from the origin to each
  mean at most ``2**-64`` times the dtype's largest number (so ordinary rows
  score finitely);
* only a regular file is opened (a FIFO, device or directory is refused
  before any read), and :func:`load` neither decompresses nor returns the
  ``extra.*`` arrays (it checks their listing and declared sizes only).

A :class:`~fastgmm.BayesianGaussianMixture` file has the ``format``
``"fastgmm.BayesianGaussianMixture"`` and the same layout and checks, its own
schema adding: the posterior arrays ``weight_concentration_`` (the Dirichlet
process's two Beta parameter arrays stacked as ``(2, k)``, else ``(k,)``),
``mean_precision_`` ``(k,)`` and ``degrees_of_freedom_`` (``(k,)``, ``()``
tied), in the model's dtype, and the resolved priors ``mean_prior_`` ``(d,)``
and ``covariance_prior_`` (``(d, d)``, ``(d,)`` diag, ``()`` spherical) in
float64; the attributes ``weight_concentration_prior_``,
``mean_precision_prior_``, ``degrees_of_freedom_prior_`` and
``n_effective_components_`` (no ``n_steps_``); its constructor parameters
(``param.mean_prior`` and ``param.covariance_prior`` as arrays).  The values:
concentrations and mean precisions positive, degrees of freedom greater than
``d - 1``, the covariance prior symmetric positive definite (positive), all
finite, the expected log-weights and the E-step's per-component constants
finite (so no extreme posterior value makes every score ``-inf``), and
``weights_`` equal to the weights the concentrations give within
``CONSISTENCY_ULPS * k * eps``, besides the Gaussian checks above.  Loading builds the estimator
class the ``format`` names.

:func:`save` runs the same checks before writing, so it never writes a file
that :func:`read` refuses.

Floats in JSON are written with Python's shortest round-trip representation
and arrays byte for byte, so a saved and reloaded model is identical.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import secrets
import stat
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _exceptions, _registry
from ._params import COVARIANCE_TYPES
from ._schema import (
    CONSISTENCY_ULPS,
    FLOAT64,
    MODEL_DTYPE,
    WEIGHT_SUM_TOL,
    Layout,
    ModelSchema,
)
from ._schema import is_int as _is_int
from ._schema import short_repr as _short
from ._version import __version__

__all__ = ["CONSISTENCY_ULPS", "FORMAT_VERSION", "ModelFile", "ModelFileError", "WEIGHT_SUM_TOL",
           "load", "read", "save"]

#: Version of the model-file layout this fastgmm writes (and the newest it reads).
FORMAT_VERSION = 1

FORMAT_NAME = "fastgmm.GaussianMixture"

#: The ``format`` of each estimator's files, by class name.
FORMAT_NAMES = {cls: fmt for fmt, (_, cls) in _registry.MODEL_FORMATS.items()}
#: The estimator class (in :mod:`fastgmm`) behind each ``format`` name.
FORMAT_CLASSES = {fmt: cls for cls, fmt in FORMAT_NAMES.items()}

#: Largest metadata member read, in bytes of JSON: a model's metadata is a few
#: kilobytes plus about 20 bytes per EM iteration of ``lower_bounds_``.
MAX_METADATA_BYTES = 64 * 2**20

#: Deepest nesting of JSON arrays and objects read (a model's own is 4).
MAX_JSON_DEPTH = 32

#: Longest JSON integer read, in digits (``2**64`` has 20).
MAX_INT_DIGITS = 20

# WEIGHT_SUM_TOL and CONSISTENCY_ULPS, the tolerances of the value checks, are
# fastgmm._schema's (imported above, documented with the format here).

_ZIP_MAGIC = b"PK\x03\x04"
# Fitted attributes are public names with a trailing underscore.
_ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]*_")
# numpy's own limit on the header of a .npy file it reads.
_MAX_NPY_HEADER = 10_000
# Deflate expands at most about 1032-fold (bzip2 and lzma, which fastgmm
# never writes, are refused beyond that too).
_MAX_INFLATION = 1100


class ModelFileError(ValueError):
    """A model file cannot be read: not a model file, damaged, edited or too new."""


@dataclass
class ModelFile:
    """Everything read from a model file.

    Attributes
    ----------
    model : GaussianMixture
        The fitted estimator.
    metadata : dict
        The file's JSON metadata.
    extra_arrays : dict of str to ndarray
        Arrays stored with ``save(..., extra_arrays=...)``.
    """

    model: Any
    metadata: dict
    extra_arrays: dict = field(default_factory=dict)

    @property
    def extra(self) -> dict:
        """Application metadata stored with ``save(..., extra=...)``."""
        return self.metadata.get("extra") or {}



def _fspath(path) -> str:
    """``os.fspath`` with an error that names the argument."""
    try:
        return os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None

def _array_digest(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(arr.dtype.str.encode())
    h.update(repr(tuple(arr.shape)).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _canonical(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"),
                      allow_nan=True).encode("utf-8")


def _meta_digest(meta: dict) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in meta.items()
                                      if k != "sha256"})).hexdigest()


def _json_scalar(value):
    """``value`` as a JSON-ready scalar, or raise TypeError."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(type(value).__name__)


def _json_value(value):
    if isinstance(value, (list, tuple)):
        return [_json_scalar(v) for v in value]
    return _json_scalar(value)


def _numeric_array(value) -> np.ndarray | None:
    if isinstance(value, (str, bytes)) or value is None or callable(value):
        return None
    try:
        arr = np.asarray(value)
    except Exception:
        return None
    if arr.dtype.kind in "biuf" and arr.ndim >= 1:
        return arr
    return None


def _fitted_names(model) -> list[str]:
    return sorted(name for name in vars(model)
                  if name.endswith("_") and not name.startswith("_"))


def save(model, path, *, extra: dict | None = None,
         extra_arrays: dict | None = None) -> None:
    """Write a fitted model to ``path`` (see the module docstring for the format).

    The file is written to a temporary name in the same folder and renamed
    into place, so ``path`` is never left half-written.

    Parameters
    ----------
    model : GaussianMixture
        A fitted estimator.
    path : str or path-like
        Destination; written as given (no suffix is added; ``.npz`` is the
        customary one).
    extra : dict, optional
        JSON-serialisable application metadata stored with the model.
    extra_arrays : dict of str to array-like, optional
        Numeric arrays stored with the model.

    Raises
    ------
    NotFittedError
        ``model`` is not fitted.
    TypeError
        ``model`` is not a GaussianMixture, or ``extra`` is not JSON-serialisable.
    """
    cls = _registry.registered_class(model)
    if cls is None:
        raise TypeError(f"model must be a fastgmm.GaussianMixture or "
                        f"BayesianGaussianMixture, got {type(model).__name__}")
    schema: ModelSchema = cls.model_schema()
    state = schema.fitted(model)  # shapes checked, agreeing with the parameters
    if state is None:
        raise _exceptions.NotFittedError(
            f"cannot save an unfitted {cls.__name__}; call fit first")
    fitted, dtype = state
    fmt = schema.format

    arrays: dict[str, np.ndarray] = {}
    params: dict[str, Any] = {}
    not_saved: list[str] = []
    for name, value in sorted(model.get_params().items()):
        try:
            params[name] = _json_value(value)
            continue
        except TypeError:
            pass
        arr = _numeric_array(value)
        if arr is not None:
            arrays[f"param.{name}"] = np.array(arr)
        else:
            not_saved.append(name)

    attributes: dict[str, Any] = {}
    attributes_not_saved: list[str] = []
    feature_names = None
    for name in _fitted_names(model):
        value = getattr(model, name)
        if name == "feature_names_in_":
            feature_names = [str(v) for v in value]
        elif (spec := schema.array(name)) is not None:
            arrays[name] = np.array(value, dtype=dtype if spec.dtype == MODEL_DTYPE
                                    else np.float64)
        elif schema.attribute(name) is not None:
            try:
                attributes[name] = _json_value(value)
            except TypeError:
                attributes_not_saved.append(name)
        else:
            # The schema is closed: other attributes are named, not stored.
            attributes_not_saved.append(name)

    if schema.fit_attributes is not None:
        # Fitted state the estimator keeps privately (how it treats gaps).
        attributes.update(schema.fit_attributes(model))

    for name, value in (extra_arrays or {}).items():
        arr = _numeric_array(value)
        if arr is None:
            raise TypeError(f"extra_arrays[{name!r}] must be a numeric array")
        arrays[f"extra.{name}"] = np.array(arr)

    meta = {
        "format": fmt,
        "format_version": FORMAT_VERSION,
        "fastgmm_version": __version__,
        "covariance_type": fitted.covariance_type,
        "dtype": dtype.name,
        "n_components": fitted.n_components,
        "n_features": fitted.n_features,
        "feature_names": feature_names,
        "params": params,
        "params_not_saved": not_saved,
        "attributes": attributes,
        "attributes_not_saved": attributes_not_saved,
        "arrays": {name: {"dtype": arr.dtype.str, "shape": list(arr.shape),
                          "sha256": _array_digest(arr)}
                   for name, arr in sorted(arrays.items())},
        "extra": extra if extra is not None else {},
    }
    try:
        _canonical(meta)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"extra metadata must be JSON-serialisable: {exc}") from None
    meta["sha256"] = _meta_digest(meta)
    payload = np.frombuffer(_canonical(meta), dtype=np.uint8)
    if payload.size > MAX_METADATA_BYTES:
        raise ValueError(f"cannot save: the metadata would take {payload.size} bytes, more "
                         f"than the {MAX_METADATA_BYTES} a model file may hold")
    try:
        _parse_metadata(payload.tobytes())
    except ValueError as exc:
        raise ValueError(f"cannot save: the metadata could not be read back ({exc})") from None

    # A file is written only if load would accept it, by the same checks.
    def bad(why):
        raise ValueError(f"cannot save: the model is not valid: {why}")

    _check_metadata(meta, bad)
    _check_values(meta, arrays, bad)
    _build_model(meta, arrays, bad)

    buffer = io.BytesIO()
    np.savez(buffer, metadata=payload, **arrays)
    _atomic_write(path, buffer.getvalue())


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it
    was, so readers never see a half-written file.  The temporary file is
    created with the usual permissions (``0o666`` less the umask).
    """
    path = _fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    while True:
        tmp = os.path.join(folder, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _atomic_write(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


@contextmanager
def _open_archive(path: str):
    """The model file at ``path`` as an open ZIP archive; only a regular file is opened.

    A FIFO, a device or a directory is refused with :class:`ModelFileError`
    before anything is read from it: the path is checked with ``stat``, then
    opened without blocking (opening a FIFO waits for a writer otherwise) and
    checked again on the open descriptor, so a path swapped in between is
    refused too.
    """
    def not_regular(mode: int):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)"
                if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode)
                or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        return ModelFileError(f"{path} is {kind}, not a regular file; a model file is "
                              "a regular file")

    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise not_regular(mode)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise not_regular(mode)
        if f.read(4) != _ZIP_MAGIC:
            raise ModelFileError(f"{path} is not a fastgmm model file "
                                 "(not an .npz archive)")
        f.seek(0)
        try:
            archive = zipfile.ZipFile(f)
        except Exception as exc:
            # zipfile reports a damaged central directory with several types.
            raise ModelFileError(f"{path} is damaged or truncated "
                                 f"({type(exc).__name__}: {exc})") from None
        with archive:
            yield archive


@dataclass
class _Member:
    """One ``.npy`` member of the archive, known from its header alone."""

    info: zipfile.ZipInfo
    shape: tuple
    fortran_order: bool
    dtype: np.dtype
    header_bytes: int

    @property
    def data_bytes(self) -> int:
        return self.dtype.itemsize * math.prod(self.shape)


class _Counted:
    """A file wrapper counting the bytes read (the length of a ``.npy`` header)."""

    def __init__(self, f):
        self.f = f
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.count += len(data)
        return data


def _members(path: str, archive: zipfile.ZipFile) -> dict[str, _Member]:
    """Every member's ``.npy`` header: a bounded read, nothing decompressed beyond it."""
    members: dict[str, _Member] = {}
    for info in archive.infolist():
        name = info.filename
        if not name.endswith(".npy") or info.is_dir():
            raise ModelFileError(f"{path} is not a fastgmm model file (member {name!r} is "
                                 "not a .npy array)")
        if name[:-4] in members:
            raise ModelFileError(f"{path} is not a valid model: member {name!r} appears "
                                 "twice")
        try:
            with archive.open(info) as raw:
                f = _Counted(raw)
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    header = np.lib.format.read_array_header_1_0(
                        f, max_header_size=_MAX_NPY_HEADER)
                elif version == (2, 0):
                    header = np.lib.format.read_array_header_2_0(
                        f, max_header_size=_MAX_NPY_HEADER)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
        except Exception as exc:
            # zipfile, zlib and numpy report truncation, bad CRCs and bad headers
            # with many exception types (BadZipFile, EOFError, zlib.error, ...).
            raise ModelFileError(f"{path} is damaged or truncated (member {name!r}: "
                                 f"{type(exc).__name__}: {exc})") from None
        shape, fortran_order, dtype = header
        if dtype.hasobject:
            raise ModelFileError(f"{path} holds pickled objects; fastgmm model files never "
                                 "do, so it was not written by fastgmm and is refused")
        members[name[:-4]] = _Member(info, tuple(shape), bool(fortran_order), dtype, f.count)
    return members


def _check_declared_size(path: str, name: str, member: _Member) -> None:
    """The size a member's ZIP entry declares must be what its ``.npy`` header describes.

    Nothing is decompressed: the read that follows stops at that size, so a
    member inflates to at most the bytes its (checked) shape takes.
    """
    size = member.data_bytes
    info = member.info
    if info.file_size != member.header_bytes + size:
        raise ModelFileError(f"{path} is damaged: member {name!r} declares "
                             f"{info.file_size} bytes but its header describes "
                             f"{member.header_bytes + size}")
    if info.file_size > _MAX_INFLATION * info.compress_size + _MAX_NPY_HEADER:
        raise ModelFileError(f"{path} is damaged: member {name!r} declares {info.file_size} "
                             f"bytes from {info.compress_size} compressed, more than any "
                             "compression gives")


def _read_data(path: str, archive: zipfile.ZipFile, name: str, member: _Member) -> np.ndarray:
    """The array of a member whose header and declared size were checked.

    Returns a private, writeable, C-contiguous copy (read-only arrays would
    make Numba compile every kernel again for them).
    """
    size = member.data_bytes
    _check_declared_size(path, name, member)
    try:
        buf = bytearray(size)
    except (MemoryError, OverflowError):
        raise ModelFileError(f"{path}: member {name!r} ({size} bytes) is too large to "
                             "read into memory") from None
    try:
        with archive.open(member.info) as f:
            f.read(member.header_bytes)
            view, got = memoryview(buf), 0
            while got < size:
                n = f.readinto(view[got:])
                if not n:
                    break
                got += n
            # Reading past the end makes zipfile check the member's CRC.
            if got != size or f.read(1):
                raise EOFError(f"{got} of {size} data bytes")
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"{path} is damaged or truncated (member {name!r}: "
                             f"{type(exc).__name__}: {exc})") from None
    arr = np.frombuffer(buf, dtype=member.dtype)
    arr = arr.reshape(member.shape, order="F" if member.fortran_order else "C")
    # Not np.ascontiguousarray, which turns a 0-d array into a 1-d one.
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _read_metadata(path: str, archive: zipfile.ZipFile, member: _Member | None) -> dict:
    """Parse the metadata member: bounded size, nesting depth and integer length."""
    if member is None:
        raise ModelFileError(f"{path} is not a fastgmm model file (no metadata member)")
    if member.dtype != np.uint8 or len(member.shape) != 1:
        raise ModelFileError(f"{path} is not a fastgmm model file (bad metadata member)")
    if member.data_bytes > MAX_METADATA_BYTES:
        raise ModelFileError(f"{path} is not a valid model: its metadata holds "
                             f"{member.data_bytes} bytes, more than the "
                             f"{MAX_METADATA_BYTES} allowed")
    raw = _read_data(path, archive, "metadata", member).tobytes()
    try:
        meta = _parse_metadata(raw)
    except ValueError as exc:
        raise ModelFileError(f"{path} has unreadable metadata ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("format"), str) \
            or meta["format"] not in FORMAT_CLASSES:
        raise ModelFileError(f"{path} is not a fastgmm model file "
                             f"(format {meta.get('format') if isinstance(meta, dict) else None!r})")
    return meta


def _parse_metadata(raw: bytes):
    """JSON from UTF-8 bytes, refusing deep nesting, long integers and repeated keys.

    Raises
    ------
    ValueError
        Saying why (``UnicodeDecodeError`` and ``JSONDecodeError`` are ValueErrors).
    """
    text = raw.decode("utf-8")
    try:
        value = json.loads(text, parse_int=_parse_int, object_pairs_hook=_json_object)
    except RecursionError:
        # The parser guards its recursion (no crash), deeper than any limit here.
        raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
    depth = _json_depth(value)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} allowed")
    return value


def _json_depth(value) -> int:
    """Deepest nesting of lists and dicts in parsed JSON (a walk without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits (at most "
                         f"{MAX_INT_DIGITS} allowed)")
    return int(text)


def _json_object(pairs: list) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        keys = [k for k, _ in pairs]
        raise ValueError(f"duplicate key {sorted({k for k in keys if keys.count(k) > 1})[0]!r}")
    return out


def read(path, *, extra_arrays=True) -> ModelFile:
    """Read a model file: the estimator, its metadata and any extra arrays.

    The file is treated as untrusted data: every member and value is checked
    (see the module docstring) before an estimator is built from it.

    Parameters
    ----------
    path : str or path-like
        A regular file (a FIFO, a device or a directory is refused unread).
    extra_arrays : bool or collection of str, default True
        Which ``extra.<name>`` arrays to read: all of them (True), none
        (False), or those named.  Each is read with a bound on its inflated
        size (its shape listed in the metadata); the others are neither
        decompressed nor returned, only their headers and listing checked.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ModelFileError
        Not a fastgmm model file, truncated or damaged, edited (digest
        mismatch), not a valid model (any value or member outside the format,
        or inconsistent), or written with a newer format version than this
        fastgmm reads.
    """
    path = _fspath(path)
    with _open_archive(path) as archive:
        members = _members(path, archive)
        meta = _read_metadata(path, archive, members.pop("metadata", None))
        version = meta.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ModelFileError(f"{path} has an invalid format_version {version!r}")
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"{path} uses model format version {version} (written by fastgmm "
                f"{meta.get('fastgmm_version', '?')}); this fastgmm {__version__} reads "
                f"versions up to {FORMAT_VERSION}. Upgrade fastgmm to load it.")
        if meta.get("sha256") != _meta_digest(meta):
            raise ModelFileError(f"{path} failed its integrity check: the metadata digest "
                                 "does not match, so the file was edited or damaged")

        def bad(why):
            raise ModelFileError(f"{path} is not a valid model: {why}")

        listed = _check_metadata(meta, bad)
        if set(listed) != set(members):
            added = sorted(set(members) - set(listed))
            missing = sorted(set(listed) - set(members))
            raise ModelFileError(f"{path} failed its integrity check: arrays "
                                 f"{'added ' + str(added) if added else ''}"
                                 f"{' missing ' + str(missing) if missing else ''}".rstrip())
        for name, member in members.items():
            if member.dtype != listed[name][0] or member.shape != listed[name][1]:
                raise ModelFileError(f"{path} failed its integrity check: array {name!r} "
                                     "does not match its recorded digest, so the file was "
                                     "edited or damaged")
        # Every size is now known and consistent with the metadata: read the data
        # (the extra arrays only when asked for: they are the application's).
        arrays = {}
        for name, member in members.items():
            _check_declared_size(path, name, member)
        for name, member in members.items():
            if name.startswith("extra.") and not _wanted(extra_arrays, name[len("extra."):]):
                continue
            arr = _read_data(path, archive, name, member)
            if _array_digest(arr) != listed[name][2]:
                raise ModelFileError(f"{path} failed its integrity check: array {name!r} "
                                     "does not match its recorded digest, so the file was "
                                     "edited or damaged")
            arrays[name] = arr.astype(arr.dtype.newbyteorder("="), copy=False)
    _check_values(meta, arrays, bad)
    model = _build_model(meta, arrays, bad)
    extra_arrays = {name[6:]: arr for name, arr in arrays.items() if name.startswith("extra.")}
    return ModelFile(model, meta, extra_arrays)


def _wanted(extra_arrays, name: str) -> bool:
    """Whether ``read(..., extra_arrays=...)`` asks for the extra array ``name``."""
    if isinstance(extra_arrays, bool):
        return extra_arrays
    return name in extra_arrays


# ----------------------------------------------------------------------------
# the closed schema
# ----------------------------------------------------------------------------


_TOP_KEYS = frozenset({
    "format", "format_version", "fastgmm_version", "covariance_type", "dtype",
    "n_components", "n_features", "feature_names", "params", "params_not_saved",
    "attributes", "attributes_not_saved", "arrays", "extra", "sha256"})
_ARRAY_INFO_KEYS = frozenset({"dtype", "shape", "sha256"})
_DTYPE_TEXT = re.compile(r"[<>|=]?[biuf][0-9]{1,2}")
_SHA256_TEXT = re.compile(r"[0-9a-f]{64}")


def _schema_of(fmt: str) -> ModelSchema:
    """The schema of the files of format ``fmt``, declared by its estimator class."""
    return _registry.model_class(fmt).model_schema()


def _param_names(fmt: str = FORMAT_NAME) -> list[str]:
    """The constructor parameters of the estimator of format ``fmt``."""
    return sorted(_registry.model_class(fmt)().get_params())


def _layout(meta: dict, schema: ModelSchema, bad) -> Layout:
    """What the shapes of the file's arrays follow from (its metadata checked)."""
    return Layout(meta["covariance_type"], meta["n_components"], meta["n_features"],
                  meta["dtype"], schema.layout_options(meta["params"], bad))


def _check_metadata(meta: dict, bad) -> dict[str, tuple]:
    """Check every metadata key and value; returns ``{array: (dtype, shape, sha256)}``.

    Only the metadata is read so far: the expected shape of every array
    follows from it, so no member is decompressed before its size is known.
    """
    unknown = sorted(set(meta) - _TOP_KEYS)
    if unknown:
        bad(f"unknown metadata key(s) {unknown}")
    missing = sorted(_TOP_KEYS - set(meta))
    if missing:
        bad(f"the metadata lacks {missing}")
    if not isinstance(meta["fastgmm_version"], str):
        bad(f"fastgmm_version must be a string, got {meta['fastgmm_version']!r}")
    ctype, k, d = meta["covariance_type"], meta["n_components"], meta["n_features"]
    if ctype not in COVARIANCE_TYPES:
        bad(f"unknown covariance_type {ctype!r}")
    if not (_is_int(k) and _is_int(d) and k >= 1 and d >= 1):
        bad(f"n_components={k!r}, n_features={d!r}")
    dtype = meta["dtype"]
    if dtype not in ("float32", "float64"):
        bad(f"dtype {dtype!r} (expected float32 or float64)")
    names = meta["feature_names"]
    if names is not None and not (isinstance(names, list) and len(names) == d
                                  and all(isinstance(n, str) for n in names)):
        bad(f"feature_names has {len(names) if isinstance(names, list) else '?'} entries "
            f"for {d} features (expected null or a list of {d} strings)")
    if not isinstance(meta["extra"], dict):
        bad("extra must be a JSON object")

    schema = _schema_of(meta["format"])
    param_names = set(_param_names(meta["format"]))
    params = meta["params"]
    if not isinstance(params, dict):
        bad("params must be a JSON object")
    for name, value in params.items():
        if name not in param_names:
            bad(f"unknown constructor parameter {name!r}")
        items = value if isinstance(value, list) else [value]
        if not all(v is None or isinstance(v, (bool, int, float, str)) for v in items):
            bad(f"parameter {name!r} must be a number, string, boolean, null or a flat list")
    not_saved = meta["params_not_saved"]
    if not (isinstance(not_saved, list) and all(isinstance(n, str) for n in not_saved)):
        bad("params_not_saved must be a list of parameter names")
    for name in not_saved:
        if name not in param_names or name in params:
            bad(f"params_not_saved names {name!r}, which is not an unsaved parameter")

    attributes = meta["attributes"]
    if not isinstance(attributes, dict):
        bad("attributes must be a JSON object")
    for name, value in attributes.items():
        if not _ATTRIBUTE_NAME.fullmatch(name):
            bad(f"{name!r} is not a fitted-attribute name")
        spec = schema.attribute(name)
        if spec is None:
            bad(f"unknown fitted attribute {name!r} (a file may hold "
                f"{', '.join(sorted(f.name for f in schema.attributes))})")
        if not spec.check(value):
            bad(f"{name} must be {spec.expected}, got {_short(value)}")
    n_in = attributes.get("n_features_in_")
    if n_in != d:
        bad(f"n_features_in_={n_in!r} but the means have {d} features")
    unsaved = meta["attributes_not_saved"]
    if not (isinstance(unsaved, list) and all(isinstance(n, str)
                                              and _ATTRIBUTE_NAME.fullmatch(n)
                                              for n in unsaved)):
        bad("attributes_not_saved must be a list of fitted-attribute names")

    table = meta["arrays"]
    if not isinstance(table, dict):
        bad("arrays must be a JSON object")
    layout = _layout(meta, schema, bad)
    fitted_shapes = schema.array_shapes(layout, MODEL_DTYPE)
    prior_shapes = schema.array_shapes(layout, FLOAT64)
    param_shapes = schema.param_shapes(layout)
    for spec in schema.arrays:
        if spec.name not in table:
            bad(f"the array {spec.name!r} is missing")
    listed = {}
    for name, info in table.items():
        if not (isinstance(info, dict) and set(info) == _ARRAY_INFO_KEYS
                and isinstance(info["dtype"], str) and _DTYPE_TEXT.fullmatch(info["dtype"])
                and isinstance(info["shape"], list) and all(_is_int(n) and n >= 0
                                                            for n in info["shape"])
                and isinstance(info["sha256"], str) and _SHA256_TEXT.fullmatch(info["sha256"])):
            bad(f"the entry of array {name!r} must hold exactly dtype, shape and sha256")
        try:
            arr_dtype = np.dtype(info["dtype"])
        except TypeError:
            bad(f"array {name!r} has an unknown dtype {info['dtype']!r}")
        shape = tuple(info["shape"])
        if name in fitted_shapes:
            if shape != fitted_shapes[name]:
                bad(f"{name} has shape {shape}, expected {fitted_shapes[name]} for "
                    f"{ctype} covariances with k={k}, d={d}")
            if arr_dtype.name != dtype:
                bad(f"{name} has dtype {arr_dtype.name}, expected {dtype}")
        elif name in prior_shapes:
            if shape != prior_shapes[name]:
                bad(f"{name} has shape {shape}, expected {prior_shapes[name]} for "
                    f"{ctype} covariances with d={d}")
            if arr_dtype.name != "float64":
                bad(f"{name} has dtype {arr_dtype.name}, expected float64")
        elif name.startswith("param."):
            pname = name[len("param."):]
            if pname not in param_shapes:
                bad(f"unknown array parameter {name!r} (a file may hold "
                    f"{', '.join('param.' + n for n in param_shapes)})")
            if pname in params or pname in not_saved:
                bad(f"parameter {pname!r} is stored twice")
            if shape != param_shapes[pname]:
                bad(f"{pname} has shape {shape}, expected {param_shapes[pname]} for "
                    f"{ctype} covariances with k={k}, d={d}")
        elif not (name.startswith("extra.") and len(name) > len("extra.")):
            bad(f"unknown array {name!r} (a file holds the fitted arrays, 'param.<name>' "
                "and 'extra.<name>')")
        listed[name] = (arr_dtype, shape, info["sha256"])
    return listed


def _check_values(meta: dict, arrays: dict, bad) -> None:
    """The fitted arrays must describe a valid model, consistently.

    Every array finite, then the value checks of the estimator's schema (for
    every mixture :func:`fastgmm._schema.check_gaussian_values`: weights
    positive and summing to 1 within :data:`WEIGHT_SUM_TOL`; covariances
    symmetric and positive definite; precision factors upper triangular
    with a positive diagonal, or positive, inverting the covariances and
    giving the precisions within the tolerances of :data:`CONSISTENCY_ULPS`).
    """
    schema = _schema_of(meta["format"])
    for spec in schema.arrays:
        if not np.isfinite(arrays[spec.name]).all():
            bad(f"{spec.name} contains NaN or infinity")
    layout = _layout(meta, schema, bad)
    # Forged finite values can overflow in the checks' products; the checks
    # then see infinities or NaNs, which they refuse, so no warning is due.
    with np.errstate(all="ignore"):
        for check in schema.value_checks:
            try:
                check(layout, arrays, meta["attributes"], bad)
            except np.linalg.LinAlgError as exc:
                # LAPACK gives up on values far outside any fitted model's.
                bad(f"its arrays hold values no decomposition can handle ({exc})")


def _build_model(meta: dict, arrays: dict, bad):
    """The estimator, after its constructor parameters pass its own checks."""
    ctype, k, d = meta["covariance_type"], meta["n_components"], meta["n_features"]
    cls = _registry.model_class(meta["format"])
    schema: ModelSchema = cls.model_schema()
    model = cls()
    params = dict(meta["params"])
    params.update({name[len("param."):]: arr for name, arr in arrays.items()
                   if name.startswith("param.")})
    model.set_params(**params)
    try:
        schema.check_params(model)
    except (TypeError, ValueError) as exc:
        bad(f"invalid constructor parameter: {exc}")
    if model.covariance_type != ctype:
        bad(f"the parameters say covariance_type={model.covariance_type!r} but the arrays "
            f"hold {ctype} covariances")
    if model.n_components != k:
        bad(f"the parameters say n_components={model.n_components!r} but the arrays hold "
            f"{k} components")
    try:
        schema.check_array_params(model, d)
    except (TypeError, ValueError) as exc:
        bad(f"invalid constructor parameter: {exc}")
    schema.restore(model, _layout(meta, schema, bad),
                   {spec.name: arrays[spec.name] for spec in schema.arrays},
                   dict(meta["attributes"]))
    if meta["feature_names"] is not None:
        model.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)
    return model


def load(path):
    """Load a model saved with :meth:`GaussianMixture.save <fastgmm.GaussianMixture.save>`.

    Needs no pickle: the file is read with ``np.load(..., allow_pickle=False)``
    and its JSON metadata, and checked against the digests it records.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    GaussianMixture
        Fitted, identical to the saved one (constructor parameters that
        cannot be stored, such as a ``callback``, take their defaults).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ModelFileError
        A subclass of ``ValueError``: not a fastgmm model file, truncated or
        damaged, edited, or written in a newer format version.

    Examples
    --------
    >>> import os, tempfile, numpy as np, fastgmm
    >>> X = np.random.default_rng(0).normal(size=(200, 3))
    >>> model = fastgmm.fit(X, n_components=2, random_state=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> model.save(path)
    >>> same = fastgmm.load(path)
    >>> np.array_equal(same.means_, model.means_) and same.get_params() == model.get_params()
    True
    """
    # The extra arrays are the application's: load neither inflates nor returns them.
    return read(path, extra_arrays=False).model
