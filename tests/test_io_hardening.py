"""Crafted model files: every one is refused with ModelFileError before any use.

Each file here is built as an attacker would: a ZIP archive written with
:mod:`zipfile`, ``.npy`` members, JSON metadata, and every digest recomputed
(the digests detect damage, they are not a signature).  Nothing of fastgmm's
own writer is used, so the loader cannot rely on the writer's habits.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastgmm
from fastgmm import ModelFileError

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


# ---------------------------------------------------------------------------
# an attacker's toolkit
# ---------------------------------------------------------------------------


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


def _digest(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(arr.dtype.str.encode())
    h.update(repr(tuple(arr.shape)).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _canonical(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()


def _open(path):
    """(metadata, arrays) of a model file, read with zipfile and numpy only."""
    with zipfile.ZipFile(path) as zf:
        members = {info.filename[:-4]: np.lib.format.read_array(io.BytesIO(zf.read(info)))
                   for info in zf.infolist()}
    meta = json.loads(members.pop("metadata").tobytes())
    return meta, members


def _craft(path, meta: dict, arrays: dict, *, table: bool = True, digest: bool = True,
           raw_metadata: bytes | None = None, members: dict | None = None,
           compression=zipfile.ZIP_STORED) -> None:
    """Write a model file: the arrays listed in the metadata, all digests fresh.

    ``table`` rewrites the metadata's ``arrays`` entry from ``arrays``;
    ``raw_metadata`` replaces the JSON text; ``members`` adds raw ``.npy``
    bytes under names of one's choosing (listed nowhere).
    """
    meta = copy.deepcopy(meta)
    if table:
        meta["arrays"] = {name: {"dtype": arr.dtype.str, "shape": list(arr.shape),
                                 "sha256": _digest(arr)} for name, arr in arrays.items()}
    if digest:
        meta.pop("sha256", None)
        meta["sha256"] = hashlib.sha256(_canonical(meta)).hexdigest()
    text = raw_metadata if raw_metadata is not None else _canonical(meta)
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("metadata.npy", _npy(np.frombuffer(text, dtype=np.uint8)))
        for name, arr in arrays.items():
            zf.writestr(f"{name}.npy", _npy(arr))
        for name, blob in (members or {}).items():
            zf.writestr(name, blob)


def _data(seed=0, n=400):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal([0.0, 0.0], 1.0, (n // 2, 2)),
                      rng.normal([5.0, 3.0], [1.0, 0.5], (n - n // 2, 2))])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """One fitted 2-component, 2-feature model file per covariance type."""
    folder = tmp_path_factory.mktemp("crafted")
    X = _data()
    out = {}
    for ctype in COVARIANCE_TYPES:
        model = fastgmm.GaussianMixture(2, covariance_type=ctype, random_state=0).fit(X)
        path = folder / f"{ctype}.npz"
        model.save(path)
        out[ctype] = (model, path)
    return X, out


@pytest.fixture
def base(models):
    """(metadata, arrays, X, model) of the full-covariance file, fresh copies."""
    X, files = models
    model, path = files["full"]
    meta, arrays = _open(path)
    return meta, arrays, X, model


def _refused(path, match):
    with pytest.raises(ModelFileError, match=match):
        fastgmm.load(path)


# ---------------------------------------------------------------------------
# the cases of the issue
# ---------------------------------------------------------------------------


def test_the_crafting_toolkit_makes_loadable_files(tmp_path, base):
    meta, arrays, X, model = base
    _craft(tmp_path / "same.npz", meta, arrays)
    loaded = fastgmm.load(tmp_path / "same.npz")
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))


@pytest.mark.parametrize("n_features_in", [3, 20000])
def test_n_features_in_beyond_the_means_is_refused(tmp_path, base, n_features_in):
    meta, arrays, X, model = base
    # As an array member named like a fitted attribute (loaded and set before).
    _craft(tmp_path / "member.npz", meta, dict(arrays, n_features_in_=np.array(n_features_in)))
    _refused(tmp_path / "member.npz", r"unknown array 'n_features_in_'")
    # As a metadata attribute.
    meta["attributes"]["n_features_in_"] = n_features_in
    _craft(tmp_path / "attr.npz", meta, arrays)
    _refused(tmp_path / "attr.npz", rf"n_features_in_={n_features_in} but the means have 2")


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_covariances_that_are_not_positive_definite_are_refused(tmp_path, models, ctype):
    _, files = models
    meta, arrays = _open(files[ctype][1])
    arrays["covariances_"] = -arrays["covariances_"]
    _craft(tmp_path / "neg.npz", meta, arrays)
    _refused(tmp_path / "neg.npz", r"covariances_ (is not positive definite|has a variance "
             r"that is not positive)")


def test_asymmetric_covariance_is_refused(tmp_path, base):
    meta, arrays, _, _ = base
    arrays["covariances_"][1, 0, 1] += 0.25
    _craft(tmp_path / "asym.npz", meta, arrays)
    _refused(tmp_path / "asym.npz", r"covariances_ is not symmetric \(component 1\)")


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_precision_factors_that_disagree_with_the_covariances_are_refused(tmp_path, models,
                                                                          ctype):
    _, files = models
    meta, arrays = _open(files[ctype][1])
    arrays["precisions_cholesky_"] = arrays["precisions_cholesky_"] * 2.0
    arrays["precisions_"] = arrays["precisions_"] * 4.0  # consistent with the factor
    _craft(tmp_path / "chol.npz", meta, arrays)
    _refused(tmp_path / "chol.npz", r"precisions_cholesky_ does not match covariances_")


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_precisions_that_disagree_with_their_factors_are_refused(tmp_path, models, ctype):
    _, files = models
    meta, arrays = _open(files[ctype][1])
    arrays["precisions_"] = arrays["precisions_"] * 1.01
    _craft(tmp_path / "prec.npz", meta, arrays)
    _refused(tmp_path / "prec.npz", r"precisions_ is not precisions_cholesky_")


def test_a_lower_triangular_precision_factor_is_refused(tmp_path, base):
    meta, arrays, _, _ = base
    arrays["precisions_cholesky_"] = np.ascontiguousarray(
        np.swapaxes(arrays["precisions_cholesky_"], 1, 2))
    _craft(tmp_path / "lower.npz", meta, arrays)
    _refused(tmp_path / "lower.npz", r"not upper triangular with a positive diagonal")


@pytest.mark.parametrize("weights, why", [
    ([1.5, -0.5], "a weight is not positive"),
    ([0.5, 0.6], "they sum to 1.1"),
    ([1.0, 0.0], "a weight is not positive"),
])
def test_weights_must_be_positive_and_sum_to_one(tmp_path, base, weights, why):
    meta, arrays, _, _ = base
    arrays["weights_"] = np.array(weights)
    _craft(tmp_path / "w.npz", meta, arrays)
    _refused(tmp_path / "w.npz", why)


def test_non_finite_parameters_are_refused(tmp_path, base):
    meta, arrays, _, _ = base
    arrays["means_"][0, 1] = np.nan
    _craft(tmp_path / "nan.npz", meta, arrays)
    _refused(tmp_path / "nan.npz", r"means_ contains NaN or infinity")


@pytest.mark.parametrize("key, value, match", [
    ("covariance_type", "diag", r"the parameters say covariance_type='diag' but the arrays "
                                r"hold full covariances"),
    ("n_components", 7, r"the parameters say n_components=7 but the arrays hold 2"),
    ("max_iter", "abc", r"invalid constructor parameter: max_iter must be an integer"),
    ("tol", -1.0, r"invalid constructor parameter: tol must be >= 0"),
    ("learning_decay", 3.0, r"invalid constructor parameter: learning_decay must be <= 1"),
    ("random_state", 2**40, r"invalid constructor parameter: random_state"),
    ("callback", "print", r"invalid constructor parameter: callback must be callable"),
    ("init_params", "magic", r"invalid constructor parameter: init_params"),
    ("weights_init", [0.2, 0.2, 0.6], r"invalid constructor parameter: weights_init has "
                                      r"shape \(3,\)"),
    ("no_such_param", 1, r"unknown constructor parameter 'no_such_param'"),
    ("verbose", {"a": 1}, r"parameter 'verbose' must be a number"),
])
def test_constructor_parameters_pass_the_estimators_own_checks(tmp_path, base, key, value,
                                                               match):
    meta, arrays, _, _ = base
    meta["params"][key] = value
    _craft(tmp_path / "p.npz", meta, arrays)
    _refused(tmp_path / "p.npz", match)


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update(attributes=[1, 2]), r"attributes must be a JSON object"),
    (lambda m: m.update(params="x"), r"params must be a JSON object"),
    (lambda m: m.update(extra=[1]), r"extra must be a JSON object"),
    (lambda m: m.update(arrays_bad=1), r"unknown metadata key\(s\) \['arrays_bad'\]"),
    (lambda m: m.pop("params_not_saved"), r"the metadata lacks \['params_not_saved'\]"),
    (lambda m: m.update(feature_names=[1, [2]]), r"feature_names"),
    (lambda m: m.update(n_features=True), r"n_features=True"),
    (lambda m: m["attributes"].update(foo_=1), r"unknown fitted attribute 'foo_'"),
    (lambda m: m["attributes"].update(converged_="yes"), r"converged_ must be true or false"),
    (lambda m: m["attributes"].update(lower_bounds_=[0.5, "x"]), r"lower_bounds_ must be"),
    (lambda m: m["attributes"].update(n_iter_=-1), r"n_iter_ must be a non-negative"),
    (lambda m: m.update(params_not_saved=["bogus"]),
     r"params_not_saved names 'bogus'"),
    (lambda m: m.update(fastgmm_version=1), r"fastgmm_version must be a string"),
])
def test_metadata_of_the_wrong_json_shape_is_refused(tmp_path, base, edit, match):
    meta, arrays, _, _ = base
    edit(meta)
    _craft(tmp_path / "m.npz", meta, arrays)
    _refused(tmp_path / "m.npz", match)


@pytest.mark.parametrize("text, match", [
    (b'{"format":"fastgmm.GaussianMixture","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     r"JSON nested more than 32 levels deep"),
    (b'{"format":"fastgmm.GaussianMixture","x":' + b"[" * 40 + b"]" * 40 + b"}",
     r"JSON nested 41 levels deep; at most 32 allowed"),
    (b'{"format":"fastgmm.GaussianMixture","format_version":' + b"9" * 5000 + b"}",
     r"an integer of 5000 digits"),
    (b'{"format":"fastgmm.GaussianMixture","format":"fastgmm.GaussianMixture"}',
     r"duplicate key 'format'"),
    (b'{"format":"fastgmm.GaussianMixture", "x": "\xff"}', r"unreadable metadata"),
    (b'[1, 2]', r"not a fastgmm model file"),
])
def test_unreadable_metadata_is_a_model_file_error(tmp_path, base, text, match):
    meta, arrays, _, _ = base
    _craft(tmp_path / "raw.npz", meta, arrays, raw_metadata=text)
    _refused(tmp_path / "raw.npz", match)


def test_arrays_must_have_the_shapes_the_metadata_implies(tmp_path, models):
    path = models[1]["full"][1]
    meta, arrays = _open(path)
    arrays["means_"] = np.zeros((2, 3))
    _craft(tmp_path / "shape.npz", meta, arrays)
    _refused(tmp_path / "shape.npz", r"means_ has shape \(2, 3\), expected \(2, 2\)")
    meta, arrays = _open(path)
    arrays["weights_"] = arrays["weights_"].astype(np.float32)
    _craft(tmp_path / "dtype.npz", meta, arrays)
    _refused(tmp_path / "dtype.npz", r"weights_ has dtype float32, expected float64")
    meta, arrays = _open(path)
    _craft(tmp_path / "param.npz", meta, dict(arrays, **{"param.bogus": np.zeros(2)}))
    _refused(tmp_path / "param.npz", r"unknown array parameter 'param.bogus'")
    meta, arrays = _open(path)
    del arrays["precisions_"]
    _craft(tmp_path / "missing.npz", meta, arrays)
    _refused(tmp_path / "missing.npz", r"the array 'precisions_' is missing")


def test_every_member_must_be_a_listed_npy_array(tmp_path, base):
    meta, arrays, _, _ = base
    _craft(tmp_path / "txt.npz", meta, arrays, members={"readme.txt": b"hello"})
    _refused(tmp_path / "txt.npz", r"member 'readme.txt' is not a \.npy array")
    evil = io.BytesIO()
    np.lib.format.write_array(evil, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _craft(tmp_path / "obj.npz", meta, arrays, members={"evil.npy": evil.getvalue()})
    _refused(tmp_path / "obj.npz", r"pickled objects")


# ---------------------------------------------------------------------------
# bounded reads
# ---------------------------------------------------------------------------


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_an_unlisted_compressed_member_is_refused_without_decompressing_it(tmp_path, base):
    meta, arrays, _, _ = base
    zeros = _npy(np.zeros(40 * 2**20 // 8))            # 40 MB of zeros, ~40 KB deflated
    path = tmp_path / "bomb.npz"
    _craft(path, meta, arrays, members={"zeros.npy": zeros},
           compression=zipfile.ZIP_DEFLATED)
    del zeros
    assert path.stat().st_size < 2**20

    def load():
        with pytest.raises(ModelFileError, match=r"arrays added \['zeros'\]"):
            fastgmm.load(path)

    assert _peak_bytes(load) < 4 * 2**20


def test_a_member_larger_than_its_header_says_is_refused_before_reading(tmp_path, base):
    meta, arrays, _, _ = base
    arrays["extra.note"] = np.zeros(2)
    path = tmp_path / "long.npz"
    _craft(path, meta, arrays, compression=zipfile.ZIP_DEFLATED)
    # Rewrite that member with 40 MB of zeros after its two values: the header
    # (and so the listed shape) still says two values.
    with zipfile.ZipFile(path) as zf:
        blobs = {info.filename: zf.read(info) for info in zf.infolist()}
    blobs["extra.note.npy"] += bytes(40 * 2**20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in blobs.items():
            zf.writestr(name, blob)
    del blobs

    def load():
        with pytest.raises(ModelFileError, match=r"member 'extra\.note' declares \d+ bytes "
                                                 r"but its header describes \d+"):
            fastgmm.load(path)

    assert _peak_bytes(load) < 4 * 2**20


def test_oversized_metadata_is_refused_before_reading(tmp_path, base, monkeypatch):
    meta, arrays, _, _ = base
    meta["extra"] = {"padding": "x" * 5000}
    _craft(tmp_path / "big.npz", meta, arrays)
    monkeypatch.setattr(fastgmm._io, "MAX_METADATA_BYTES", 4096)
    _refused(tmp_path / "big.npz", r"its metadata holds \d+ bytes, more than the 4096 allowed")


# ---------------------------------------------------------------------------
# whatever the file says, the loader raises ModelFileError or gives a usable model
# ---------------------------------------------------------------------------

_ODD_VALUES = [None, True, -1, 0, 2, 3, 1e308, -1e308, "full", "x", [], [1], {}, {"a": 1},
               [[1, 2]], float("nan"), float("-inf")]


def _mutations(meta):
    """(description, edited metadata) for every value replaced by every odd value."""
    paths = [(key,) for key in meta if key not in ("sha256", "arrays")]
    paths += [("params", key) for key in meta["params"]]
    paths += [("attributes", key) for key in meta["attributes"]]
    for where in paths:
        for value in _ODD_VALUES:
            edited = copy.deepcopy(meta)
            target = edited
            for key in where[:-1]:
                target = target[key]
            target[where[-1]] = value
            yield f"{'.'.join(where)}={value!r}", edited


def load_every_mutation(path, meta, arrays, X) -> int:
    """Write each metadata mutation and load it: a ModelFileError, or a model the
    kernels can use (finite scores); any other exception fails the test.
    Returns how many mutations loaded.
    """
    loaded_ok = 0
    for what, edited in _mutations(meta):
        _craft(path, edited, arrays)
        try:
            model = fastgmm.load(path)
        except ModelFileError:
            continue
        except Exception as exc:  # pragma: no cover - the failure this test looks for
            pytest.fail(f"{what}: {type(exc).__name__}: {exc}")
        loaded_ok += 1
        assert model.predict(X).shape == (X.shape[0],), what
        assert np.isfinite(model.score_samples(X)).all(), what
    return loaded_ok


def test_no_edit_of_the_metadata_escapes_as_another_error(tmp_path, base):
    meta, arrays, X, _ = base
    loaded_ok = load_every_mutation(tmp_path / "fuzz.npz", meta, arrays, X)
    assert loaded_ok > 0  # harmless edits (verbose=2, tol=0, ...) still load


# ---------------------------------------------------------------------------
# what the writer and the loader still agree on
# ---------------------------------------------------------------------------


def test_an_ill_conditioned_float32_model_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3000, 1))
    X = np.hstack([z, z + 1e-3 * rng.normal(size=(3000, 1)), rng.normal(size=(3000, 1))])
    for ctype in COVARIANCE_TYPES:
        model = fastgmm.GaussianMixture(3, covariance_type=ctype, reg_covar=1e-9,
                                        on_degenerate="ignore",
                                        random_state=0).fit(X.astype(np.float32))
        model.save(tmp_path / f"{ctype}.npz")
        loaded = fastgmm.load(tmp_path / f"{ctype}.npz")
        assert loaded.means_.dtype == np.float32
        np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))


def test_save_refuses_what_load_would_refuse(tmp_path):
    model = fastgmm.GaussianMixture(2, random_state=0).fit(_data())
    model.set_params(covariance_type="diag")
    with pytest.raises(ValueError, match=r"cannot save: the model was fitted with 2 "
                                         r"components and 'full' covariances"):
        model.save(tmp_path / "changed.npz")
    model.set_params(covariance_type="full", max_iter="abc")
    with pytest.raises(ValueError, match=r"cannot save: .*max_iter must be an integer"):
        model.save(tmp_path / "bad_param.npz")
    model.set_params(max_iter=100)
    model.covariances_ = -model.covariances_
    with pytest.raises(ValueError, match=r"cannot save: .*not positive definite"):
        model.save(tmp_path / "not_pd.npz")
    assert list(tmp_path.iterdir()) == []


def test_unknown_fitted_attributes_are_named_not_stored(tmp_path):
    model = fastgmm.GaussianMixture(2, random_state=0).fit(_data())
    model.labels_ = np.arange(3)
    model.note_ = "mine"
    model.save(tmp_path / "m.npz")
    meta, arrays = _open(tmp_path / "m.npz")
    assert {"labels_", "note_"} <= set(meta["attributes_not_saved"])
    assert "labels_" not in arrays and "note_" not in meta["attributes"]
    loaded = fastgmm.load(tmp_path / "m.npz")
    assert not hasattr(loaded, "labels_") and not hasattr(loaded, "note_")


def test_a_member_inflating_beyond_any_compression_is_refused(tmp_path, base, monkeypatch):
    meta, arrays, _, _ = base
    arrays["extra.zeros"] = np.zeros(100_000)
    _craft(tmp_path / "z.npz", meta, arrays, compression=zipfile.ZIP_DEFLATED)
    assert fastgmm._io.read(tmp_path / "z.npz").extra_arrays["zeros"].shape == (100_000,)
    monkeypatch.setattr(fastgmm._io, "_MAX_INFLATION", 2)  # as if deflate gave at most 2x
    _refused(tmp_path / "z.npz", r"member 'extra\.zeros' declares \d+ bytes from \d+ "
                                 r"compressed, more than any compression gives")
