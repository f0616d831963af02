"""The command line at its edges: exact round trips, one number reader, errors that
name their cause, closed pipes, seeds, subcommand names and hopeless fits.

Commands run through :func:`fastgmm.cli.main` in this process, except where the
behaviour belongs to a process (a closed standard output): those run
``python -m fastgmm`` as a subprocess.  Expected values come from the input
files themselves, from Python's float formatting and parsing, or from scipy
densities of the model's parameters.
"""

from __future__ import annotations

import csv
import math
import re
import subprocess
import sys
import time
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np
import pytest
from conftest import CLI_ENV
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import fastgmm
from fastgmm import cli


def _run(capsys, *args):
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def _error(capsys, *args) -> str:
    """The one stderr line of a command that must fail with status 2."""
    status, out, err = _run(capsys, *args)
    assert status == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _cells(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _positive_rows(n=150, seed=1):
    """Positive values of two clusters, with many short decimals (0.3456-like)."""
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.lognormal([0.0, 1.0], 0.3, (n // 2, 2)),
                   rng.lognormal([1.5, 0.0], 0.3, (n - n // 2, 2))])
    return np.round(X, 4)


def _write(path, header, rows, holes=()):
    """CSV from ``rows`` with ``repr`` text; cells in ``holes`` (row, col) left empty."""
    holes = set(holes)
    lines = [header]
    for i, row in enumerate(rows):
        lines.append(",".join("" if (i, j) in holes else repr(float(v))
                              for j, v in enumerate(row)))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def gaps(tmp_path, monkeypatch):
    """A CSV of positive values with 40 empty cells, and the positions of the holes."""
    monkeypatch.chdir(tmp_path)
    X = _positive_rows()
    rng = np.random.default_rng(7)
    rows = rng.choice(X.shape[0], 40, replace=False)
    holes = [(int(i), int(rng.integers(2))) for i in rows]
    _write(tmp_path / "gaps.csv", "a,b", X, holes)
    return tmp_path, X, holes


# ---------------------------------------------------------------------------
# impute: observed cells come back exactly, as the same text
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("prep", [["--log"], ["--standardize"], ["--log", "--standardize"]])
def test_impute_writes_observed_cells_exactly_as_read(gaps, capsys, prep):
    d, X, holes = gaps
    status, _, err = _run(capsys, "fit", "gaps.csv", "--k", "2", "--missing", *prep,
                          "--seed", "0", "--quiet", "--out", "m.npz")
    assert status == 0, err
    status, out, err = _run(capsys, "impute", "m.npz", "gaps.csv", "--out", "filled.csv")
    assert status == 0, err
    assert f"filled {len(holes)} missing cells" in out
    written = _cells(d / "filled.csv")
    read = _cells(d / "gaps.csv")
    assert written[0] == ["a", "b"]
    assert len(written) == len(read)
    hole_set = set(holes)
    for i, (w_row, r_row) in enumerate(zip(written[1:], read[1:], strict=True)):
        for j in range(2):
            if (i, j) in hole_set:
                value = float(w_row[j])
                assert math.isfinite(value) and value > 0        # exp() of a finite value
            else:
                assert w_row[j] == r_row[j]                      # the same text
                assert float(w_row[j]) == X[i, j]                # the same double


# ---------------------------------------------------------------------------
# numbers are written as the shortest text that reads back to the same double
# ---------------------------------------------------------------------------


def _shortest(text: str) -> bool:
    """Whether ``text`` is a shortest spelling of the double it reads back to.

    Independent of ``repr``: neither decimal with one significant digit fewer
    next to the value (rounded down or up, exactly, with ``decimal``) reads
    back to the same double.
    """
    value = float(text)
    n = len(Decimal(text).normalize().as_tuple().digits)
    if not math.isfinite(value) or value == 0 or n == 1:
        return True
    exact = Decimal(value)
    quantum = Decimal(1).scaleb(exact.adjusted() - (n - 2))
    return all(float(exact.quantize(quantum, rounding=r)) != value
               for r in (ROUND_FLOOR, ROUND_CEILING))


def test_the_shortness_check_can_fail():
    assert _shortest("0.3456") and _shortest(repr(0.1 + 0.2)) and _shortest("1e-05")
    assert not _shortest(f"{0.3456:.17g}")          # 0.34560000000000002
    assert not _shortest("0.30000000000000004440")


def test_outputs_are_the_shortest_round_trip_text(gaps, capsys):
    d, X, _ = gaps
    status, _, err = _run(capsys, "fit", "gaps.csv", "--k", "2", "--missing", "--seed", "0",
                          "--quiet", "--out", "m.npz")
    assert status == 0, err
    for args in (["predict", "m.npz", "gaps.csv", "--proba", "--out", "p.csv"],
                 ["score", "m.npz", "gaps.csv", "--out", "s.csv"],
                 ["sample", "m.npz", "--n", "50", "--seed", "3", "--out", "x.csv"]):
        status, _, err = _run(capsys, *args)
        assert status == 0, err
    rows = _cells(d / "p.csv")[1:]
    assert len(rows) == X.shape[0] and all(len(row) == 2 for row in rows)
    texts = [t for row in rows for t in row] + [row[0] for row in _cells(d / "s.csv")[1:]]
    sample = _cells(d / "x.csv")
    assert sample[0] == ["a", "b", "component"]
    texts += [t for row in sample[1:] for t in row[:2]]
    for t in texts:
        assert _shortest(t), t
        assert len(t) < 25, t           # never the 17-digit form with its noise digits
    # the component column is an integer column
    assert all(re.fullmatch(r"[01]", row[2]) for row in sample[1:])


def test_a_short_decimal_stays_short(tmp_path, monkeypatch, capsys):
    """0.3456 is written 0.3456, not 0.34560000000000002."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").write_text("a,b\n" + "".join(
        f"{0.3456 + i / 100!r},{1.0 + (i % 7) / 10!r}\n" for i in range(30)) + "0.3456,\n")
    assert _run(capsys, "fit", "d.csv", "--k", "1", "--missing", "--quiet",
                "--out", "m.npz")[0] == 0
    assert _run(capsys, "impute", "m.npz", "d.csv", "--out", "f.csv")[0] == 0
    assert _cells(tmp_path / "f.csv")[-1][0] == "0.3456"


# ---------------------------------------------------------------------------
# rows with gaps are scored by a --missing model, as by the Python API
# ---------------------------------------------------------------------------


def _marginal_logpdf(model, x):
    """The scipy log-density of the observed entries of ``x`` under a full-covariance model."""
    obs = ~np.isnan(x)
    terms = [np.log(w) + multivariate_normal(m[obs], c[np.ix_(obs, obs)]).logpdf(x[obs])
             for w, m, c in zip(model.weights_, model.means_, model.covariances_, strict=True)]
    return logsumexp(terms)


def test_predict_and_score_accept_gaps_with_a_missing_model(gaps, capsys):
    d, X, holes = gaps
    status, _, err = _run(capsys, "fit", "gaps.csv", "--k", "2", "--missing", "--seed", "0",
                          "--quiet", "--out", "m.npz")
    assert status == 0, err
    status, out, err = _run(capsys, "predict", "m.npz", "gaps.csv", "--out", "labels.csv")
    assert status == 0, err
    assert f"({len(holes)} with missing values" in out
    status, _, err = _run(capsys, "score", "m.npz", "gaps.csv", "--out", "s.csv")
    assert status == 0, err
    model = fastgmm.load(d / "m.npz")
    Xg = X.copy()
    for i, j in holes:
        Xg[i, j] = np.nan
    scores = np.array([float(r[0]) for r in _cells(d / "s.csv")[1:]])
    expected = np.array([_marginal_logpdf(model, x) for x in Xg])
    np.testing.assert_allclose(scores, expected, rtol=1e-9, atol=1e-9)
    labels = np.array([int(r[0]) for r in _cells(d / "labels.csv")[1:]])
    # the most probable component, from the same scipy densities
    for x, label in zip(Xg, labels, strict=True):
        obs = ~np.isnan(x)
        joint = [np.log(w) + multivariate_normal(m[obs], c[np.ix_(obs, obs)]).logpdf(x[obs])
                 for w, m, c in zip(model.weights_, model.means_, model.covariances_,
                                    strict=True)]
        assert label == int(np.argmax(joint))


def test_a_complete_data_model_refuses_gaps_and_says_why(gaps, capsys):
    d, X, holes = gaps
    _write(d / "full.csv", "a,b", X)
    assert _run(capsys, "fit", "full.csv", "--k", "2", "--seed", "0", "--quiet",
                "--out", "m.npz")[0] == 0
    for command in ("predict", "score"):
        line = _error(capsys, command, "m.npz", "gaps.csv", "--out", "o.csv")
        assert line.startswith(f"fastgmm {command}: error: gaps.csv: column ")
        assert "fitted without --missing" in line
        assert "or fit with --missing" not in line
        assert not (d / "o.csv").exists()


@pytest.mark.parametrize("prep", [["--standardize"], ["--log"]])
def test_score_is_the_density_in_the_units_of_the_data(gaps, capsys, prep):
    """With preprocessing, the log-density of x includes the Jacobian of x -> z."""
    d, X, _ = gaps
    _write(d / "full.csv", "a,b", X)
    assert _run(capsys, "fit", "full.csv", "--k", "1", *prep, "--quiet",
                "--out", "m.npz")[0] == 0
    assert _run(capsys, "score", "m.npz", "full.csv", "--out", "s.csv")[0] == 0
    scores = np.array([float(r[0]) for r in _cells(d / "s.csv")[1:]])
    model = fastgmm.load(d / "m.npz")
    mu, cov = model.means_[0], model.covariances_[0]
    if prep == ["--standardize"]:
        center, scale = X.mean(axis=0), X.std(axis=0)
        expected = multivariate_normal(center + scale * mu,
                                       cov * np.outer(scale, scale)).logpdf(X)
    else:  # a log-normal density: the normal density of log x, over the product of x
        expected = multivariate_normal(mu, cov).logpdf(np.log(X)) - np.log(X).sum(axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-9)


# ---------------------------------------------------------------------------
# errors name their real cause; one number reader
# ---------------------------------------------------------------------------


@pytest.fixture
def small(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    return tmp_path, rng.normal(size=(40, 2))


def test_a_ragged_row_is_reported_as_ragged(small, capsys):
    d, X = small
    _write(d / "r.csv", "a,b", X)
    lines = (d / "r.csv").read_text().splitlines()
    lines[5] = lines[5].split(",")[0]
    (d / "r.csv").write_text("\n".join(lines) + "\n")
    for extra in ([], ["--missing"]):
        line = _error(capsys, "fit", "r.csv", "--k", "2", *extra, "--out", "m.npz")
        assert "data row 5 has 1 field but the file has 2 columns (line 6)" in line
        assert "missing" not in line


def test_a_line_of_spaces_is_reported_as_such(small, capsys):
    d, X = small
    _write(d / "s.csv", "a,b", X)
    lines = (d / "s.csv").read_text().splitlines()
    lines.insert(3, "   ")
    (d / "s.csv").write_text("\n".join(lines) + "\n")
    for extra in ([], ["--missing"]):
        line = _error(capsys, "fit", "s.csv", "--k", "2", *extra, "--out", "m.npz")
        assert "data row 3 (line 4) holds only spaces" in line
        assert "missing value" not in line


def test_an_empty_weight_cell_is_not_a_missing_feature(small, capsys):
    d, X = small
    lines = ["a,b,w"] + [f"{float(a)!r},{float(b)!r},1" for a, b in X]
    lines[4] = lines[4].removesuffix("1")
    (d / "w.csv").write_text("\n".join(lines) + "\n")
    for extra in ([], ["--missing"]):
        line = _error(capsys, "fit", "w.csv", "--k", "2", "--sample-weight", "w", *extra,
                      "--out", "m.npz")
        assert "column 'w' has a missing value in data row 4" in line
        assert "every row needs a weight" in line
        assert "or fit with --missing" not in line


@pytest.mark.parametrize("cell", ["1_0", "\u0661\u0662", "0x10", "1,5"])
def test_one_reader_refuses_the_same_cells_with_and_without_missing(small, capsys, cell):
    """``float`` reads 1_0 and Arabic-Indic digits; a data file means neither."""
    d, X = small
    assert float("1_0") == 10 and float("\u0661\u0662") == 12   # what the reader must not do
    _write(d / "c.csv", "a,b", X)
    lines = (d / "c.csv").read_text().splitlines()
    quoted = f'"{cell}"' if "," in cell else cell
    lines[2] = quoted + "," + lines[2].split(",")[1]
    (d / "c.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    verdicts = {_error(capsys, "fit", "c.csv", "--k", "2", *extra, "--out", "m.npz")
                .split("error: ", 1)[1] for extra in ([], ["--missing"])}
    assert verdicts == {f"c.csv: column 'a' is not numeric (data row 2 holds {cell!r})"}


def test_the_reader_takes_plain_decimal_notation(small, capsys):
    d, _ = small
    cells = ["1", "-2.5", "+3.", ".5", "1e3", "-1.5E-2", " 7 ", "0.3456"]
    rows = [f"{c},{i}" for i, c in enumerate(cells)] + [f"{i},{i % 3}" for i in range(20)]
    (d / "p.csv").write_text("a,b\n" + "\n".join(rows) + "\n")
    assert _run(capsys, "fit", "p.csv", "--k", "1", "--quiet", "--missing",
                "--out", "m.npz")[0] == 0
    assert _run(capsys, "impute", "m.npz", "p.csv", "--out", "o.csv")[0] == 0
    written = [float(r[0]) for r in _cells(d / "o.csv")[1:len(cells) + 1]]
    assert written == [float(c) for c in cells]


# ---------------------------------------------------------------------------
# argument errors name the subcommand; output folders are checked first
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, prog, match", [
    (["fit", "x.csv", "--k", "many", "--out", "m.npz"], "fastgmm fit",
     r"argument --k: expected a positive integer or 'auto'"),
    (["fit", "x.csv", "--out", "m.npz"], "fastgmm fit", r"required: --k"),
    (["predict", "m.npz", "x.csv", "--out", "o.csv", "--bogus"], "fastgmm predict",
     r"unrecognized arguments: --bogus"),
    (["sample", "m.npz", "--n", "-3", "--out", "o.csv"], "fastgmm sample",
     r"argument --n: expected a positive integer"),
    (["demo", "--seed", "x"], "fastgmm demo", r"argument --seed"),
    (["frobnicate"], "fastgmm", r"invalid choice: 'frobnicate'"),
])
def test_argument_errors_name_the_subcommand(small, capsys, args, prog, match):
    line = _error(capsys, *args)
    assert line.startswith(f"{prog}: error: "), line
    assert re.search(match, line), line
    assert line.endswith(f"(see '{prog} --help')")


def test_demo_checks_its_folder_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    start = time.perf_counter()
    status, out, err = _run(capsys, "demo", "--quick", "--out", "afile/plots")
    assert status == 2
    assert out == ""
    assert err.strip() == ("fastgmm demo: error: --out afile/plots: cannot write there "
                           "(Not a directory)")
    assert time.perf_counter() - start < 5        # no fit ran (a quick demo takes longer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_demo_creates_its_folder_before_any_work(tmp_path, monkeypatch, capsys):
    """The folder exists (and was written to) before the first fit."""
    import fastgmm._demo

    monkeypatch.chdir(tmp_path)
    seen = []

    def stop_at_first_step(out_dir, **kw):
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        raise KeyboardInterrupt

    monkeypatch.setattr(fastgmm._demo, "run_demo", stop_at_first_step)
    assert _run(capsys, "demo", "--out", "a/b/plots")[0] == 130
    assert seen == [["a"]] and (tmp_path / "a" / "b" / "plots").is_dir()
    assert list((tmp_path / "a" / "b" / "plots").iterdir()) == []   # the probe is gone


# ---------------------------------------------------------------------------
# --k auto is seeded; k >= distinct rows is warned about
# ---------------------------------------------------------------------------


def test_k_auto_without_seed_uses_the_stated_default(small, capsys):
    d, _ = small
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(0, 1, (40, 2)), rng.normal(3, 1, (40, 2))])
    _write(d / "a.csv", "a,b", X)
    help_text = cli._build_parser()._subparsers._group_actions[0].choices["fit"].format_help()
    assert re.search(r"--k\s+auto\s+uses\s+seed\s+0", help_text)
    outs = []
    for args in ([], [], ["--seed", "0"]):
        status, out, err = _run(capsys, "fit", "a.csv", "--k", "auto", "--max-iter", "30",
                                *args, "--out", "m.npz")
        assert status == 0, err
        outs.append(out)
        if not args:
            assert "seed 0 (the default" in err
    tables = [re.findall(r"^ +\d+ .*$", out, flags=re.M) for out in outs]
    assert tables[0] == tables[1] == tables[2]          # the same criteria, the same k
    assert any("<- chosen" in row for row in tables[0])


@pytest.mark.parametrize("rows, k, warned", [
    (["0,0", "1,1", "2,5"], 3, True),                        # 3 rows, 3 components
    (["0,0", "1,1", "2,5", "0,0", "1,1", "2,5"], 3, True),   # 6 rows, 3 distinct
    (["0,0", "1,1", "2,5", "0,1", "1,0", "2,2"], 3, False),
])
def test_a_warning_when_components_reach_the_distinct_rows(small, capsys, rows, k, warned):
    d, _ = small
    (d / "t.csv").write_text("a,b\n" + "\n".join(rows) + "\n")
    status, _, err = _run(capsys, "fit", "t.csv", "--k", str(k), "--quiet", "--out", "m.npz")
    assert status == 0, err
    n_distinct = len(set(rows))
    message = f"fastgmm fit: warning: {k} components for {n_distinct} distinct data rows"
    assert (message in err) == warned, err


# ---------------------------------------------------------------------------
# a closed standard output is not an error (processes)
# ---------------------------------------------------------------------------


def test_a_closed_pipe_ends_quietly_after_the_work(tmp_path):
    rng = np.random.default_rng(2)
    _write(tmp_path / "p.csv", "a,b", rng.normal(size=(80, 2)))
    command = (f"{sys.executable} -m fastgmm fit p.csv --k auto --max-iter 20 --out m.npz "
               "| head -1; echo \"status ${PIPESTATUS[0]}\"")
    # Unbuffered: every print meets the closed pipe, also those before the final fit.
    env = dict(CLI_ENV, PYTHONUNBUFFERED="1")
    proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = proc.stdout.splitlines()
    assert lines[-1] == "status 0", (proc.stdout, proc.stderr)
    assert len(lines) == 2                        # head's one line, then the status
    assert "Broken pipe" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "error" not in proc.stderr, proc.stderr
    assert fastgmm.load(tmp_path / "m.npz").n_components >= 1


def test_a_reader_that_closes_at_once_gets_nothing_and_no_error(tmp_path):
    rng = np.random.default_rng(2)
    _write(tmp_path / "p.csv", "a,b", rng.normal(size=(80, 2)))
    proc = subprocess.Popen([sys.executable, "-m", "fastgmm", "fit", "p.csv", "--k", "2",
                             "--out", "m.npz"], cwd=tmp_path, env=CLI_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                           # the reader is gone before any output
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert b"Broken pipe" not in err and b"Traceback" not in err, err
    assert fastgmm.load(tmp_path / "m.npz").n_components == 2


def test_the_number_reader_is_ascii_decimal_notation():
    """``parse_cell`` accepts exactly the grammar the docs state, checked on many strings
    against a regular expression written from that statement.
    """
    grammar = re.compile(r"[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)",
                         re.ASCII | re.IGNORECASE)
    pieces = ["", "1", "0", "12", ".", "5", "e", "E", "+", "-", "_", "inf", "nan", "x",
              "\u0661", "\u00bd", ",", " ", "infinity", "0x", "d"]
    rng = np.random.default_rng(0)
    samples = {"".join(rng.choice(pieces, size=int(rng.integers(1, 5))))
               for _ in range(20000)}
    samples |= {"1_0", "1e5", "-.5e-3", "+3.", "NaN", "-Inf", "1.5d3", "١٢", "1e", "e1"}
    for text in samples:
        value = cli.parse_cell(text)
        stripped = text.strip()
        if stripped.upper() in ("", "NA", "N/A", "NULL", "NAN"):
            assert value is not None and math.isnan(value), text
        elif grammar.fullmatch(stripped):
            assert value == float(stripped) or (math.isnan(value) and "nan" in text.lower())
        else:
            assert value is None, text
