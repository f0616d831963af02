"""BayesianGaussianMixture in model files and on the command line (``fastgmm fit --bayesian``)."""

import json

import numpy as np
import pytest
from naive import make_blobs

import fastgmm
from fastgmm import ModelFileError, cli
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


# ---------------------------------------------------------------------------
# crafted Bayesian files fail as crafted GaussianMixture ones do (the toolkit of
# test_io_hardening rewrites every digest, so only the closed schema stops them)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bayes_files(tmp_path_factory):
    """(X, {(covariance_type, prior_type): (model, path)}) of fitted 3-component files."""
    folder = tmp_path_factory.mktemp("bayes_crafted")
    X = make_blobs(60, CENTERS, [1.0, 1.0, 1.0], seed=3)
    out = {}
    for ctype in ("full", "tied", "diag", "spherical"):
        for prior in ("dirichlet_process", "dirichlet_distribution"):
            model = fastgmm.BayesianGaussianMixture(
                3, covariance_type=ctype, weight_concentration_prior_type=prior,
                random_state=0, max_iter=200).fit(X)
            path = folder / f"{ctype}-{prior}.npz"
            model.save(path)
            out[ctype, prior] = (model, path)
    return X, out


def _crafted(tmp_path, bayes_files, ctype="full", prior="dirichlet_process"):
    from test_io_hardening import _open

    _, files = bayes_files
    meta, arrays = _open(files[ctype, prior][1])
    return meta, arrays, tmp_path / "crafted.npz"


def _refused(path, match):
    with pytest.raises(ModelFileError, match=match):
        fastgmm.load(path)


def test_crafting_toolkit_makes_a_loadable_bayesian_file(tmp_path, bayes_files):
    """The untouched metadata and arrays, digests rewritten, load as the same model."""
    from test_io_hardening import _craft

    X, files = bayes_files
    meta, arrays, path = _crafted(tmp_path, bayes_files)
    _craft(path, meta, arrays)
    loaded = fastgmm.load(path)
    assert type(loaded) is fastgmm.BayesianGaussianMixture
    np.testing.assert_array_equal(loaded.score_samples(X),
                                  files["full", "dirichlet_process"][0].score_samples(X))


@pytest.mark.parametrize("name, shape", [("mean_precision_", (4,)),
                                         ("weight_concentration_", (3,)),
                                         ("degrees_of_freedom_", ()),
                                         ("mean_prior_", (3,))])
def test_bayesian_array_of_the_wrong_shape_is_refused(tmp_path, bayes_files, name, shape):
    """An array whose shape disagrees with k, d, the covariance and the prior type."""
    from test_io_hardening import _craft

    meta, arrays, path = _crafted(tmp_path, bayes_files)
    arrays[name] = np.ones(shape, dtype=arrays[name].dtype)
    _craft(path, meta, arrays)
    _refused(path, rf"{name} has shape \({', '.join(map(str, shape))},?\), expected")


def test_changed_prior_type_does_not_fit_the_stacked_concentration(tmp_path, bayes_files):
    """A Dirichlet-process file relabelled as a Dirichlet distribution: (2, k) is refused."""
    from test_io_hardening import _craft

    meta, arrays, path = _crafted(tmp_path, bayes_files)
    meta["params"]["weight_concentration_prior_type"] = "dirichlet_distribution"
    _craft(path, meta, arrays)
    _refused(path, r"weight_concentration_ has shape \(2, 3\), expected \(3,\)")
    meta["params"]["weight_concentration_prior_type"] = "stick"
    _craft(path, meta, arrays)
    _refused(path, "weight_concentration_prior_type must be one of")


@pytest.mark.parametrize("prior", ["dirichlet_process", "dirichlet_distribution"])
@pytest.mark.parametrize("name, match", [
    ("weight_concentration_", "weight_concentration_ has an entry that is not positive"),
    ("mean_precision_", "mean_precision_ has an entry that is not positive"),
    ("degrees_of_freedom_", r"degrees_of_freedom_ has an entry not greater than 1"),
])
def test_non_positive_posterior_values_are_refused(tmp_path, bayes_files, prior, name, match):
    """Negative concentrations or mean precisions, degrees of freedom <= d - 1."""
    from test_io_hardening import _craft

    meta, arrays, path = _crafted(tmp_path, bayes_files, prior=prior)
    arr = arrays[name].copy()
    arr.flat[0] = -0.5 if name != "degrees_of_freedom_" else 1.0
    arrays[name] = arr
    _craft(path, meta, arrays)
    _refused(path, match)


def test_non_finite_and_inconsistent_values_are_refused(tmp_path, bayes_files):
    """NaN in the posterior, a covariance prior not positive definite, covariances that
    the precision factors do not invert, and priors out of range.
    """
    from test_io_hardening import _craft

    meta, arrays, path = _crafted(tmp_path, bayes_files)
    for name, value, match in [
            ("mean_precision_", np.nan, "mean_precision_ contains NaN or infinity"),
            ("covariance_prior_", -1.0, "covariance_prior_ is not positive definite"),
            ("covariances_", 7.0, "precisions_cholesky_ does not match covariances_")]:
        edited = dict(arrays)
        arr = arrays[name].copy()
        if name == "covariance_prior_":
            arr = -np.eye(2)
        else:
            arr.flat[0] = value
        edited[name] = arr
        _craft(path, meta, edited)
        _refused(path, match)
    for attr, value, match in [
            ("degrees_of_freedom_prior_", 0.5, "degrees_of_freedom_prior_=0.5 is not greater"),
            ("mean_precision_prior_", -1.0, "mean_precision_prior_ must be a positive"),
            ("n_effective_components_", 9, "n_effective_components_=9 is more than"),
            ("n_steps_", 3, "unknown fitted attribute 'n_steps_'"),
            ("foo_", 1, "unknown fitted attribute 'foo_'")]:
        edited = json.loads(json.dumps(meta))
        edited["attributes"][attr] = value
        _craft(path, edited, arrays)
        _refused(path, match)


def test_bayesian_parameters_are_checked_on_load(tmp_path, bayes_files):
    """Unknown parameters (a GaussianMixture one included) and invalid priors are refused."""
    from test_io_hardening import _craft

    meta, arrays, path = _crafted(tmp_path, bayes_files)
    for name, value, match in [
            ("learning_decay", 0.6, "unknown constructor parameter 'learning_decay'"),
            ("degrees_of_freedom_prior", 0.5, "degrees_of_freedom_prior must be greater"),
            ("mean_prior", [1.0, 2.0, 3.0], r"mean_prior has shape \(3,\), expected \(2,\)")]:
        edited = json.loads(json.dumps(meta))
        edited["params"][name] = value
        _craft(path, edited, arrays)
        _refused(path, match)
    edited = dict(arrays)
    edited["param.weights_init"] = np.full(3, 1 / 3)
    _craft(path, meta, edited)
    _refused(path, "unknown array parameter 'param.weights_init'")


@pytest.mark.parametrize("ctype", ["tied", "spherical"])
def test_no_edit_of_bayesian_metadata_escapes_as_another_error(tmp_path, bayes_files, ctype):
    """Every metadata value replaced by every odd value: ModelFileError or a usable model."""
    from test_io_hardening import load_every_mutation

    X, _ = bayes_files
    meta, arrays, path = _crafted(tmp_path, bayes_files, ctype=ctype)
    load_every_mutation(path, meta, arrays, X)
