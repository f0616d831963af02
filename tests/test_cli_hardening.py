"""The command line never loses a row or an input, and every error is one line.

Commands run through :func:`fastgmm.cli.main` in this process (the same code
path as the console script, without an interpreter start-up per command).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile

import numpy as np
import pytest

import fastgmm
from fastgmm import cli


def _rows(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal([0.0, 0.0], 1.0, (n // 2, 2)),
                      rng.normal([6.0, 4.0], 1.0, (n - n // 2, 2))])


def _write_csv(path, header, rows, first_cells=None):
    """A CSV file; ``first_cells`` replaces the first field of each row when given."""
    lines = [] if header is None else [header]
    for i, row in enumerate(rows):
        cells = [repr(float(v)) for v in row]
        if first_cells is not None:
            cells[0] = first_cells[i]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")


def _run(capsys, *args):
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def _one_line_error(capsys, command, *args, match):
    status, out, err = _run(capsys, command, *args)
    assert status == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fastgmm {command}: error: "), err
    assert re.search(match, lines[0]), lines[0]
    return lines[0]


@pytest.fixture
def work(tmp_path, monkeypatch, capsys):
    """A folder with a CSV file and a model fitted on it by the command line."""
    monkeypatch.chdir(tmp_path)
    X = _rows()
    _write_csv(tmp_path / "data.csv", "a,b", X)
    status, _, err = _run(capsys, "fit", "data.csv", "--k", "2", "--seed", "0", "--quiet",
                          "--out", "model.npz")
    assert status == 0, err
    return tmp_path, X


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


# ---------------------------------------------------------------------------
# no comment character
# ---------------------------------------------------------------------------


def test_rows_starting_with_a_hash_are_never_dropped(work, capsys):
    d, X = work
    ids = [f"#{i:03d}" for i in range(len(X))]            # ids and colour codes
    rows = np.column_stack([np.zeros(len(X)), X])
    _write_csv(d / "ids.csv", "id,a,b", rows, first_cells=ids)
    status, _, err = _run(capsys, "fit", "ids.csv", "--k", "2", "--columns", "a,b",
                          "--seed", "0", "--quiet", "--out", "ids_model.npz")
    assert status == 0, err
    status, out, err = _run(capsys, "predict", "ids_model.npz", "ids.csv", "--out", "ids.out.csv")
    assert status == 0, err
    assert f"of {len(X)} rows" in out
    assert len(_csv_rows(d / "ids.out.csv")) == len(X) + 1   # header + one line per row


def test_a_numeric_column_starting_with_a_hash_is_an_error_not_a_skipped_row(work, capsys):
    d, X = work
    cells = [repr(float(v)) for v in X[:, 0]]
    cells[4] = "#" + cells[4]
    _write_csv(d / "hash.csv", "a,b", X, first_cells=cells)
    _one_line_error(capsys, "predict", "model.npz", "hash.csv", "--out", "p.csv",
                    match=r"hash\.csv: column 'a' is not numeric \(data row 5 holds '#")
    _one_line_error(capsys, "fit", "hash.csv", "--k", "2", "--out", "h.npz",
                    match=r"column 'a' is not numeric \(data row 5")
    assert not (d / "p.csv").exists() and not (d / "h.npz").exists()


# ---------------------------------------------------------------------------
# header detection
# ---------------------------------------------------------------------------


def test_a_missing_value_in_the_first_row_of_a_headerless_file_is_not_a_header(work, capsys):
    d, X = work
    _write_csv(d / "nohead.csv", None, X)
    text = (d / "nohead.csv").read_text().splitlines()
    text[0] = text[0].split(",")[0] + ","                  # "1.25," : b is missing
    (d / "nohead.csv").write_text("\n".join(text) + "\n")
    line = _one_line_error(capsys, "fit", "nohead.csv", "--k", "2", "--quiet", "--out", "n.npz",
                           match=r"column '1' has a missing value in data row 1")
    assert "note" not in line
    text[0] = text[0] + "NA"                               # "1.25,NA" : the same, spelt NA
    (d / "nohead.csv").write_text("\n".join(text) + "\n")
    _one_line_error(capsys, "predict", "model.npz", "nohead.csv", "--out", "n.csv",
                    match=r"column '1' has a missing value in data row 1")


def test_a_header_of_numbers_is_read_as_data_and_says_so(work, capsys):
    d, X = work
    _write_csv(d / "years.csv", "2019,2020", X)
    status, out, err = _run(capsys, "fit", "years.csv", "--k", "2", "--seed", "0", "--quiet",
                            "--out", "years.npz")
    assert status == 0, err
    assert err.count("\n") == 1
    assert err.startswith("fastgmm fit: note: years.csv: the first row holds numbers only, "
                          "so it is read as data"), err
    assert f"to {len(X) + 1} rows" in out
    # Said explicitly: a header, no note, every data row kept.
    status, out, err = _run(capsys, "fit", "years.csv", "--k", "2", "--seed", "0", "--quiet",
                            "--header", "yes", "--out", "years2.npz")
    assert status == 0 and err == "", err
    assert f"to {len(X)} rows" in out and "columns: 2019, 2020" in out
    mf = fastgmm._io.read(d / "years2.npz")
    assert mf.extra["cli"]["columns"] == ["2019", "2020"]
    # And --header no keeps the first row as data, silently.
    status, out, err = _run(capsys, "predict", "model.npz", "years.csv", "--header", "no",
                            "--out", "y.csv")
    assert status == 0 and err == "", err
    assert len(_csv_rows(d / "y.csv")) == len(X) + 2


def test_names_above_numbers_are_a_header(work, capsys):
    d, X = work
    _write_csv(d / "mixed.csv", "a,2020", X)
    status, out, err = _run(capsys, "fit", "mixed.csv", "--k", "2", "--seed", "0", "--quiet",
                            "--out", "mixed.npz")
    assert status == 0 and err == "", err
    assert f"to {len(X)} rows" in out


def test_names_above_names_are_not_taken_for_a_header(work, capsys):
    d, X = work
    ids = ["id"] + [f"a{i}" for i in range(1, len(X))]   # id, 2019, 2020 above a1, ...
    rows = np.column_stack([np.zeros(len(X)), X])
    _write_csv(d / "years_ids.csv", None, rows, first_cells=ids)
    text = (d / "years_ids.csv").read_text().splitlines()
    text[0] = "id,2019,2020"
    (d / "years_ids.csv").write_text("\n".join(text) + "\n")
    _one_line_error(capsys, "fit", "years_ids.csv", "--k", "2", "--out", "yi.npz",
                    match=r"cannot tell whether the first row \('id,2019,2020'\) is a header")
    status, out, err = _run(capsys, "fit", "years_ids.csv", "--k", "2", "--columns",
                            "2019,2020", "--header", "yes", "--seed", "0", "--quiet",
                            "--out", "yi.npz")
    assert status == 0 and err == "", err
    assert f"to {len(X) - 1} rows" in out


def test_an_ambiguous_first_row_is_an_error(work, capsys):
    d, X = work
    ids = ["a7"] + [f"b{i}" for i in range(1, len(X))]
    _write_csv(d / "ambiguous.csv", None, np.column_stack([np.zeros(len(X)), X]),
               first_cells=ids)
    _one_line_error(capsys, "fit", "ambiguous.csv", "--k", "2", "--out", "amb.npz",
                    match=r"cannot tell whether the first row .* is a header.*--header yes "
                          r"or --header no")
    status, _, err = _run(capsys, "fit", "ambiguous.csv", "--k", "2", "--columns", "1,2",
                          "--header", "no", "--seed", "0", "--quiet", "--out", "amb.npz")
    assert status == 0, err


def test_a_header_only_file_is_one_line(work, capsys):
    d, _ = work
    (d / "header_only.csv").write_text("a,b\n")
    _one_line_error(capsys, "fit", "header_only.csv", "--k", "1", "--out", "ho.npz",
                    match=r"header_only\.csv has no data rows$")


def test_a_file_starting_with_blank_lines_is_read(work, capsys):
    d, X = work
    _write_csv(d / "blank.csv", "a,b", X)
    (d / "blank.csv").write_text("\n\n" + (d / "blank.csv").read_text())
    status, out, err = _run(capsys, "predict", "model.npz", "blank.csv", "--out", "b.csv")
    assert status == 0, err
    assert len(_csv_rows(d / "b.csv")) == len(X) + 1
    (d / "blanks_only.csv").write_text("\n\n\n")
    _one_line_error(capsys, "fit", "blanks_only.csv", "--k", "1", "--out", "e.npz",
                    match=r"blanks_only\.csv is empty")


# ---------------------------------------------------------------------------
# outputs never replace inputs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, victim", [
    (["predict", "model.npz", "data.csv", "--out", "data.csv"], "data.csv"),
    (["predict", "model.npz", "data.csv", "--proba", "--out", "model.npz"], "model.npz"),
    (["fit", "data.csv", "--k", "2", "--out", "data.csv"], "data.csv"),
    (["sample", "model.npz", "--n", "5", "--out", "model.npz"], "model.npz"),
])
def test_an_output_that_is_an_input_is_refused(work, capsys, args, victim):
    d, _ = work
    before = (d / victim).read_bytes()
    _one_line_error(capsys, args[0], *args[1:],
                    match=rf"--out {victim} is the input file {victim}")
    assert (d / victim).read_bytes() == before


def test_an_output_linked_to_an_input_is_refused(work, capsys):
    d, _ = work
    (d / "alias.csv").symlink_to(d / "data.csv")
    before = (d / "data.csv").read_bytes()
    _one_line_error(capsys, "predict", "model.npz", "data.csv", "--out", "alias.csv",
                    match=r"is the input file data\.csv")
    assert (d / "data.csv").read_bytes() == before


# ---------------------------------------------------------------------------
# CSV quoting, stored preprocessing, impossible sizes, crafted models
# ---------------------------------------------------------------------------


def test_names_with_commas_and_quotes_are_quoted(work, capsys):
    d, X = work
    _write_csv(d / "odd.csv", '"x,y","say ""hi"""', X)
    status, _, err = _run(capsys, "fit", "odd.csv", "--k", "2", "--seed", "0", "--quiet",
                          "--out", "odd.npz")
    assert status == 0, err
    status, _, err = _run(capsys, "sample", "odd.npz", "--n", "7", "--seed", "1",
                          "--out", "odd_s.csv")
    assert status == 0, err
    rows = _csv_rows(d / "odd_s.csv")
    assert rows[0] == ["x,y", 'say "hi"', "component"]
    assert all(len(row) == 3 for row in rows) and len(rows) == 8


def _save_with_cli(path, cli_settings, extra_arrays=None):
    model = fastgmm.GaussianMixture(2, random_state=0).fit(_rows())
    fastgmm._io.save(model, path, extra={"cli": cli_settings}, extra_arrays=extra_arrays)


@pytest.mark.parametrize("settings, arrays, match", [
    ({"log": False}, None, r"'columns' must list the model's 2 column names"),
    ({"columns": ["a"]}, None, r"'columns' must list"),
    ({"columns": ["a", "a"]}, None, r"names a column twice"),
    ({"columns": ["a", "b"], "log": "yes"}, None, r"'log' must be true or false"),
    ({"columns": ["a", "b"], "standardize": True}, None, r"extra\.center of 2 finite"),
    ({"columns": ["a", "b"], "standardize": True},
     {"center": np.zeros(2), "scale": np.array([1.0, 0.0])}, r"extra\.scale must be positive"),
    ({"columns": ["a", "b"], "surprise": 1}, None, r"unknown key\(s\) \['surprise'\]"),
    ([1, 2], None, r"not a JSON object"),
])
def test_bad_stored_preprocessing_is_one_line(work, capsys, settings, arrays, match):
    d, _ = work
    _save_with_cli(d / "odd_cli.npz", settings, arrays)
    for args in (["info", "odd_cli.npz"], ["sample", "odd_cli.npz", "--n", "3", "--out", "s.csv"],
                 ["predict", "odd_cli.npz", "data.csv", "--out", "p.csv"]):
        _one_line_error(capsys, *args, match=r"odd_cli\.npz: the command-line preprocessing "
                                             r"stored in the model \(extra\.cli\) is not valid: .*"
                        + match)
    assert not (d / "s.csv").exists() and not (d / "p.csv").exists()


def test_impossible_sample_sizes_are_one_line(work, capsys, monkeypatch):
    _one_line_error(capsys, "sample", "model.npz", "--n", str(10**30), "--out", "s.csv",
                    match=r"--n 10{30} is too large")

    def no_memory(self, n_samples=1, random_state=None):
        raise MemoryError("Unable to allocate 745. GiB for an array with shape "
                          "(50000000000, 2) and data type float64")

    monkeypatch.setattr(fastgmm.GaussianMixture, "sample", no_memory)
    _one_line_error(capsys, "sample", "model.npz", "--n", str(10**11), "--out", "s.csv",
                    match=r"not enough memory \(Unable to allocate 745\. GiB")


def test_a_crafted_model_is_one_line(work, capsys):
    d, _ = work
    with zipfile.ZipFile(d / "model.npz") as zf:
        blobs = {info.filename: zf.read(info) for info in zf.infolist()}
    meta = json.loads(np.lib.format.read_array(io.BytesIO(blobs["metadata.npy"])).tobytes())
    meta["params"]["n_components"] = 7
    del meta["sha256"]
    meta["sha256"] = hashlib.sha256(json.dumps(meta, sort_keys=True, separators=(",", ":"))
                                    .encode()).hexdigest()
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    blobs["metadata.npy"] = buf.getvalue()
    with zipfile.ZipFile(d / "crafted.npz", "w") as zf:
        for name, blob in blobs.items():
            zf.writestr(name, blob)
    for args in (["info", "crafted.npz"], ["predict", "crafted.npz", "data.csv", "--out", "p.csv"],
                 ["sample", "crafted.npz", "--n", "3", "--out", "s.csv"]):
        _one_line_error(capsys, *args, match=r"crafted\.npz is not a valid model: the "
                                             r"parameters say n_components=7")
