"""Progress of ``fastgmm.select`` (``verbose``) and of the command line's ``--k auto``."""

import re

import numpy as np
import pytest

import fastgmm
from fastgmm import cli

LINE = re.compile(r"select: (\d+)/(\d+) cells  (\w+) k=(\d+): BIC (-?[\d.]+) \((converged|did "
                  r"not converge) in \d+ iterations\)  [\d.]+ s  best so far: (\w+) k=(\d+) "
                  r"BIC (-?[\d.]+)$")


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(4)
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    return centers[rng.integers(0, 3, 600)] + rng.normal(size=(600, 2))


@pytest.mark.parametrize("concurrent", [False, True])
def test_one_line_per_cell_with_the_best_so_far(X, capsys, concurrent):
    result = fastgmm.select(X, range(1, 5), ("full", "diag"), random_state=0, verbose=1,
                            concurrent=concurrent, n_threads=2)
    lines = capsys.readouterr().err.strip().splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert len(lines) == 8 and all(parsed), lines
    assert [int(m[1]) for m in parsed] == list(range(1, 9))
    assert {int(m[2]) for m in parsed} == {8}
    # Every cell appears once, with the BIC the result records for it.
    crit = result.criteria_
    table = {(str(c), int(k)): float(b) for c, k, b in
             zip(crit["covariance_type"], crit["n_components"], crit["bic"], strict=True)}
    seen = {(m[3], int(m[4])): float(m[5]) for m in parsed}
    assert seen.keys() == table.keys()
    for cell, bic in seen.items():
        assert bic == pytest.approx(table[cell], abs=0.006)
    # The best so far is the minimum of the cells reported up to that line,
    # and the last line names the selected model.
    running = np.minimum.accumulate([float(m[5]) for m in parsed])
    np.testing.assert_allclose([float(m[9]) for m in parsed], running, atol=0.006)
    last = parsed[-1]
    assert (last[7], int(last[8])) == (result.best_params_["covariance_type"],
                                       result.best_params_["n_components"])


def test_silent_by_default_and_fit_progress_at_verbose_2(X, capsys):
    fastgmm.select(X, [1, 2], "diag", random_state=0)
    assert capsys.readouterr().err == ""
    fastgmm.select(X, [1, 2], "diag", random_state=0, verbose=2)
    err = capsys.readouterr().err
    assert err.count("select: ") == 2
    assert err.count("Initialization 0") >= 2  # each cell's EM progress


def test_verbose_is_checked(X):
    with pytest.raises(ValueError, match="verbose must be >= 0"):
        fastgmm.select(X, [1, 2], verbose=-1)


def test_command_line_k_auto_reports_progress_on_stderr(X, tmp_path, capsys):
    data = tmp_path / "x.csv"
    np.savetxt(data, X, delimiter=",", header="a,b", comments="")
    assert cli.main(["fit", str(data), "--k", "auto", "--covariance", "diag", "--seed", "0",
                     "--out", str(tmp_path / "m.npz")]) == 0
    err = capsys.readouterr().err
    assert err.count("select: ") == 9 and "9/9 cells" in err
    assert cli.main(["fit", str(data), "--k", "auto", "--covariance", "diag", "--seed", "0",
                     "--quiet", "--out", str(tmp_path / "m2.npz")]) == 0
    assert "select: " not in capsys.readouterr().err
