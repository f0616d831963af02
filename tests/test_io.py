"""fastgmm._io: model files round-trip exactly, need no pickle, and document themselves.

Damaged, edited and foreign files (and everything else ``load`` and ``save``
must refuse) are tested in test_bad_input.py.
"""

import pickle
import zipfile

import numpy as np
import pytest
from conftest import (
    COVARIANCE_TYPES,
    FITTED,
    file_metadata,
    fit_io_model,
    io_data,
    npz_members,
)
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import fastgmm
from fastgmm._io import FORMAT_VERSION, read


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_trip_is_exact(tmp_path, covariance_type, dtype):
    """Saving and loading keeps every fitted array byte for byte, every scalar attribute and
    parameter, and the predictions, for every covariance type and dtype.
    """
    model, X = fit_io_model(covariance_type, dtype, tol=1e-4, reg_covar=1e-5, n_init=2)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = fastgmm.load(path)
    assert type(loaded) is fastgmm.GaussianMixture
    for name in FITTED:
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
    """The file is a ZIP that numpy reads without pickle, with metadata naming the format,
    versions, shapes and every array member.
    """
    model, _, path = saved
    assert zipfile.is_zipfile(path)
    members = npz_members(path)          # plain numpy, allow_pickle=False
    assert all(arr.dtype != object for arr in members.values())
    meta = file_metadata(members)
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
    """Feature names and array-valued parameters survive the round trip, and the loaded model
    still enforces the names.
    """
    pd = pytest.importorskip("pandas")
    X = io_data()
    frame = pd.DataFrame(X, columns=["alpha", "beta", "gamma"])
    means_init = np.array([[0.0, 0.0, 0.0], [4.0, 1.0, -2.0]])
    model = fastgmm.GaussianMixture(2, means_init=means_init, random_state=3).fit(frame)
    path = tmp_path / "named.npz"
    model.save(path)
    loaded = fastgmm.load(path)
    assert list(loaded.feature_names_in_) == ["alpha", "beta", "gamma"]
    assert loaded.feature_names_in_.dtype == object
    np.testing.assert_array_equal(loaded.means_init, means_init)
    assert file_metadata(npz_members(path))["feature_names"] == ["alpha", "beta", "gamma"]
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(frame.rename(columns={"alpha": "a"}))


def test_unsavable_params_load_as_defaults(tmp_path):
    """A callback and a RandomState are listed as not saved and load as their defaults; the
    parameters still load.
    """
    model, X = fit_io_model("diag", callback=lambda info: False,
                    random_state=np.random.RandomState(0))
    path = tmp_path / "cb.npz"
    model.save(path)
    meta = file_metadata(npz_members(path))
    assert set(meta["params_not_saved"]) == {"callback", "random_state"}
    loaded = fastgmm.load(path)
    assert loaded.callback is None and loaded.random_state is None
    np.testing.assert_array_equal(loaded.means_, model.means_)


def test_pickle_round_trip():
    """Fitted and unfitted models pickle and unpickle to the same parameters and predictions."""
    model, X = fit_io_model("tied")
    clone = pickle.loads(pickle.dumps(model))
    for name in FITTED:
        np.testing.assert_array_equal(getattr(clone, name), getattr(model, name))
    np.testing.assert_array_equal(clone.predict_proba(X), model.predict_proba(X))
    assert clone.get_params() == model.get_params()
    unfitted = pickle.loads(pickle.dumps(fastgmm.GaussianMixture(4, covariance_type="diag")))
    assert unfitted.get_params()["n_components"] == 4


def test_save_does_not_touch_the_model(saved, tmp_path):
    """Saving leaves every fitted array of the model byte for byte as it was."""
    model, _, _ = saved
    before = {name: getattr(model, name).copy() for name in FITTED}
    model.save(tmp_path / "again.npz")
    for name, arr in before.items():
        assert getattr(model, name).tobytes() == arr.tobytes()


def test_extra_metadata_and_arrays(tmp_path, saved):
    """Extra metadata and arrays stored beside the model read back unchanged."""
    model, _, _ = saved
    path = tmp_path / "extra.npz"
    fastgmm._io.save(model, path, extra={"note": "hello", "n": 3},
                     extra_arrays={"center": np.array([1.5, -2.0, 0.25])})
    mf = read(path)
    assert mf.extra == {"note": "hello", "n": 3}
    np.testing.assert_array_equal(mf.extra_arrays["center"], [1.5, -2.0, 0.25])
