"""The missing-data option as fitted state (issue #28, item 2).

What a model does with rows with gaps is decided by its fit; a model file
restores that, whatever ``set_params`` did before saving, and ``partial_fit``
accepts every batch ``predict`` accepts.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastgmm

OLD_FILES = Path(__file__).parent / "data" / "model_files_v1"


def _gappy(seed=0, n=300, d=3, rate=0.1):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(0.0, 1.0, (n // 2, d)), rng.normal(4.0, 1.0, (n - n // 2, d))])
    X[rng.random(X.shape) < rate] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.5
    return X


def _rows_with_gaps():
    return np.array([[0.1, np.nan, 0.3], [np.nan, 4.2, 3.9], [np.nan, np.nan, 0.2]])


@pytest.mark.parametrize("ctype", ["full", "diag"])
def test_a_marginalize_fit_saved_after_set_params_error_still_takes_gaps(tmp_path, ctype):
    model = fastgmm.GaussianMixture(2, covariance_type=ctype, missing="marginalize",
                                    random_state=0).fit(_gappy())
    model.set_params(missing="error")
    rows = _rows_with_gaps()
    before = model.predict_proba(rows)       # predictions follow the fit
    model.save(tmp_path / "m.npz")
    loaded = fastgmm.load(tmp_path / "m.npz")
    assert loaded.get_params()["missing"] == "error"   # the parameters as saved
    np.testing.assert_array_equal(loaded.predict_proba(rows), before)
    np.testing.assert_array_equal(loaded.score_samples(rows), model.score_samples(rows))


def test_an_error_fit_saved_after_set_params_marginalize_still_refuses_gaps(tmp_path):
    X = _gappy()
    complete = X[~np.isnan(X).any(axis=1)]
    model = fastgmm.GaussianMixture(2, random_state=0).fit(complete)
    model.set_params(missing="marginalize")
    with pytest.raises(ValueError, match="NaN"):
        model.predict(_rows_with_gaps())
    model.save(tmp_path / "m.npz")
    loaded = fastgmm.load(tmp_path / "m.npz")
    assert loaded.get_params()["missing"] == "marginalize"
    with pytest.raises(ValueError, match="NaN"):
        loaded.predict(_rows_with_gaps())
    np.testing.assert_array_equal(loaded.predict(complete), model.predict(complete))
    # Refitting follows the parameter: the refit model takes rows with gaps.
    assert loaded.fit(X).predict(_rows_with_gaps()).shape == (3,)


def test_the_file_records_the_fitted_option(tmp_path):
    model = fastgmm.GaussianMixture(2, missing="marginalize", random_state=0).fit(_gappy())
    model.set_params(missing="error")
    model.save(tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as zf:
        meta = json.loads(np.lib.format.read_array(zf.open("metadata.npy")).tobytes())
    assert meta["attributes"]["fit_missing_"] == "marginalize"
    assert meta["params"]["missing"] == "error"


def test_old_files_without_the_fitted_option_load_as_their_parameter_says():
    for path in sorted(OLD_FILES.glob("gm_*.npz")):
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(np.lib.format.read_array(zf.open("metadata.npy")).tobytes())
        assert "fit_missing_" not in meta["attributes"]
        model = fastgmm.load(path)
        row = np.full((1, model.n_features_in_), 0.5)
        row[0, 0] = np.nan
        if meta["params"].get("missing", "error") == "marginalize":
            assert np.isfinite(model.score_samples(row)).all()
        else:
            with pytest.raises(ValueError, match="NaN"):
                model.predict(row)


@pytest.mark.parametrize("param", ["marginalize", "error"])
@pytest.mark.parametrize("batch", [
    np.array([[0.2, np.nan, 1.0]]),                                 # one row, one gap
    np.array([[0.2, np.nan, 1.0], [3.9, np.nan, 4.4], [0.1, np.nan, -0.3]]),  # a NaN column
])
def test_partial_fit_accepts_every_batch_predict_accepts(param, batch):
    model = fastgmm.GaussianMixture(2, missing="marginalize", random_state=0).fit(_gappy())
    model.set_params(missing=param)
    assert model.predict(batch).shape == (batch.shape[0],)
    twin = fastgmm.GaussianMixture(2, missing="marginalize", random_state=0).fit(_gappy())
    model.partial_fit(batch)
    model.partial_fit(batch[::-1])
    twin.partial_fit(batch)
    twin.partial_fit(batch[::-1])
    # The update is that of the model whose parameter says marginalize.
    np.testing.assert_array_equal(model.means_, twin.means_)
    np.testing.assert_array_equal(model.covariances_, twin.covariances_)
    assert model.n_steps_ == 2 and np.isfinite(model.means_).all()
    # An unobserved feature is kept as it was: the batch says nothing about it.
    assert np.isfinite(model.predict_proba(batch)).all()


def test_a_failed_partial_fit_leaves_the_model_as_it_was():
    model = fastgmm.GaussianMixture(2, missing="marginalize", random_state=0).fit(_gappy())
    model.set_params(missing="error")
    model.partial_fit(np.array([[0.2, np.nan, 1.0]]))
    before = {k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in vars(model).items()
              if not k.startswith("_online")}
    stats = model._online_stats
    for bad in (np.array([[np.nan, np.nan, np.nan]]), np.array([[1.0, 2.0]]),
                np.array([[np.inf, 1.0, 2.0]])):
        with pytest.raises(ValueError):
            model.partial_fit(bad)
        assert model._online_stats is stats
        for k, v in before.items():
            now = getattr(model, k)
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(now, v)
            else:
                assert now == v, k


def test_the_command_line_follows_the_fitted_option(tmp_path, capsys):
    from fastgmm.cli import main

    model = fastgmm.GaussianMixture(2, missing="marginalize", random_state=0).fit(_gappy())
    model.set_params(missing="error")
    model.save(tmp_path / "m.npz")
    (tmp_path / "d.csv").write_text("a,b,c\n0.1,,0.3\n4.0,4.2,3.9\n")
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "d.csv"),
                 "--out", str(tmp_path / "o.csv")]) == 0, capsys.readouterr().err
    labels = np.loadtxt(tmp_path / "o.csv", delimiter=",", skiprows=1, usecols=-1)
    np.testing.assert_array_equal(labels, model.predict(np.array([[0.1, np.nan, 0.3],
                                                                  [4.0, 4.2, 3.9]])))
