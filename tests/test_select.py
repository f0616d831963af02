"""fastgmm._select: criteria against independent references, recovery of a known
number of components, ICL >= BIC, refitting a cell from its seed, the result object.

Reproducibility across threads and scheduling is tested in test_determinism.py.
"""

from __future__ import annotations

import re
import sys
import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES as TYPES
from naive import make_mixture, n_parameters, weighted_log_prob
from scipy.special import logsumexp

import fastgmm
from fastgmm import ConvergenceWarning, GaussianMixture, SelectionResult, select

# ---------------------------------------------------------------------------
# references: scipy only, never the code under test
# ---------------------------------------------------------------------------


def ref_criteria(model, X, w=None) -> dict:
    """BIC, AIC, ICL, entropy and log-likelihood from scipy densities and a hand count."""
    lj = weighted_log_prob(X, model.weights_, model.means_, model.covariances_,
                           model.covariance_type)
    log_px = logsumexp(lj, axis=1)
    resp = np.exp(lj - log_px[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(resp > 0, resp * np.log(resp), 0.0)
    ww = np.ones(X.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    ll = float(ww @ log_px)
    entropy = float(-(ww @ plogp.sum(axis=1)))
    k, d = model.means_.shape
    p = n_parameters(model.covariance_type, k, d)
    bic = -2 * ll + p * np.log(ww.sum())
    return {"bic": bic, "aic": -2 * ll + 2 * p, "icl": bic + 2 * entropy, "entropy": entropy,
            "log_likelihood": ll, "n_parameters": p}


@pytest.fixture(scope="module")
def mixture():
    """Three well-separated full-covariance components in 2-D, 80 rows each."""
    return make_mixture("full", 3, 80, 2, seed=11)


@pytest.fixture(scope="module")
def mixture_result(mixture):
    return select(mixture, range(1, 5), TYPES, n_init=2, random_state=0)


# ---------------------------------------------------------------------------
# criteria
# ---------------------------------------------------------------------------


def test_table_bic_equals_each_models_own_bic(mixture, mixture_result):
    """Every cell's BIC, AIC and log-likelihood equal its model's own and scipy's with a hand
    count of parameters, and the wide table holds the same numbers.
    """
    res = mixture_result
    assert isinstance(res, SelectionResult)
    crit = res.criteria_
    assert len(crit) == 4 * 4
    for row in crit.itertuples(index=False):
        model = res.models_[(row.covariance_type, row.n_components)]
        assert model.covariance_type == row.covariance_type
        assert model.n_components == row.n_components
        # Same summation as the model's own bic/aic: equal, not just close.
        assert row.bic == model.bic(mixture)
        assert row.aic == model.aic(mixture)
        # ...and both agree with scipy densities and a hand count of parameters.
        ref = ref_criteria(model, mixture)
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


def test_best_model_has_lowest_criterion(mixture_result):
    """The best parameters, model and score are those of the lowest BIC."""
    res = mixture_result
    crit = res.criteria_
    i = int(np.argmin(crit["bic"].to_numpy()))
    assert res.best_params_ == {"n_components": int(crit["n_components"][i]),
                                "covariance_type": crit["covariance_type"][i]}
    assert res.best_model_ is res.models_[(crit["covariance_type"][i],
                                           int(crit["n_components"][i]))]
    assert res.best_score_ == crit["bic"].min()


def test_weighted_criteria_match_weighted_reference():
    """With sample weights the criteria and entropy equal the weighted scipy reference, and the
    inputs are untouched.
    """
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


def test_icl_is_bic_plus_twice_the_entropy(mixture_result, mixture):
    """ICL is BIC plus twice the classification entropy (scipy), so never below it, and equal to
    it for one component.
    """
    crit = mixture_result.criteria_
    icl, bic = crit["icl"].to_numpy(), crit["bic"].to_numpy()
    assert np.all(icl >= bic)
    for row in crit.itertuples(index=False):
        model = mixture_result.models_[(row.covariance_type, row.n_components)]
        ref = ref_criteria(model, mixture)
        np.testing.assert_allclose(row.entropy, ref["entropy"], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(row.icl - row.bic, 2 * ref["entropy"], rtol=1e-7,
                                   atol=1e-8)
        if row.n_components == 1:
            assert row.icl == row.bic  # one component: no classification uncertainty


def test_icl_penalises_overlap_more_than_bic():
    """For two overlapping components ICL exceeds BIC by a substantial entropy."""
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
    """BIC and ICL choose the true three components for data of each covariance type."""
    X = make_mixture(ctype, 3, 120, 2, seed=100 + TYPES.index(ctype))
    for criterion in ("bic", "icl"):
        res = select(X, range(1, 6), (ctype,), criterion, n_init=2, random_state=0)
        assert res.best_params_ == {"n_components": 3, "covariance_type": ctype}, (
            criterion, res.values(criterion).ravel())


def test_recovers_number_of_components_over_all_types():
    """Over all covariance types BIC chooses four full-covariance components for such data."""
    X = make_mixture("full", 4, 100, 3, seed=7)
    res = select(X, range(1, 7), TYPES, random_state=0)
    assert res.best_params_["n_components"] == 4
    assert res.best_params_["covariance_type"] == "full"


# ---------------------------------------------------------------------------
# refitting a cell on its own
# ---------------------------------------------------------------------------


def test_cell_refits_on_its_own_from_recorded_seed(mixture_result, mixture):
    """Refitting a cell alone from the seed the result records gives the same means, covariances
    and BIC.
    """
    for row in mixture_result.criteria_.itertuples(index=False):
        if row.n_components not in (2, 4):
            continue
        alone = GaussianMixture(row.n_components, covariance_type=row.covariance_type,
                                n_init=2, random_state=row.seed).fit(mixture)
        cell = mixture_result.models_[(row.covariance_type, row.n_components)]
        assert np.array_equal(alone.means_, cell.means_)
        assert np.array_equal(alone.covariances_, cell.covariances_)
        assert alone.bic(mixture) == row.bic


# ---------------------------------------------------------------------------
# result object
# ---------------------------------------------------------------------------


def test_structured_result_without_pandas(mixture, monkeypatch):
    """Without pandas the tables are numpy structured arrays holding the same criteria."""
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    res = select(mixture, (1, 2), ("diag", "full"), criterion="aic", random_state=0)
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
        assert row["aic"] == model.aic(mixture)
        assert row["icl"] >= row["bic"]


def test_feature_names_kept(mixture):
    """DataFrame column names reach the selected model, which predicts on the frame."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(mixture, columns=["a", "b"])
    res = select(frame, (1, 2), "full", random_state=0)
    assert list(res.best_model_.feature_names_in_) == ["a", "b"]
    assert res.best_model_.predict(frame).shape == (mixture.shape[0],)


def test_plot_draws_one_curve_per_covariance_type(mixture_result):
    """``plot`` draws one curve per covariance type with the result's values."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        out = mixture_result.plot(ax=ax, criterion="icl")
        assert out is ax
        curves = {line.get_label(): line for line in ax.get_lines()}
        values = mixture_result.values("icl")
        for j, ctype in enumerate(TYPES):
            assert np.array_equal(curves[ctype].get_ydata(), values[:, j])
            assert list(curves[ctype].get_xdata()) == [1, 2, 3, 4]
        assert "ICL" in ax.get_ylabel()
    finally:
        plt.close(fig)


def test_convergence_summarised_in_one_warning(mixture):
    """Cells that did not converge are summarised in one ConvergenceWarning and flagged in the
    table.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = select(mixture, (2, 3), ("full", "diag"), max_iter=1, random_state=0)
    conv = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(conv) == 1
    assert "4 of 4 cells did not converge" in str(conv[0].message)
    assert not res.criteria_["converged"].any()
    assert (res.criteria_["n_iter"] == 1).all()


def test_cell_failure_names_the_cell():
    """An error in one cell says which cell (covariance type and number of components)."""
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
    """On the wholesale data the grid runs and its BIC equals scipy's reference."""
    X = np.log(fastgmm.datasets.load_wholesale().spending)
    res = select(X, (1, 2, 3), TYPES, random_state=0)
    assert res.values("bic").shape == (3, 4)
    for key in (("full", 2), ("spherical", 3)):
        np.testing.assert_allclose(
            res.criteria_.set_index(["covariance_type", "n_components"]).loc[key, "bic"],
            ref_criteria(res.models_[key], X)["bic"], rtol=1e-10)


# Progress (verbose)

PROGRESS_LINE = re.compile(
    r"select: (\d+)/(\d+) cells  (\w+) k=(\d+): BIC (-?[\d.]+) \((converged|did not "
    r"converge) in \d+ iterations\)  [\d.]+ s  best so far: (\w+) k=(\d+) BIC (-?[\d.]+)$")


@pytest.fixture(scope="module")
def three_blobs():
    rng = np.random.default_rng(4)
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    return centers[rng.integers(0, 3, 600)] + rng.normal(size=(600, 2))


@pytest.mark.parametrize("concurrent", [False, True])
def test_one_line_per_cell_with_the_best_so_far(three_blobs, capsys, concurrent):
    """``verbose=1``: a line per cell, counts in order, the recorded BIC, the running best."""
    result = fastgmm.select(three_blobs, range(1, 5), ("full", "diag"), random_state=0, verbose=1,
                            concurrent=concurrent, n_threads=2)
    lines = capsys.readouterr().err.strip().splitlines()
    parsed = [PROGRESS_LINE.match(line) for line in lines]
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


def test_silent_by_default_and_fit_progress_at_verbose_2(three_blobs, capsys):
    """Nothing on stderr by default; ``verbose=2`` adds each cell's EM progress."""
    fastgmm.select(three_blobs, [1, 2], "diag", random_state=0)
    assert capsys.readouterr().err == ""
    fastgmm.select(three_blobs, [1, 2], "diag", random_state=0, verbose=2)
    err = capsys.readouterr().err
    assert err.count("select: ") == 2
    assert err.count("Initialization 0") >= 2  # each cell's EM progress
