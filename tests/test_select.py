"""Model selection (fastgmm.select): criteria against independent references,
recovery of a known number of components, ICL >= BIC, reproducibility.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import fastgmm
from fastgmm import ConvergenceWarning, GaussianMixture, SelectionResult, select

TYPES = ("full", "tied", "diag", "spherical")
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# references: scipy only, never the code under test
# ---------------------------------------------------------------------------


def ref_covariances(model) -> np.ndarray:
    """Per-component covariance matrices (k, d, d) from the fitted attributes."""
    k, d = model.means_.shape
    cov = np.asarray(model.covariances_, dtype=np.float64)
    ctype = model.covariance_type
    if ctype == "full":
        return cov
    if ctype == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if ctype == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


def ref_log_joint(model, X) -> np.ndarray:
    """log(w_k N(x_i | mu_k, Sigma_k)), shape (n, k), with scipy."""
    covs = ref_covariances(model)
    return np.column_stack([
        np.log(model.weights_[j]) + multivariate_normal.logpdf(X, model.means_[j], covs[j])
        for j in range(model.means_.shape[0])])


def ref_n_parameters(ctype: str, k: int, d: int) -> int:
    """Free parameters counted by hand: k - 1 weights, k d means, covariances."""
    cov = {"full": k * d * (d + 1) / 2, "tied": d * (d + 1) / 2, "diag": k * d,
           "spherical": k}[ctype]
    return int(k - 1 + k * d + cov)


def ref_criteria(model, X, w=None) -> dict:
    lj = ref_log_joint(model, X)
    log_px = logsumexp(lj, axis=1)
    resp = np.exp(lj - log_px[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(resp > 0, resp * np.log(resp), 0.0)
    ww = np.ones(X.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    ll = float(ww @ log_px)
    entropy = float(-(ww @ plogp.sum(axis=1)))
    k, d = model.means_.shape
    p = ref_n_parameters(model.covariance_type, k, d)
    bic = -2 * ll + p * np.log(ww.sum())
    return {"bic": bic, "aic": -2 * ll + 2 * p, "icl": bic + 2 * entropy, "entropy": entropy,
            "log_likelihood": ll, "n_parameters": p}


# ---------------------------------------------------------------------------
# data: mixtures of a given covariance type with well-separated components
# ---------------------------------------------------------------------------


def make_mixture(ctype: str, k: int, n_per: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    # Means on a spread-out lattice: at least 12 units apart along some axis.
    means = np.array([[12.0 * j] + [6.0 * ((j * (e + 2)) % 3) for e in range(d - 1)]
                      for j in range(k)])
    shared = None
    if ctype == "tied":
        a = rng.normal(size=(d, d))
        shared = a @ a.T / d + 0.5 * np.eye(d)
    parts = []
    for j in range(k):
        if ctype == "full":
            a = rng.normal(size=(d, d))
            cov = a @ a.T / d + 0.3 * np.eye(d)
        elif ctype == "tied":
            cov = shared
        elif ctype == "diag":
            cov = np.diag(rng.uniform(0.3, 2.0, size=d))
        else:
            cov = rng.uniform(0.3, 2.0) * np.eye(d)
        parts.append(rng.multivariate_normal(means[j], cov, size=n_per))
    return np.vstack(parts)


@pytest.fixture(scope="module")
def blobs():
    return make_mixture("full", 3, 80, 2, seed=11)


@pytest.fixture(scope="module")
def blobs_result(blobs):
    return select(blobs, range(1, 5), TYPES, n_init=2, random_state=0)


# ---------------------------------------------------------------------------
# criteria
# ---------------------------------------------------------------------------


def test_table_bic_equals_each_models_own_bic(blobs, blobs_result):
    res = blobs_result
    assert isinstance(res, SelectionResult)
    crit = res.criteria_
    assert len(crit) == 4 * 4
    for row in crit.itertuples(index=False):
        model = res.models_[(row.covariance_type, row.n_components)]
        assert model.covariance_type == row.covariance_type
        assert model.n_components == row.n_components
        # Same summation as the model's own bic/aic: equal, not just close.
        assert row.bic == model.bic(blobs)
        assert row.aic == model.aic(blobs)
        # ...and both agree with scipy densities and a hand count of parameters.
        ref = ref_criteria(model, blobs)
        assert row.n_parameters == ref["n_parameters"]
        np.testing.assert_allclose(row.bic, ref["bic"], rtol=1e-10)
        np.testing.assert_allclose(row.aic, ref["aic"], rtol=1e-10)
        np.testing.assert_allclose(row.log_likelihood, ref["log_likelihood"], rtol=1e-10)
    # The wide table is the same numbers, k down, covariance type across.
    table = res.table_
    assert list(table.columns) == list(TYPES)
    assert list(table.index) == [1, 2, 3, 4]
    for row in crit.itertuples(index=False):
        assert table.loc[row.n_components, row.covariance_type] == row.bic


def test_best_model_has_lowest_criterion(blobs_result):
    res = blobs_result
    crit = res.criteria_
    i = int(np.argmin(crit["bic"].to_numpy()))
    assert res.best_params_ == {"n_components": int(crit["n_components"][i]),
                                "covariance_type": crit["covariance_type"][i]}
    assert res.best_model_ is res.models_[(crit["covariance_type"][i],
                                           int(crit["n_components"][i]))]
    assert res.best_score_ == crit["bic"].min()


def test_weighted_criteria_match_weighted_reference():
    # Overlapping components, so that the entropy (and its weighting) matters.
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(c, 1.0, size=(80, 2)) for c in (0.0, 2.0, 4.0)])
    w = rng.uniform(0.2, 3.0, size=X.shape[0])
    w_before, X_before = w.copy(), X.copy()
    res = select(X, (1, 3), ("full", "diag"), sample_weight=w, random_state=1)
    assert np.array_equal(w, w_before) and np.array_equal(X, X_before)
    for row in res.criteria_.itertuples(index=False):
        model = res.models_[(row.covariance_type, row.n_components)]
        assert row.bic == model.bic(X, sample_weight=w)
        assert row.aic == model.aic(X, sample_weight=w)
        ref = ref_criteria(model, X, w)
        for name in ("bic", "aic", "icl"):
            np.testing.assert_allclose(getattr(row, name), ref[name], rtol=1e-10)
        np.testing.assert_allclose(row.entropy, ref["entropy"], rtol=1e-8)
        if row.n_components == 3:
            assert row.entropy > 0.1 * w.sum()


def test_icl_is_bic_plus_twice_the_entropy(blobs_result, blobs):
    crit = blobs_result.criteria_
    icl, bic = crit["icl"].to_numpy(), crit["bic"].to_numpy()
    assert np.all(icl >= bic)
    for row in crit.itertuples(index=False):
        model = blobs_result.models_[(row.covariance_type, row.n_components)]
        ref = ref_criteria(model, blobs)
        np.testing.assert_allclose(row.entropy, ref["entropy"], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(row.icl - row.bic, 2 * ref["entropy"], rtol=1e-7,
                                   atol=1e-8)
        if row.n_components == 1:
            assert row.icl == row.bic  # one component: no classification uncertainty


def test_icl_penalises_overlap_more_than_bic():
    # Two components 2.5 sd apart: clearly two by likelihood, but overlapping.
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(0, 1, 600), rng.normal(2.5, 1, 600)])[:, None]
    res = select(X, (1, 2), "spherical", random_state=0)
    crit = res.criteria_.set_index("n_components")
    gap = crit.loc[2, "icl"] - crit.loc[2, "bic"]
    assert gap > 0.2 * X.shape[0]  # substantial entropy: many ambiguous points
    assert crit.loc[1, "icl"] == crit.loc[1, "bic"]


# ---------------------------------------------------------------------------
# recovery of a known number of components
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", TYPES)
def test_recovers_number_of_components(ctype):
    X = make_mixture(ctype, 3, 120, 2, seed=100 + TYPES.index(ctype))
    for criterion in ("bic", "icl"):
        res = select(X, range(1, 6), (ctype,), criterion, n_init=2, random_state=0)
        assert res.best_params_ == {"n_components": 3, "covariance_type": ctype}, (
            criterion, res.values(criterion).ravel())


def test_recovers_number_of_components_over_all_types():
    X = make_mixture("full", 4, 100, 3, seed=7)
    res = select(X, range(1, 7), TYPES, random_state=0)
    assert res.best_params_["n_components"] == 4
    assert res.best_params_["covariance_type"] == "full"


# ---------------------------------------------------------------------------
# reproducibility and scheduling
# ---------------------------------------------------------------------------


def _same_models(a: SelectionResult, b: SelectionResult) -> bool:
    for key, ma in a.models_.items():
        mb = b.models_[key]
        for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            if not np.array_equal(getattr(ma, attr), getattr(mb, attr)):
                return False
    return True


def test_reproducible_with_random_state_whatever_the_threads(blobs):
    kw = dict(n_components=(1, 2, 3), covariance_types=("full", "tied", "spherical"),
              n_init=2, random_state=42)
    a = select(blobs, n_threads=2, **kw)
    b = select(blobs, n_threads=1, **kw)
    c = select(blobs, n_threads=2, concurrent=True, **kw)
    for other in (b, c):
        for name in ("bic", "aic", "icl"):
            assert np.array_equal(a.values(name), other.values(name))
        assert _same_models(a, other)
    assert list(a.criteria_["seed"]) == list(b.criteria_["seed"])
    # The same RandomState state gives the same result too.
    d = select(blobs, **dict(kw, random_state=np.random.RandomState(42)))
    assert np.array_equal(a.values("bic"), d.values("bic"))


def test_cell_refits_on_its_own_from_recorded_seed(blobs_result, blobs):
    for row in blobs_result.criteria_.itertuples(index=False):
        if row.n_components not in (2, 4):
            continue
        alone = GaussianMixture(row.n_components, covariance_type=row.covariance_type,
                                n_init=2, random_state=row.seed).fit(blobs)
        cell = blobs_result.models_[(row.covariance_type, row.n_components)]
        assert np.array_equal(alone.means_, cell.means_)
        assert np.array_equal(alone.covariances_, cell.covariances_)
        assert alone.bic(blobs) == row.bic


def test_large_data_path_matches_one_thread():
    # Above the serial threshold the cells run in turn with parallel kernels
    # (or at once with serial ones); the statistics are summed per fixed-size
    # chunk, so the bits are those of one thread either way.
    X = make_mixture("diag", 2, 2100, 2, seed=4)
    assert X.shape[0] >= fastgmm._config.SERIAL_THRESHOLD
    kw = dict(n_components=(1, 2, 3), covariance_types=("full", "diag"), random_state=3)
    a = select(X, n_threads=2, **kw)
    b = select(X, n_threads=1, **kw)
    c = select(X, n_threads=2, concurrent=True, **kw)
    for other in (b, c):
        assert np.array_equal(a.values("icl"), other.values("icl"))
        assert _same_models(a, other)
    assert a.best_params_["n_components"] == 2


# ---------------------------------------------------------------------------
# result object
# ---------------------------------------------------------------------------


def test_structured_result_without_pandas(blobs, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    res = select(blobs, (1, 2), ("diag", "full"), criterion="aic", random_state=0)
    table = res.table_
    assert isinstance(table, np.ndarray)
    assert table.dtype.names == ("n_components", "diag", "full")
    assert list(table["n_components"]) == [1, 2]
    assert np.array_equal(np.column_stack([table["diag"], table["full"]]), res.values("aic"))
    crit = res.criteria_
    assert isinstance(crit, np.ndarray)
    assert list(crit["covariance_type"]) == ["diag", "diag", "full", "full"]
    for row in crit:
        model = res.models_[(str(row["covariance_type"]), int(row["n_components"]))]
        assert row["aic"] == model.aic(blobs)
        assert row["icl"] >= row["bic"]


def test_feature_names_kept(blobs):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(blobs, columns=["a", "b"])
    res = select(frame, (1, 2), "full", random_state=0)
    assert list(res.best_model_.feature_names_in_) == ["a", "b"]
    assert res.best_model_.predict(frame).shape == (blobs.shape[0],)


def test_plot_draws_one_curve_per_covariance_type(blobs_result):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        out = blobs_result.plot(ax=ax, criterion="icl")
        assert out is ax
        curves = {line.get_label(): line for line in ax.get_lines()}
        values = blobs_result.values("icl")
        for j, ctype in enumerate(TYPES):
            assert np.array_equal(curves[ctype].get_ydata(), values[:, j])
            assert list(curves[ctype].get_xdata()) == [1, 2, 3, 4]
        assert "ICL" in ax.get_ylabel()
    finally:
        plt.close(fig)


def test_convergence_summarised_in_one_warning(blobs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = select(blobs, (2, 3), ("full", "diag"), max_iter=1, random_state=0)
    conv = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(conv) == 1
    assert "4 of 4 cells did not converge" in str(conv[0].message)
    assert not res.criteria_["converged"].any()
    assert (res.criteria_["n_iter"] == 1).all()


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n_components=5), TypeError, "n_components must be an iterable"),
    (dict(n_components=[]), ValueError, "n_components is empty"),
    (dict(n_components=[1, 2, 2]), ValueError, "repeated"),
    (dict(n_components=[0, 1]), ValueError, "n_components must be >= 1"),
    (dict(n_components=[1.5]), TypeError, "n_components must be an integer"),
    (dict(covariance_types=("full", "banana")), ValueError, "covariance_types must be among"),
    (dict(covariance_types=()), ValueError, "covariance_types is empty"),
    (dict(criterion="mdl"), ValueError, "criterion must be one of"),
    (dict(n_init=0), ValueError, "n_init must be >= 1"),
    (dict(n_threads=0), ValueError, "n_threads must be >= 1"),
    (dict(concurrent="yes"), TypeError, "concurrent must be a bool"),
    (dict(covariance_type="full"), TypeError, "sets \\['covariance_type'\\] itself"),
    (dict(colour="red"), TypeError, "unknown GaussianMixture parameter"),
    (dict(tol=-1.0), ValueError, "tol"),
    (dict(n_components=range(1, 31)), ValueError, "n_components goes up to 30"),
])
def test_bad_arguments_raise(kwargs, error, match):
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(error, match=match):
        select(X, **kwargs)


def test_bad_data_raise():
    with pytest.raises(ValueError, match="contains NaN"):
        select(np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), (1,))
    X = np.random.default_rng(0).normal(size=(10, 2))
    w = np.zeros(10)
    w[:2] = 1.0
    with pytest.raises(ValueError, match="only 2 samples of positive weight"):
        select(X, (1, 3), sample_weight=w)


def test_cell_failure_names_the_cell():
    # Three distinct points repeated: a 2-D full covariance of one of them
    # is singular, and on_degenerate='raise' asks for an error, not a repair.
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 9.0]]), 10, axis=0)
    with pytest.raises(fastgmm.DegenerateCovarianceError) as info:
        select(X, (3,), ("full",), reg_covar=0.0, on_degenerate="raise", random_state=0)
    assert "covariance_type='full', n_components=3" in "\n".join(
        getattr(info.value, "__notes__", []))


# ---------------------------------------------------------------------------
# wholesale data: the grid of the closing note, small enough for CI
# ---------------------------------------------------------------------------


def test_wholesale_grid_smoke():
    X = np.log(fastgmm.datasets.load_wholesale().spending)
    res = select(X, (1, 2, 3), TYPES, random_state=0)
    assert res.values("bic").shape == (3, 4)
    for key in (("full", 2), ("spherical", 3)):
        np.testing.assert_allclose(
            res.criteria_.set_index(["covariance_type", "n_components"]).loc[key, "bic"],
            ref_criteria(res.models_[key], X)["bic"], rtol=1e-10)


# ---------------------------------------------------------------------------
# command line: fastgmm fit --k auto
# ---------------------------------------------------------------------------


def test_cli_fit_k_auto(tmp_path):
    X = make_mixture("full", 3, 60, 2, seed=21)
    np.savetxt(tmp_path / "blobs.csv", X, delimiter=",", header="x,y", comments="")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))

    def run(*args):
        return subprocess.run([sys.executable, "-m", "fastgmm", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    proc = run("fit", "blobs.csv", "--k", "auto", "--seed", "0", "--n-init", "2",
               "--out", "model.npz", "-q")
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

    bad = run("fit", "blobs.csv", "--k", "many", "--out", "bad.npz")
    assert bad.returncode == 2
    assert "positive integer or 'auto'" in bad.stderr
    assert not (tmp_path / "bad.npz").exists()
