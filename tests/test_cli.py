"""The ``fastgmm`` command line, run as a separate process.

The commands run concurrently in a small thread pool (each is its own
process), then each test checks one of them: results against numpy
computations of the same preprocessing, and every bad input for exit status
2, one line on stderr, no traceback and no output file.
"""

import importlib
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tomllib

import fastgmm
from fastgmm import cli
from fastgmm._io import read
from fastgmm.datasets import load_wholesale

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])),
    MPLBACKEND="Agg")
HAVE_PARQUET = all(importlib.util.find_spec(m) is not None for m in ("pandas", "pyarrow"))


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "fastgmm", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)


# The bad inputs the command line must survive.  name: (arguments, output file
# the command must not leave behind).  Those named by the issue run as
# separate processes; the others through cli.main in this process (same code
# path, no interpreter start-up).
BAD = {
    "missing_data": (["fit", "missing.csv", "--k", "2", "--out", "bad1.npz"], "bad1.npz"),
    "unknown_column": (["fit", "w.csv", "--k", "2", "--columns", "Milk,Nope",
                        "--out", "bad2.npz"], "bad2.npz"),
    "non_numeric_column": (["fit", "text.csv", "--k", "2", "--columns", "a,name",
                            "--out", "bad3.npz"], "bad3.npz"),
    "nan_in_npy": (["fit", "nan.npy", "--k", "2", "--out", "bad5.npz"], "bad5.npz"),
    "k_above_rows": (["fit", "tiny.csv", "--k", "5", "--out", "bad6.npz"], "bad6.npz"),
    "truncated_model": (["predict", "truncated.npz", "w.csv", "--out", "bad8.csv"],
                        "bad8.csv"),
    "tampered_model": (["sample", "tampered.npz", "--n", "5", "--out", "bad9.csv"],
                       "bad9.csv"),
}
BAD_IN_PROCESS = {
    "empty_cell": (["fit", "holes.csv", "--k", "2", "--out", "bad4.npz"], "bad4.npz"),
    "log_of_zero": (["fit", "zeros.csv", "--k", "1", "--log", "--out", "bad7.npz"],
                    "bad7.npz"),
    "future_model": (["info", "future.npz"], None),
    "not_a_model": (["info", "w.csv"], None),
    "missing_model": (["predict", "nothere.npz", "w.csv", "--out", "bad10.csv"],
                      "bad10.csv"),
    "bad_output_suffix": (["predict", "m.npz", "w.csv", "--out", "bad11.txt"], "bad11.txt"),
    "missing_k": (["fit", "w.csv", "--out", "bad12.npz"], "bad12.npz"),
    "bad_k": (["fit", "w.csv", "--k", "0", "--out", "bad13.npz"], "bad13.npz"),
    "no_command": ([], None),
    "ragged_csv": (["fit", "ragged.csv", "--k", "1", "--out", "bad14.npz"], "bad14.npz"),
    "negative_weight": (["fit", "x.npy", "--k", "1", "--columns", "0", "--sample-weight",
                         "1", "--out", "bad15.npz"], "bad15.npz"),
}

BAD_MESSAGES = {
    "missing_data": r"fastgmm fit: error: missing\.csv: no such file",
    "unknown_column": r"unknown column 'Nope'; the columns are Channel, Region, Fresh",
    "non_numeric_column": r"column 'name' is not numeric \(data row 1 holds 'anne'\)",
    "empty_cell": r"column 'b' has a missing value in data row 2",
    "nan_in_npy": r"column '1' is NaN \(a missing value\) in data row 3",
    "k_above_rows": r"--k 5 is larger than the number of data rows \(3\)",
    "log_of_zero": r"--log needs positive values, but column 'y' is 0 in data row 2",
    "truncated_model": r"fastgmm predict: error: truncated\.npz is damaged or truncated",
    "tampered_model": r"tampered\.npz failed its integrity check",
    "future_model": r"model format version 2 .*Upgrade fastgmm",
    "not_a_model": r"w\.csv is not a fastgmm model file",
    "missing_model": r"nothere\.npz: no such file",
    "bad_output_suffix": r"must end in \.csv or \.npy",
    "missing_k": r"fastgmm: error: the following arguments are required: --k",
    "no_command": r"fastgmm: error: choose a command",
    "bad_k": r"argument --k: expected a positive integer( or 'auto')?, got '?0'?",
    "ragged_csv": r"data row 2 has 1 field but the file has 2 columns",
    "negative_weight": r"--sample-weight column '1' has negative values",
}


def _write_inputs(d: Path):
    data = load_wholesale()
    (d / "w.csv").write_bytes(
        (ROOT / "fastgmm" / "data" / "wholesale_customers.csv").read_bytes())
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=(200, 2)) + np.repeat([[0, 0], [4, 4]], 100, axis=0),
                         rng.uniform(0.5, 2.0, 200)])
    np.save(d / "x.npy", X)
    (d / "text.csv").write_text("a,b,name\n1,2,anne\n3,4,bob\n")
    (d / "holes.csv").write_text("a,b\n1,2\n3,\n5,6\n")
    np.save(d / "nan.npy", np.array([[1.0, 2.0], [3.0, 4.0], [5.0, np.nan]]))
    (d / "tiny.csv").write_text("x,y\n1,2\n3,4\n5,7\n")
    (d / "zeros.csv").write_text("x,y\n1,2\n3,0\n")
    (d / "ragged.csv").write_text("x,y\n1,2\n3\n")
    # Damaged model files, from a model saved in this process.
    model = fastgmm.GaussianMixture(2, random_state=0).fit(np.log(data.spending[:, :2]))
    model.save(d / "good.npz")
    raw = (d / "good.npz").read_bytes()
    (d / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    with np.load(d / "good.npz", allow_pickle=False) as f:
        members = {k: f[k] for k in f.files}
    meta = json.loads(members["metadata"].tobytes())
    np.savez(d / "tampered.npz", **dict(members, means_=members["means_"] * 2))
    meta["format_version"] = 2
    body = {k: v for k, v in meta.items() if k != "sha256"}
    import hashlib

    meta["sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True,
                                               separators=(",", ":")).encode()).hexdigest()
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(d / "future.npz", **dict(members, metadata=blob))
    if HAVE_PARQUET:
        import pandas as pd

        pd.DataFrame(X, columns=["u", "v", "w"]).to_parquet(d / "x.parquet")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Run every command once; returns (folder, {name: CompletedProcess})."""
    d = tmp_path_factory.mktemp("cli")
    _write_inputs(d)
    # Compile (or load) the small-data kernels here first, so that the
    # processes below find them in Numba's disk cache instead of each
    # compiling them at once.
    X = np.log(load_wholesale().spending)
    for covariance_type in ("full", "tied", "diag", "spherical"):
        fastgmm.GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(
            X, sample_weight=np.ones(len(X))).predict_proba(X)
    results = {"fit": _run(["fit", "w.csv", "--k", "3", "--columns", "Fresh,Milk,Grocery",
                            "--log", "--standardize", "--n-init", "2", "--seed", "0",
                            "--out", "m.npz"], d)}
    jobs = {
        "fit_npy": ["fit", "x.npy", "--k", "2", "--columns", "0,1", "--sample-weight", "2",
                    "--covariance", "diag", "--seed", "3", "--quiet", "--out", "x_model.npz"],
        "predict": ["predict", "m.npz", "w.csv", "--out", "labels.csv"],
        "predict_proba": ["predict", "m.npz", "w.csv", "--proba", "--out", "proba.npy"],
        "sample": ["sample", "m.npz", "--n", "50", "--seed", "1", "--out", "s.csv"],
        "info": ["info", "m.npz"],
        "demo": ["demo", "--quick", "--out", "demo_out"],
    }
    if HAVE_PARQUET:
        jobs["fit_parquet"] = ["fit", "x.parquet", "--k", "2", "--columns", "u,v", "--seed",
                               "0", "--out", "pq.npz"]
    jobs.update({f"bad_{name}": args for name, (args, _) in BAD.items()})
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_run, args, d) for name, args in jobs.items()}
        results.update({name: f.result() for name, f in futures.items()})
    return d, results


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
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["scripts"]["fastgmm"] == "fastgmm.cli:main"
    module, func = config["project"]["scripts"]["fastgmm"].split(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_fit_writes_model_with_its_preprocessing(ws):
    d, res = ws
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


def test_fit_reports_progress_on_stderr(ws):
    _, res = ws
    lines = res["fit"].stderr.splitlines()
    assert lines[0].startswith("fit: 440 rows x 3 columns from w.csv")
    progress = [ln for ln in lines if "iteration" in ln]
    assert any(re.search(r"init 0\s+iteration\s+1\s+log-likelihood\s+-?\d", ln)
               for ln in progress)
    assert all(re.search(r"change .* \d+\.\d\d s$", ln) for ln in progress)


def test_quiet_weighted_fit_from_npy(ws):
    d, res = ws
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
def test_fit_from_parquet(ws):
    d, res = ws
    _ok(res["fit_parquet"])
    X = np.load(d / "x.npy")
    model = fastgmm.load(d / "pq.npz")
    same = fastgmm.GaussianMixture(2, random_state=0).fit(X[:, :2])
    np.testing.assert_allclose(model.means_, same.means_, rtol=1e-9, atol=1e-12)


def test_predict_applies_the_stored_preprocessing(ws):
    d, res = ws
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


def test_predict_proba_to_npy(ws):
    d, res = ws
    _ok(res["predict_proba"])
    logs, center, scale = _prep(d)
    proba = np.load(d / "proba.npy")
    assert proba.shape == (440, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    model = fastgmm.load(d / "m.npz")
    np.testing.assert_array_equal(proba, model.predict_proba((logs - center) / scale))


def test_sample_is_in_the_original_units(ws):
    d, res = ws
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


def test_info(ws):
    _, res = ws
    out = _ok(res["info"]).stdout
    assert f"format: fastgmm.GaussianMixture version 1 (written by fastgmm " \
           f"{fastgmm.__version__})" in out
    assert "components: 3   features: 3   covariance: full   dtype: float64" in out
    assert "features: z(log(Fresh)), z(log(Milk)), z(log(Grocery))" in out
    assert "preprocessing: log, standardise" in out


def test_demo_writes_pngs_and_prints_the_segment_table(ws):
    from matplotlib.image import imread

    d, res = ws
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
    assert "demo: wrote" in proc.stderr


def _check_one_line_error(name, status, stdout, stderr, folder, out):
    assert status == 2, (stdout, stderr)
    assert "Traceback" not in stderr
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert re.search(BAD_MESSAGES[name], lines[0]), lines[0]
    if out is not None:
        assert not (folder / out).exists()


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_exits_2_with_one_line(ws, name):
    d, res = ws
    proc = res[f"bad_{name}"]
    _check_one_line_error(name, proc.returncode, proc.stdout, proc.stderr, d, BAD[name][1])


@pytest.mark.parametrize("name", list(BAD_IN_PROCESS))
def test_more_bad_input_exits_2_with_one_line(ws, name, monkeypatch, capsys):
    d, _ = ws
    monkeypatch.chdir(d)
    args, out = BAD_IN_PROCESS[name]
    status = cli.main(args)
    captured = capsys.readouterr()
    _check_one_line_error(name, status, captured.out, captured.err, d, out)


def test_no_temporary_files_anywhere(ws):
    d, _ = ws
    assert [p.name for p in d.iterdir() if p.name.startswith(".")] == []


def test_failed_write_leaves_the_old_file_intact(ws, tmp_path, monkeypatch, capsys):
    """A write that dies half-way (disk full) leaves no partial output."""
    d, _ = ws
    out = tmp_path / "labels.csv"
    out.write_text("old\n")
    real_savetxt = np.savetxt

    def failing_savetxt(f, values, **kw):
        real_savetxt(f, values[:10], **kw)     # part of the file, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savetxt", failing_savetxt)
    status = cli.main(["predict", str(d / "m.npz"), str(d / "w.csv"), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.strip() == "fastgmm predict: error: No space left on device"
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]


def test_demo_without_matplotlib_still_prints_the_tables(tmp_path, monkeypatch, capsys):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)
    status = cli.main(["demo", "--quick", "--out", str(tmp_path / "demo")])
    captured = capsys.readouterr()
    assert status == 0
    assert "segment  customers  share" in captured.out
    assert "BIC prefers k=" in captured.out
    assert 'plots skipped: they need matplotlib (pip install "fastgmm[plot]")' in captured.err
    assert not (tmp_path / "demo").exists()
