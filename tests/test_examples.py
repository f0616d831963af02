"""The wholesale segmentation example runs (quick settings) and writes valid PNGs."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "wholesale_segmentation.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("wholesale_segmentation", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", range(6))
def test_adjusted_rand_index_matches_sklearn(example, seed):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    a = rng.integers(0, int(rng.integers(1, 6)), n)
    # b: a noisy copy of a with other label names, so the index is far from 0
    b = np.where(rng.uniform(size=n) < 0.3, rng.integers(0, 4, n), a * 7 + 3)
    assert example.adjusted_rand_index(a, b) == pytest.approx(
        metrics.adjusted_rand_score(a, b), abs=1e-12)
    shuffled = rng.permutation(a)      # unrelated to a: index near 0, maybe negative
    assert example.adjusted_rand_index(a, shuffled) == pytest.approx(
        metrics.adjusted_rand_score(a, shuffled), abs=1e-12)


def test_adjusted_rand_index_edge_cases(example):
    metrics = pytest.importorskip("sklearn.metrics")
    cases = [([0, 0, 1, 1], [1, 1, 0, 0]),       # same partition, renamed
             ([0, 0, 0, 0], [0, 0, 0, 0]),       # one cluster each
             ([0, 1, 2, 3], [0, 1, 2, 3]),       # all singletons
             ([0, 0, 0, 0], [0, 1, 2, 3]),
             ([0, 0, 1, 2], [0, 1, 1, 1]),
             (["a", "b", "a"], [2, 2, 2])]
    for a, b in cases:
        assert example.adjusted_rand_index(a, b) == pytest.approx(
            metrics.adjusted_rand_score(a, b), abs=1e-12), (a, b)
    with pytest.raises(ValueError, match="equal length"):
        example.adjusted_rand_index([0, 1], [0, 1, 1])


def test_example_runs_and_writes_pngs(example, tmp_path, capsys):
    out = tmp_path / "out"
    written = example.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    names = ["1_grocery_vs_milk.png", "2_gmm_vs_kmeans.png", "3_soft_assignments.png",
             "4_bic_aic.png"]
    assert [Path(p).name for p in written] == names
    assert sorted(p.name for p in out.iterdir()) == names
    for name in names:
        raw = (out / name).read_bytes()
        assert len(raw) > 5_000 and raw[:8] == PNG_SIGNATURE
        img = imread(out / name)
        assert img.ndim == 3 and min(img.shape[:2]) > 200
        assert img[..., :3].std() > 0.05
    for title in ("Agreement of the two-segment solutions", "GMM vs k-means",
                  "BIC on log spending", "AIC on log spending", "BIC chooses k = ",
                  "Two segments from Grocery and Milk", "% Horeca"):
        assert title in printed
    # The BIC table covers k = 1..4 (quick) for all four covariance types.
    lines = printed.splitlines()
    head = lines.index("BIC on log spending (lower is better)") + 1
    assert lines[head].split() == ["k", "full", "tied", "diag", "spherical"]
    assert [ln.split()[0] for ln in lines[head + 2:head + 6]] == ["1", "2", "3", "4"]


def test_example_standardises_with_population_std(example):
    X = np.array([[1.0, 10.0], [2.0, 20.0], [4.0, 60.0]])
    Z, mean, std = example.standardize(X)
    np.testing.assert_allclose(std, np.sqrt(((X - X.mean(0)) ** 2).mean(0)))
    np.testing.assert_allclose(Z.std(axis=0, ddof=0), 1.0)
