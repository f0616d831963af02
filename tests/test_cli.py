"""fastgmm.cli: the ``fastgmm`` command line, run as separate processes.

The commands run once per session, concurrently in a small thread pool (each
is its own process; see ``cli_ws`` in conftest.py), then each test checks one
of them against numpy computations of the same preprocessing.  Bad input
(exit status 2, one line on stderr) is tested in test_bad_input.py.
"""

import importlib
import re
import sys

import numpy as np
import pytest
import tomllib
from conftest import HAVE_PARQUET, PNG_SIGNATURE, ROOT, run_cli
from naive import make_mixture

import fastgmm
from fastgmm import cli, select
from fastgmm._io import read


def _ok(proc):
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def _prep(d):
    """The fit's preprocessing, recomputed with numpy from the CSV."""
    table = np.loadtxt(d / "w.csv", delimiter=",", skiprows=1)
    logs = np.log(table[:, 2:5])                          # Fresh, Milk, Grocery
    center, scale = logs.mean(axis=0), logs.std(axis=0, ddof=0)
    return logs, center, scale


def test_console_script_is_declared():
    """pyproject.toml declares the fastgmm console script and it names a callable."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["scripts"]["fastgmm"] == "fastgmm.cli:main"
    module, func = config["project"]["scripts"]["fastgmm"].split(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_fit_writes_model_with_its_preprocessing(cli_ws):
    """``fit`` stores the columns, log and standardisation (numpy's centre and scale) with a model
    equal to fitting the numpy-preprocessed data, and reports it.
    """
    d, res = cli_ws
    proc = _ok(res["fit"])
    logs, center, scale = _prep(d)
    mf = read(d / "m.npz")
    assert mf.extra["cli"]["columns"] == ["Fresh", "Milk", "Grocery"]
    assert mf.extra["cli"]["log"] and mf.extra["cli"]["standardize"]
    np.testing.assert_allclose(mf.extra_arrays["center"], center, rtol=1e-13)
    np.testing.assert_allclose(mf.extra_arrays["scale"], scale, rtol=1e-13)
    Z = (logs - center) / scale
    same = fastgmm.GaussianMixture(3, n_init=2, random_state=0).fit(Z)
    np.testing.assert_allclose(mf.model.means_, same.means_, rtol=1e-9, atol=1e-12)
    assert list(mf.model.feature_names_in_) == ["z(log(Fresh))", "z(log(Milk))",
                                                "z(log(Grocery))"]
    out = proc.stdout
    assert "3-component Gaussian mixture (full covariances) to 440 rows x 3 columns" in out
    assert "preprocessing: log, standardised" in out
    assert f"BIC {same.bic(Z):.2f}" in out
    # component means printed in log units: centre + scale * standardised mean
    means = center + scale * same.means_
    for row in range(3):
        assert f"{means[row, 1]:.4g}" in out
    assert "model written to m.npz" in out


def test_fit_reports_progress_on_stderr(cli_ws):
    """``fit`` reports the data read and every iteration's log-likelihood, change and time on
    stderr.
    """
    _, res = cli_ws
    lines = res["fit"].stderr.splitlines()
    assert lines[0].startswith("fit: 440 rows x 3 columns from w.csv")
    progress = [ln for ln in lines if "iteration" in ln]
    assert any(re.search(r"init 0\s+iteration\s+1\s+log-likelihood\s+-?\d", ln)
               for ln in progress)
    assert all(re.search(r"change .* \d+\.\d\d s$", ln) for ln in progress)


def test_quiet_weighted_fit_from_npy(cli_ws):
    """--quiet prints nothing on stderr; --sample-weight names the weight column, and the model
    equals the in-process weighted fit.
    """
    d, res = cli_ws
    proc = _ok(res["fit_npy"])
    assert proc.stderr == ""
    X = np.load(d / "x.npy")
    mf = read(d / "x_model.npz")
    assert mf.extra["cli"]["sample_weight"] == "2"
    assert mf.model.covariance_type == "diag"
    same = fastgmm.GaussianMixture(2, covariance_type="diag", random_state=3).fit(
        X[:, :2], sample_weight=X[:, 2])
    np.testing.assert_allclose(mf.model.means_, same.means_, rtol=1e-9, atol=1e-12)
    # the weighted means differ from unweighted ones: the weights were used
    plain = fastgmm.GaussianMixture(2, covariance_type="diag", random_state=3).fit(X[:, :2])
    assert not np.allclose(plain.means_, same.means_, rtol=1e-6)


@pytest.mark.skipif(not HAVE_PARQUET, reason="Parquet input needs pandas and pyarrow")
def test_fit_from_parquet(cli_ws):
    """A Parquet file gives the model of the same columns fitted in process."""
    d, res = cli_ws
    _ok(res["fit_parquet"])
    X = np.load(d / "x.npy")
    model = fastgmm.load(d / "pq.npz")
    same = fastgmm.GaussianMixture(2, random_state=0).fit(X[:, :2])
    np.testing.assert_allclose(model.means_, same.means_, rtol=1e-9, atol=1e-12)


def test_predict_applies_the_stored_preprocessing(cli_ws):
    """``predict`` writes the labels of the stored preprocessing applied again (numpy) and counts
    the rows per component.
    """
    d, res = cli_ws
    proc = _ok(res["predict"])
    logs, center, scale = _prep(d)
    model = fastgmm.load(d / "m.npz")
    expected = model.predict((logs - center) / scale)
    with open(d / "labels.csv") as f:
        assert f.readline().strip() == "component"
    got = np.loadtxt(d / "labels.csv", skiprows=1, dtype=np.int64)
    np.testing.assert_array_equal(got, expected)
    counts = np.bincount(expected, minlength=3)
    assert "rows per component: " + ", ".join(f"{j}: {c}" for j, c in enumerate(counts)) \
        in proc.stdout


def test_predict_proba_to_npy(cli_ws):
    """``predict`` --proba writes the responsibilities of the preprocessed rows to .npy."""
    d, res = cli_ws
    _ok(res["predict_proba"])
    logs, center, scale = _prep(d)
    proba = np.load(d / "proba.npy")
    assert proba.shape == (440, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    model = fastgmm.load(d / "m.npz")
    np.testing.assert_array_equal(proba, model.predict_proba((logs - center) / scale))


def test_sample_is_in_the_original_units(cli_ws):
    """``sample`` undoes the standardisation and the log, writing the model's draws in the original
    units with their components.
    """
    d, res = cli_ws
    proc = _ok(res["sample"])
    mf = read(d / "m.npz")
    with open(d / "s.csv") as f:
        assert f.readline().strip() == "Fresh,Milk,Grocery,component"
    got = np.loadtxt(d / "s.csv", delimiter=",", skiprows=1)
    Z, y = mf.model.sample(50, random_state=1)
    expected = np.exp(mf.extra_arrays["center"] + mf.extra_arrays["scale"] * Z)
    np.testing.assert_allclose(got[:, :3], expected, rtol=1e-15)
    np.testing.assert_array_equal(got[:, 3], y)
    assert "wrote 50 samples" in proc.stdout


def test_info(cli_ws):
    """``info`` prints the format, version, shape, covariance type, dtype, features and
    preprocessing of a model file.
    """
    _, res = cli_ws
    out = _ok(res["info"]).stdout
    assert f"format: fastgmm.GaussianMixture version 1 (written by fastgmm " \
           f"{fastgmm.__version__})" in out
    assert "components: 3   features: 3   covariance: full   dtype: float64" in out
    assert "features: z(log(Fresh)), z(log(Milk)), z(log(Grocery))" in out
    assert "preprocessing: log, standardise" in out


def test_demo_writes_pngs_and_prints_the_segment_table(cli_ws):
    """``demo`` writes two non-blank PNGs and a segment table whose size-weighted means give the
    CSV's column means.
    """
    from matplotlib.image import imread

    d, res = cli_ws
    proc = _ok(res["demo"])
    pngs = sorted((d / "demo_out").glob("*.png"))
    assert [p.name for p in pngs] == ["demo_bic_aic.png", "demo_segments.png"]
    for png in pngs:
        raw = png.read_bytes()
        assert len(raw) > 10_000 and raw[:8] == PNG_SIGNATURE
        img = imread(png)
        assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 600
        assert img[..., :3].std() > 0.05          # not a blank canvas
    assert not list((d / "demo_out").glob(".*"))  # no temporary files left
    # The segment table: sizes add up, and the size-weighted segment means
    # give the overall mean spending computed straight from the CSV.
    lines = proc.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("segment  customers"))
    assert "% Horeca" in lines[head] and "% Retail" in lines[head]
    rows = [lines[head + 2].split(), lines[head + 3].split()]
    sizes = [int(r[1]) for r in rows]
    assert sum(sizes) == 440
    table = np.loadtxt(d / "w.csv", delimiter=",", skiprows=1)
    for col, name in enumerate(("Fresh", "Milk", "Grocery", "Frozen", "Detergents_Paper",
                                "Delicassen")):
        j = lines[head].split().index(name)
        seg_means = [float(r[j].replace(",", "")) for r in rows]
        overall = np.dot(sizes, seg_means) / 440
        np.testing.assert_allclose(overall, table[:, 2 + col].mean(), atol=1.0)
    assert "BIC prefers k=" in proc.stdout and "AIC prefers k=" in proc.stdout
    # The variational alternative switches components off: the weights it
    # prints are a distribution, and those below 0.01 are counted as off.
    m = re.search(r"^Component weights, largest first: ([0-9. ]+)\n(\d+) of 10 components are "
                  r"switched off \(weight below 0\.01\); (\d+) keep the data, where BIC "
                  r"chose k=(\d+)\.$", proc.stdout, re.M)
    assert m, proc.stdout
    weights = np.array([float(w) for w in m.group(1).split()])
    assert weights.shape == (10,) and np.all(np.diff(weights) <= 0)
    np.testing.assert_allclose(weights.sum(), 1.0, atol=6e-3)     # printed to 3 decimals
    n_off, n_kept = int(m.group(2)), int(m.group(3))
    assert n_off + n_kept == 10 and n_off >= 1                     # something is switched off
    assert n_off == int(np.sum(weights < 0.01))
    assert f"BIC prefers k={m.group(4)} " in proc.stdout
    assert "demo: wrote" in proc.stderr


def test_no_temporary_files_anywhere(cli_ws):
    """No command leaves a temporary file behind."""
    d, _ = cli_ws
    assert [p.name for p in d.iterdir() if p.name.startswith(".")] == []


def test_failed_write_leaves_the_old_file_intact(cli_ws, tmp_path, monkeypatch, capsys):
    """A write that dies half-way (disk full) leaves no partial output."""
    d, _ = cli_ws
    out = tmp_path / "labels.csv"
    out.write_text("old\n")
    real_writer = cli.csv.writer

    class FailingWriter:
        """Writes ten rows, then the disk is full."""

        def __init__(self, f, **kw):
            self._writer, self._rows = real_writer(f, **kw), 0

        def writerow(self, row):
            self._rows += 1
            if self._rows > 10:
                raise OSError(28, "No space left on device")
            return self._writer.writerow(row)

    monkeypatch.setattr(cli.csv, "writer", FailingWriter)
    status = cli.main(["predict", str(d / "m.npz"), str(d / "w.csv"), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.strip() == "fastgmm predict: error: No space left on device"
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]


def test_demo_without_matplotlib_still_prints_the_tables(tmp_path, monkeypatch, capsys):
    """Without matplotlib demo prints its tables, says why the plots were skipped and writes
    nothing.
    """
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)
    status = cli.main(["demo", "--quick", "--out", str(tmp_path / "demo")])
    captured = capsys.readouterr()
    assert status == 0
    assert "segment  customers  share" in captured.out
    assert "BIC prefers k=" in captured.out
    assert "components are switched off" in captured.out
    assert 'plots skipped: they need matplotlib (pip install ".[plot]"' in captured.err
    assert not (tmp_path / "demo").exists()


def test_cli_fit_k_auto(tmp_path):
    """``fit`` --k auto chooses by BIC the number of components select chooses, saves that cell and
    prints its BIC.
    """
    X = make_mixture("full", 3, 60, 2, seed=21)
    np.savetxt(tmp_path / "blobs.csv", X, delimiter=",", header="x,y", comments="")
    proc = run_cli(["fit", "blobs.csv", "--k", "auto", "--seed", "0", "--n-init", "2",
                    "--out", "model.npz", "-q"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    chosen = [line for line in proc.stdout.splitlines() if "<- chosen" in line]
    assert len(chosen) == 1 and chosen[0].split()[0] == "3", proc.stdout
    model = fastgmm.load(tmp_path / "model.npz")
    assert model.n_components == 3
    # The saved model is the selected cell: same BIC as select run here.
    ref = select(X, range(1, 10), ("full",), n_init=2, random_state=0)
    assert ref.best_params_["n_components"] == 3
    np.testing.assert_allclose(model.bic(X), ref.best_score_, rtol=1e-12)
    printed = float(chosen[0].split()[1])
    np.testing.assert_allclose(printed, ref.best_score_, atol=0.006)


def test_fit_k_auto_reports_progress_on_stderr(tmp_path, capsys):
    """``fit --k auto`` shows select's progress, one line per k, unless ``--quiet``."""
    rng = np.random.default_rng(4)
    X = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])[rng.integers(0, 3, 600)]
    X = X + rng.normal(size=(600, 2))
    data = tmp_path / "x.csv"
    np.savetxt(data, X, delimiter=",", header="a,b", comments="")
    assert cli.main(["fit", str(data), "--k", "auto", "--covariance", "diag", "--seed", "0",
                     "--out", str(tmp_path / "m.npz")]) == 0
    err = capsys.readouterr().err
    assert err.count("select: ") == 9 and "9/9 cells" in err
    assert cli.main(["fit", str(data), "--k", "auto", "--covariance", "diag", "--seed", "0",
                     "--quiet", "--out", str(tmp_path / "m2.npz")]) == 0
    assert "select: " not in capsys.readouterr().err
