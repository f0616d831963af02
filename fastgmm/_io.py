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
``lower_bound_``, ``lower_bounds_``, ``n_features_in_``), ``arrays``
(dtype, shape and SHA-256 of every array member), ``extra`` (application
metadata) and ``sha256``, a digest of all the other metadata keys serialised
canonically (sorted keys, no spaces).  The digests detect damaged or edited
files; they are not a signature.

Floats in JSON are written with Python's shortest round-trip representation
and arrays byte for byte, so a saved and reloaded model is identical.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _exceptions

__all__ = ["FORMAT_VERSION", "ModelFile", "ModelFileError", "load", "read", "save"]

#: Version of the model-file layout this fastgmm writes (and the newest it reads).
FORMAT_VERSION = 1

FORMAT_NAME = "fastgmm.GaussianMixture"
#: The estimator class (in :mod:`fastgmm`) behind each ``format`` name.
FORMAT_CLASSES = {FORMAT_NAME: "GaussianMixture",
                  "fastgmm.BayesianGaussianMixture": "BayesianGaussianMixture"}

_ZIP_MAGIC = b"PK\x03\x04"
# Fitted attributes are public names with a trailing underscore.
_ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]*_")
_REQUIRED_ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


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
    from . import __version__
    from ._estimator import _MixtureBase

    if not isinstance(model, _MixtureBase):
        raise TypeError(f"model must be a fastgmm.GaussianMixture, got {type(model).__name__}")
    if not model.__sklearn_is_fitted__():
        raise _exceptions.NotFittedError(
            f"cannot save an unfitted {type(model).__name__}; call fit first")

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
            continue
        if isinstance(value, tuple) and all(isinstance(v, np.ndarray) for v in value):
            value = np.stack(value)  # Beta parameters; the estimator's _after_load splits them
        if isinstance(value, np.ndarray):
            if value.dtype.kind in "biuf":
                arrays[name] = np.array(value)
            else:
                attributes_not_saved.append(name)
            continue
        try:
            attributes[name] = _json_value(value)
        except TypeError:
            attributes_not_saved.append(name)

    for name, value in (extra_arrays or {}).items():
        arr = _numeric_array(value)
        if arr is None:
            raise TypeError(f"extra_arrays[{name!r}] must be a numeric array")
        arrays[f"extra.{name}"] = np.array(arr)

    means = model.means_
    meta = {
        "format": f"fastgmm.{type(model).__name__}",
        "format_version": FORMAT_VERSION,
        "fastgmm_version": __version__,
        "covariance_type": model.covariance_type,
        "dtype": str(means.dtype),
        "n_components": int(means.shape[0]),
        "n_features": int(means.shape[1]),
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
    except (TypeError, ValueError) as exc:
        raise TypeError(f"extra metadata must be JSON-serialisable: {exc}") from None
    meta["sha256"] = _meta_digest(meta)
    payload = np.frombuffer(_canonical(meta), dtype=np.uint8)

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


def _read_members(path) -> dict[str, np.ndarray]:
    path = _fspath(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head != _ZIP_MAGIC:
        raise ModelFileError(f"{path} is not a fastgmm model file "
                             "(not an .npz archive)")
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ModelFileError(f"{path} holds pickled objects; fastgmm model files never "
                                 "do, so it was not written by fastgmm and is refused") from None
        raise ModelFileError(f"{path} is damaged or truncated ({exc})") from None
    except Exception as exc:
        # zipfile, zlib and numpy report truncation, bad CRCs and bad headers
        # with many exception types (BadZipFile, EOFError, zlib.error, ...).
        raise ModelFileError(f"{path} is damaged or truncated "
                             f"({type(exc).__name__}: {exc})") from None


def read(path) -> ModelFile:
    """Read a model file: the estimator, its metadata and any extra arrays.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ModelFileError
        Not a fastgmm model file, truncated or damaged, edited (digest
        mismatch or inconsistent content), or written with a newer format
        version than this fastgmm reads.
    """
    import fastgmm

    from . import __version__

    path = _fspath(path)
    members = _read_members(path)
    if "metadata" not in members:
        raise ModelFileError(f"{path} is not a fastgmm model file (no metadata member)")
    raw = members.pop("metadata")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"{path} is not a fastgmm model file (bad metadata member)")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path} has unreadable metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") not in FORMAT_CLASSES:
        raise ModelFileError(f"{path} is not a fastgmm model file "
                             f"(format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} uses model format version {version} (written by fastgmm "
            f"{meta.get('fastgmm_version', '?')}); this fastgmm {__version__} reads versions "
            f"up to {FORMAT_VERSION}. Upgrade fastgmm to load it.")
    if meta.get("sha256") != _meta_digest(meta):
        raise ModelFileError(f"{path} failed its integrity check: the metadata digest does "
                             "not match, so the file was edited or damaged")
    listed = meta.get("arrays", {})
    if set(listed) != set(members):
        extra_names = sorted(set(members) - set(listed))
        missing = sorted(set(listed) - set(members))
        raise ModelFileError(f"{path} failed its integrity check: arrays "
                             f"{'added ' + str(extra_names) if extra_names else ''}"
                             f"{' missing ' + str(missing) if missing else ''}".rstrip())
    for name, arr in members.items():
        info = listed[name]
        if (arr.dtype.str != info.get("dtype") or list(arr.shape) != info.get("shape")
                or _array_digest(arr) != info.get("sha256")):
            raise ModelFileError(f"{path} failed its integrity check: array {name!r} does "
                                 "not match its recorded digest, so the file was edited "
                                 "or damaged")

    _check_consistent(path, meta, members)

    model = getattr(fastgmm, FORMAT_CLASSES[meta["format"]])()
    valid = set(model._get_param_names())
    params = {k: v for k, v in meta.get("params", {}).items() if k in valid}
    for name, arr in members.items():
        if name.startswith("param.") and name[6:] in valid:
            params[name[6:]] = arr
    model.set_params(**params)
    for name, value in meta.get("attributes", {}).items():
        setattr(model, name, value)
    for name, arr in members.items():
        if not name.startswith(("param.", "extra.")):
            setattr(model, name, arr)
    if meta.get("feature_names") is not None:
        model.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)
    if hasattr(model, "_after_load"):
        model._after_load()
    extra_arrays = {name[6:]: arr for name, arr in members.items()
                    if name.startswith("extra.")}
    return ModelFile(model, meta, extra_arrays)


def _check_consistent(path: str, meta: dict, members: dict) -> None:
    """Shapes, dtypes and values must describe a valid mixture."""
    def bad(why):
        return ModelFileError(f"{path} is not a valid model: {why}")

    for name in _REQUIRED_ARRAYS:
        if name not in members:
            raise bad(f"the array {name!r} is missing")
    ctype = meta.get("covariance_type")
    k, d = meta.get("n_components"), meta.get("n_features")
    if ctype not in ("full", "tied", "diag", "spherical"):
        raise bad(f"unknown covariance_type {ctype!r}")
    if not (isinstance(k, int) and isinstance(d, int) and k >= 1 and d >= 1):
        raise bad(f"n_components={k!r}, n_features={d!r}")
    dtype = meta.get("dtype")
    if dtype not in ("float32", "float64"):
        raise bad(f"dtype {dtype!r} (expected float32 or float64)")
    cov_shape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[ctype]
    shapes = {"weights_": (k,), "means_": (k, d), "covariances_": cov_shape,
              "precisions_": cov_shape, "precisions_cholesky_": cov_shape}
    for name, shape in shapes.items():
        arr = members.get(name)
        if arr is None:
            continue
        if arr.shape != shape:
            raise bad(f"{name} has shape {arr.shape}, expected {shape} for "
                      f"{ctype} covariances with k={k}, d={d}")
        if str(arr.dtype) != dtype:
            raise bad(f"{name} has dtype {arr.dtype}, expected {dtype}")
        if not np.isfinite(arr).all():
            raise bad(f"{name} contains NaN or infinity")
    for name in list(meta.get("attributes", {})) + [m for m in members
                                                    if not m.startswith(("param.", "extra."))]:
        if not _ATTRIBUTE_NAME.fullmatch(name):
            raise bad(f"{name!r} is not a fitted-attribute name")
    n_in = meta.get("attributes", {}).get("n_features_in_", d)
    if n_in != d:
        raise bad(f"n_features_in_={n_in!r} but the means have {d} features")
    w = members["weights_"].astype(np.float64)
    if (w < 0).any() or abs(w.sum() - 1.0) > 1e-4:
        raise bad("the component weights are not a probability vector")
    names = meta.get("feature_names")
    if names is not None and (not isinstance(names, list) or len(names) != d):
        raise bad(f"feature_names has {len(names) if isinstance(names, list) else '?'} "
                  f"entries for {d} features")


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
    return read(path).model
