"""Model files: exact round trip, no pickle needed, clear errors for bad files."""

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import fastgmm
from fastgmm import ModelFileError
from fastgmm._io import FORMAT_VERSION, read

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
FITTED_ARRAYS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


def _data(dtype=np.float64, n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal([0, 0, 0], 1.0, (n // 2, 3)),
                   rng.normal([4, 1, -2], 0.7, (n - n // 2, 3))])
    return X.astype(dtype)


def _fit(covariance_type="full", dtype=np.float64, **kw):
    X = _data(dtype)
    kw.setdefault("random_state", 0)
    return fastgmm.GaussianMixture(2, covariance_type=covariance_type, **kw).fit(X), X


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, X = _fit("full")
    path = tmp_path_factory.mktemp("io") / "model.npz"
    model.save(path)
    return model, X, path


def _members(path):
    with np.load(path, allow_pickle=False) as f:
        return {name: f[name] for name in f.files}


def _write_members(path, members):
    buf = io.BytesIO()
    np.savez(buf, **members)
    path.write_bytes(buf.getvalue())


def _metadata(members):
    return json.loads(members["metadata"].tobytes().decode())


def _with_metadata(members, meta, redigest=True):
    import hashlib

    out = dict(members)
    if redigest:
        body = {k: v for k, v in meta.items() if k != "sha256"}
        canon = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        meta = dict(meta, sha256=hashlib.sha256(canon).hexdigest())
    out["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return out


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_trip_is_exact(tmp_path, covariance_type, dtype):
    model, X = _fit(covariance_type, dtype, tol=1e-4, reg_covar=1e-5, n_init=2)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = fastgmm.load(path)
    assert type(loaded) is fastgmm.GaussianMixture
    for name in FITTED_ARRAYS:
        a, b = getattr(model, name), getattr(loaded, name)
        assert b.dtype == a.dtype == dtype
        assert a.shape == b.shape
        assert a.tobytes() == b.tobytes(), name
    for name in ("converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_features_in_"):
        assert getattr(loaded, name) == getattr(model, name), name
    params, loaded_params = model.get_params(), loaded.get_params()
    assert params.keys() == loaded_params.keys()
    for key, value in params.items():
        assert loaded_params[key] == value, key
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))


def test_loaded_model_density_matches_scipy(saved):
    """The reloaded parameters define the same mixture density (scipy reference)."""
    model, X, path = saved
    loaded = fastgmm.load(path)
    comps = [np.log(w) + multivariate_normal(m, c).logpdf(X)
             for w, m, c in zip(loaded.weights_, loaded.means_, loaded.covariances_,
                                strict=True)]
    np.testing.assert_allclose(loaded.score_samples(X), logsumexp(comps, axis=0), rtol=1e-10)


def test_file_needs_no_pickle_and_documents_itself(saved):
    model, _, path = saved
    assert zipfile.is_zipfile(path)
    members = _members(path)          # plain numpy, allow_pickle=False
    assert all(arr.dtype != object for arr in members.values())
    meta = _metadata(members)
    assert meta["format"] == "fastgmm.GaussianMixture"
    assert meta["format_version"] == FORMAT_VERSION == 1
    assert meta["fastgmm_version"] == fastgmm.__version__
    assert meta["covariance_type"] == "full"
    assert meta["dtype"] == "float64"
    assert (meta["n_components"], meta["n_features"]) == (2, 3)
    assert meta["feature_names"] is None
    np.testing.assert_array_equal(members["means_"], model.means_)
    assert set(meta["arrays"]) == set(members) - {"metadata"}


def test_feature_names_and_array_params_round_trip(tmp_path):
    pd = pytest.importorskip("pandas")
    X = _data()
    frame = pd.DataFrame(X, columns=["alpha", "beta", "gamma"])
    means_init = np.array([[0.0, 0.0, 0.0], [4.0, 1.0, -2.0]])
    model = fastgmm.GaussianMixture(2, means_init=means_init, random_state=3).fit(frame)
    path = tmp_path / "named.npz"
    model.save(path)
    loaded = fastgmm.load(path)
    assert list(loaded.feature_names_in_) == ["alpha", "beta", "gamma"]
    assert loaded.feature_names_in_.dtype == object
    np.testing.assert_array_equal(loaded.means_init, means_init)
    assert _metadata(_members(path))["feature_names"] == ["alpha", "beta", "gamma"]
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(frame.rename(columns={"alpha": "a"}))


def test_unsavable_params_load_as_defaults(tmp_path):
    model, X = _fit("diag", callback=lambda info: False,
                    random_state=np.random.RandomState(0))
    path = tmp_path / "cb.npz"
    model.save(path)
    meta = _metadata(_members(path))
    assert set(meta["params_not_saved"]) == {"callback", "random_state"}
    loaded = fastgmm.load(path)
    assert loaded.callback is None and loaded.random_state is None
    np.testing.assert_array_equal(loaded.means_, model.means_)


def test_pickle_round_trip():
    model, X = _fit("tied")
    clone = pickle.loads(pickle.dumps(model))
    for name in FITTED_ARRAYS:
        np.testing.assert_array_equal(getattr(clone, name), getattr(model, name))
    np.testing.assert_array_equal(clone.predict_proba(X), model.predict_proba(X))
    assert clone.get_params() == model.get_params()
    unfitted = pickle.loads(pickle.dumps(fastgmm.GaussianMixture(4, covariance_type="diag")))
    assert unfitted.get_params()["n_components"] == 4


def test_save_refuses_unfitted_and_foreign_objects(tmp_path):
    with pytest.raises(fastgmm.NotFittedError):
        fastgmm.GaussianMixture(2).save(tmp_path / "x.npz")
    with pytest.raises(TypeError, match="GaussianMixture"):
        fastgmm._io.save(object(), tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_failed_save_leaves_nothing_behind(tmp_path, saved):
    model, _, _ = saved
    path = tmp_path / "keep.npz"
    path.write_bytes(b"previous content")
    with pytest.raises(TypeError, match="JSON"):
        fastgmm._io.save(model, path, extra={"bad": object()})
    assert path.read_bytes() == b"previous content"
    assert os.listdir(tmp_path) == ["keep.npz"]


def test_save_does_not_touch_the_model(saved, tmp_path):
    model, _, _ = saved
    before = {name: getattr(model, name).copy() for name in FITTED_ARRAYS}
    model.save(tmp_path / "again.npz")
    for name, arr in before.items():
        assert getattr(model, name).tobytes() == arr.tobytes()


def test_extra_metadata_and_arrays(tmp_path, saved):
    model, _, _ = saved
    path = tmp_path / "extra.npz"
    fastgmm._io.save(model, path, extra={"note": "hello", "n": 3},
                     extra_arrays={"center": np.array([1.5, -2.0, 0.25])})
    mf = read(path)
    assert mf.extra == {"note": "hello", "n": 3}
    np.testing.assert_array_equal(mf.extra_arrays["center"], [1.5, -2.0, 0.25])


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastgmm.load(tmp_path / "nope.npz")


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_file(tmp_path, saved, keep):
    raw = saved[2].read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(raw[:int(len(raw) * keep)])
    with pytest.raises(ModelFileError, match="not a fastgmm model file|damaged or truncated"):
        fastgmm.load(path)


def test_flipped_byte_is_detected(tmp_path, saved):
    raw = bytearray(saved[2].read_bytes())
    members = _members(saved[2])
    # Flip a byte inside the stored means (past the .npy header): the zip CRC
    # or the recorded digest must notice.
    target = members["means_"].tobytes()[:16]
    at = bytes(raw).index(target) + 3
    raw[at] ^= 0x40
    path = tmp_path / "flip.npz"
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="damaged|integrity"):
        fastgmm.load(path)


def test_not_a_model_file(tmp_path):
    text = tmp_path / "data.csv"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(ModelFileError, match="not a fastgmm model file"):
        fastgmm.load(text)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.arange(3))
    with pytest.raises(ModelFileError, match="no metadata"):
        fastgmm.load(other)


def test_edited_array_is_detected(tmp_path, saved):
    members = _members(saved[2])
    members["means_"] = members["means_"] + 1.0
    path = tmp_path / "edited.npz"
    _write_members(path, members)
    with pytest.raises(ModelFileError, match="integrity check.*means_"):
        fastgmm.load(path)


def test_edited_metadata_is_detected(tmp_path, saved):
    members = _members(saved[2])
    meta = _metadata(members)
    meta["covariance_type"] = "diag"
    path = tmp_path / "meta.npz"
    _write_members(path, _with_metadata(members, meta, redigest=False))
    with pytest.raises(ModelFileError, match="integrity check"):
        fastgmm.load(path)


def test_inconsistent_content_is_rejected_even_with_fresh_digests(tmp_path, saved):
    members = _members(saved[2])
    meta = _metadata(members)
    meta["covariance_type"] = "diag"      # shapes say full
    path = tmp_path / "inconsistent.npz"
    _write_members(path, _with_metadata(members, meta))
    with pytest.raises(ModelFileError, match=r"not a valid model: covariances_ has shape"):
        fastgmm.load(path)


def test_added_member_is_detected(tmp_path, saved):
    members = _members(saved[2])
    members["surprise"] = np.zeros(2)
    path = tmp_path / "added.npz"
    _write_members(path, members)
    with pytest.raises(ModelFileError, match="added"):
        fastgmm.load(path)


def test_future_version_is_refused(tmp_path, saved):
    members = _members(saved[2])
    meta = _metadata(members)
    meta["format_version"] = FORMAT_VERSION + 1
    meta["fastgmm_version"] = "9.0.0"
    path = tmp_path / "future.npz"
    _write_members(path, _with_metadata(members, meta))
    with pytest.raises(ModelFileError,
                       match=r"format version 2 \(written by fastgmm 9\.0\.0\).*Upgrade"):
        fastgmm.load(path)


def test_pickled_member_is_refused(tmp_path, saved):
    members = _members(saved[2])
    path = tmp_path / "pickled.npz"
    buf = io.BytesIO()
    np.savez(buf, **members, evil=np.array([{"a": 1}], dtype=object))
    path.write_bytes(buf.getvalue())
    with pytest.raises(ModelFileError, match="pickled"):
        fastgmm.load(path)


def test_odd_attribute_names_are_refused(tmp_path, saved):
    members = _members(saved[2])
    meta = _metadata(members)
    meta["attributes"]["__class__"] = "str"
    path = tmp_path / "attr.npz"
    _write_members(path, _with_metadata(members, meta))
    with pytest.raises(ModelFileError, match="'__class__' is not a fitted-attribute name"):
        fastgmm.load(path)
    meta = _metadata(members)
    meta["attributes"]["n_features_in_"] = 5
    _write_members(path, _with_metadata(members, meta))
    with pytest.raises(ModelFileError, match="n_features_in_=5"):
        fastgmm.load(path)
