"""BayesianGaussianMixture in model files and on the command line (``fastgmm fit --bayesian``)."""

import numpy as np
import pytest
from naive import make_blobs

import fastgmm
from fastgmm import cli
from fastgmm._io import read

CENTERS = [(0.0, 0.0), (9.0, 0.0), (0.0, 9.0)]

#: Every fitted array of the estimator, compared byte for byte after a round trip.
ARRAYS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_",
          "mean_precision_", "mean_prior_")


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("prior_type", ["dirichlet_process", "dirichlet_distribution"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_trip_is_exact(tmp_path, covariance_type, prior_type, dtype):
    """Saving and loading keeps the class, every fitted array byte for byte (the Beta
    parameters as a tuple), the scalar attributes, the parameters and the predictions.
    """
    X = make_blobs(60, CENTERS, [1.0, 1.0, 1.0], seed=0, dtype=dtype)
    model = fastgmm.BayesianGaussianMixture(
        4, covariance_type=covariance_type, weight_concentration_prior_type=prior_type,
        random_state=0, max_iter=200).fit(X)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = fastgmm.load(path)
    assert type(loaded) is fastgmm.BayesianGaussianMixture
    assert read(path).metadata["format"] == "fastgmm.BayesianGaussianMixture"
    assert loaded.get_params() == model.get_params()
    for name in ARRAYS:
        a, b = np.asarray(getattr(model, name)), np.asarray(getattr(loaded, name))
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    conc, conc2 = model.weight_concentration_, loaded.weight_concentration_
    assert type(conc) is type(conc2)
    assert np.asarray(conc).tobytes() == np.asarray(conc2).tobytes()
    assert type(loaded.degrees_of_freedom_) is type(model.degrees_of_freedom_)
    assert np.asarray(loaded.degrees_of_freedom_).tobytes() == \
        np.asarray(model.degrees_of_freedom_).tobytes()
    for name in ("lower_bound_", "lower_bounds_", "n_iter_", "converged_",
                 "n_effective_components_", "weight_concentration_prior_",
                 "degrees_of_freedom_prior_", "mean_precision_prior_"):
        assert getattr(loaded, name) == getattr(model, name), name
    assert np.asarray(loaded.covariance_prior_).tobytes() == \
        np.asarray(model.covariance_prior_).tobytes()
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))


def test_gaussian_mixture_files_keep_their_format(tmp_path):
    """A GaussianMixture still saves as ``fastgmm.GaussianMixture`` and loads as one."""
    X = make_blobs(40, CENTERS, [1.0, 1.0, 1.0], seed=1)
    fastgmm.GaussianMixture(3, random_state=0).fit(X).save(tmp_path / "g.npz")
    mf = read(tmp_path / "g.npz")
    assert mf.metadata["format"] == "fastgmm.GaussianMixture"
    assert type(mf.model) is fastgmm.GaussianMixture


def test_unfitted_model_is_not_saved(tmp_path):
    """Saving an unfitted BayesianGaussianMixture raises NotFittedError naming the class."""
    with pytest.raises(fastgmm.NotFittedError, match="BayesianGaussianMixture"):
        fastgmm.BayesianGaussianMixture(2).save(tmp_path / "u.npz")


def test_cli_fit_bayesian_saves_the_estimators_fit(tmp_path, capsys):
    """``fit --bayesian`` saves the BayesianGaussianMixture the library fits with the same
    arguments, reports the lower bound and the effective components, and ``info`` and
    ``predict`` read the file.
    """
    X = make_blobs(150, CENTERS, [1.0, 1.0, 1.0], seed=2)
    data = tmp_path / "x.csv"
    np.savetxt(data, X, delimiter=",", header="a,b", comments="")
    out = tmp_path / "m.npz"
    assert cli.main(["fit", str(data), "--k", "6", "--bayesian", "--covariance", "diag",
                     "--seed", "0", "--max-iter", "500", "-q", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    ref = fastgmm.BayesianGaussianMixture(6, covariance_type="diag", random_state=0,
                                          max_iter=500).fit(X)
    model = fastgmm.load(out)
    assert type(model) is fastgmm.BayesianGaussianMixture
    np.testing.assert_array_equal(model.means_, ref.means_)
    assert "variational lower bound" in stdout
    assert f"{ref.n_effective_components_} effective components" in stdout
    assert ref.n_effective_components_ == 3
    assert "BIC" not in stdout
    assert cli.main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "format: fastgmm.BayesianGaussianMixture" in info and "lower bound" in info
    labels = tmp_path / "labels.csv"
    assert cli.main(["predict", str(out), str(data), "--out", str(labels)]) == 0
    capsys.readouterr()
    assert labels.exists()


def test_cli_bayesian_refuses_k_auto(tmp_path, capsys):
    """``--k auto`` (BIC selection) with ``--bayesian`` is refused with a message."""
    data = tmp_path / "x.csv"
    np.savetxt(data, make_blobs(20, CENTERS, [1.0, 1.0, 1.0]), delimiter=",", header="a,b",
               comments="")
    assert cli.main(["fit", str(data), "--k", "auto", "--bayesian",
                     "--out", str(tmp_path / "m.npz")]) != 0
    assert "--bayesian" in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists()
