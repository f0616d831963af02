"""fastgmm.datasets (the bundled wholesale-customers data and its segment profile),
with fastgmm._prep (standardisation) and fastgmm._table (plain-text tables).

Reference figures come from the data's documentation (row counts, column
statistics, the file digest), pandas, and hand layouts, not from fastgmm.
Bad labels for the segment profile are tested in test_bad_input.py.
"""

import csv
import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import tomllib

from fastgmm import datasets
from fastgmm._prep import standardize
from fastgmm._table import Table

ROOT = Path(__file__).resolve().parents[1]
SHA256 = "d0213b7d856bc7f98f2f52a86bedb5cb57d5b8e19959605e75bd4532d4ee0896"


def _csv_rows():
    path = resources.files("fastgmm").joinpath("data", "wholesale_customers.csv")
    with path.open("r", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [[int(v) for v in r] for r in rows[1:]]


def test_bundled_file_is_the_documented_one():
    """The bundled CSV has the documented size and SHA-256 digest."""
    raw = resources.files("fastgmm").joinpath("data", "wholesale_customers.csv").read_bytes()
    assert len(raw) == 14580
    assert hashlib.sha256(raw).hexdigest() == SHA256


def test_attribution_ships_with_the_data(wholesale):
    """The DOI, licence, authors and source address ship with the data and its description."""
    text = resources.files("fastgmm").joinpath("data", "README.md").read_text()
    for fact in ("10.24432/C5030X", "CC BY 4.0", "Cardoso", "292",
                 "https://archive.ics.uci.edu/dataset/292/wholesale+customers"):
        assert fact in text
        assert fact in wholesale.descr
    assert "10.24432/C5030X" in wholesale.citation


def test_package_data_is_declared():
    """pyproject.toml ships the data's CSV and README with the package."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["fastgmm"]
    assert "data/*.csv" in patterns and "data/*.md" in patterns


def test_values_match_the_csv(wholesale):
    """The loaded table is the CSV's header and integers, its first row as documented."""
    header, rows = _csv_rows()
    assert wholesale.columns == tuple(header)
    assert wholesale.data.shape == (440, 8)
    assert wholesale.data.dtype == np.int64
    np.testing.assert_array_equal(wholesale.data, np.array(rows))
    assert tuple(wholesale.data[0]) == (2, 3, 12669, 9656, 7561, 214, 2674, 1338)


def test_documented_statistics(wholesale):
    """Column extremes, means, standard deviations and category counts are those the data README
    documents.
    """
    milk, grocery = wholesale.col("Milk"), wholesale.col("Grocery")
    # The data README's reference table.
    assert (milk.min(), milk.max(), grocery.min(), grocery.max()) == (55, 73498, 3, 92780)
    np.testing.assert_allclose(milk.mean(), 5796.265909, atol=1e-6)
    np.testing.assert_allclose(grocery.mean(), 7951.277273, atol=1e-6)
    np.testing.assert_allclose(milk.std(ddof=0), 7371.985612, atol=1e-6)
    np.testing.assert_allclose(grocery.std(ddof=0), 9492.357638, atol=1e-6)
    np.testing.assert_allclose(grocery.std(ddof=1), 9503.162829, atol=1e-6)
    assert np.bincount(wholesale.channel).tolist() == [0, 298, 142]
    assert np.bincount(wholesale.region).tolist() == [0, 77, 47, 316]


def test_standardize_uses_population_std(wholesale):
    """``standardize`` divides by the population (ddof=0) standard deviation, giving the documented
    first row.
    """
    X = np.column_stack([wholesale.col("Grocery"), wholesale.col("Milk")]).astype(float)
    Z, mean, std = standardize(X)
    # Documented standardised (ddof=0) first row.
    np.testing.assert_allclose(Z[0], [-0.041115, 0.523568], atol=5e-7)
    np.testing.assert_allclose(Z.std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(std, [9492.357638, 7371.985612], atol=1e-6)


def test_spending_drops_channel_and_region(wholesale):
    """The spending columns are the six last ones, as float64."""
    assert wholesale.spending_columns == ("Fresh", "Milk", "Grocery", "Frozen",
                                     "Detergents_Paper", "Delicassen")
    np.testing.assert_array_equal(wholesale.spending, wholesale.data[:, 2:].astype(float))
    assert wholesale.spending.dtype == np.float64


def test_data_cannot_be_modified_in_place(wholesale):
    """The table is read-only, columns are copies, and an unknown column name is refused."""
    with pytest.raises(ValueError):
        wholesale.data[0, 0] = 99
    col = wholesale.col("Milk")
    col[0] = -1
    assert wholesale.data[0, 3] == 9656
    with pytest.raises(KeyError, match="unknown column 'milk'"):
        wholesale.col("milk")


def test_frame_matches_data(wholesale):
    """The DataFrame holds the same columns and values."""
    pd = pytest.importorskip("pandas")
    frame = wholesale.frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(wholesale.columns)
    np.testing.assert_array_equal(frame.to_numpy(), wholesale.data)


def test_segment_profile_against_pandas(wholesale):
    """The segment profile's sizes, shares, mean spending and channel shares equal pandas' group-
    by, an empty segment printing dashes.
    """
    pytest.importorskip("pandas")
    labels = np.random.default_rng(0).integers(0, 3, size=440)
    labels[labels == 2] = 3          # segment 2 left empty on purpose
    table = wholesale.segment_profile(labels, n_segments=4)
    frame = wholesale.frame().assign(segment=labels)
    groups = frame.groupby("segment")
    assert table.column("segment") == [0, 1, 2, 3]
    sizes = groups.size()
    assert table.column("customers") == [sizes[0], sizes[1], 0, sizes[3]]
    np.testing.assert_allclose([table.column("share")[i] for i in (0, 1, 3)],
                               [sizes[i] / 440 for i in (0, 1, 3)])
    for name in wholesale.spending_columns:
        got = table.column(name)
        assert got[2] is None
        np.testing.assert_allclose([got[i] for i in (0, 1, 3)],
                                   groups[name].mean()[[0, 1, 3]].to_numpy(), rtol=1e-12)
    horeca = groups["Channel"].apply(lambda s: (s == 1).mean())
    np.testing.assert_allclose([table.column("% Horeca")[i] for i in (0, 1, 3)],
                               horeca[[0, 1, 3]].to_numpy())
    np.testing.assert_allclose(np.add(table.column("% Horeca")[3], table.column("% Retail")[3]),
                               1.0)
    text = str(table)
    assert "% Horeca" in text and text.count("\n") == 5
    assert "-" in text.splitlines()[4]    # the empty segment prints dashes


def test_table_layout():
    """Tables print a title, a header and right-aligned formatted numbers, dashes for missing
    values.
    """
    t = Table(("name", "value", "share"), (("a", 1.5, 0.25), ("bbbb", None, 1.0)),
              {"share": ".0%"}, "Title")
    lines = str(t).splitlines()
    assert lines[0] == "Title"
    assert lines[1].split() == ["name", "value", "share"]
    assert lines[3].split() == ["a", "1.5", "25%"]
    assert lines[4].split() == ["bbbb", "-", "100%"]
    # numbers right-aligned: every line of a numeric column ends at the same place
    assert len({len(line) for line in lines[1:]}) == 1
    assert t.column("value") == [1.5, None]


def test_code_lookups():
    """Channel and region codes map to their documented names."""
    assert datasets.channel_names() == {1: "Horeca", 2: "Retail"}
    assert datasets.region_names() == {1: "Lisbon", 2: "Oporto", 3: "Other"}
