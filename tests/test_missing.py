"""Missing data (``missing='marginalize'``): exact EM, scores, imputation, conditioning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from naive import (
    missing_e_step,
    missing_em_iterations,
    precisions,
    random_params,
)

import fastgmm
from fastgmm._missing import incomplete_stats, missing_stats
from fastgmm._params import GaussianParams

#: Relative agreement of fastgmm's iterates with the reference EM.
REF_RTOL = 1e-10


def knock_out(X, fraction, seed=0, min_observed=1):
    """``X`` with a ``fraction`` of its entries set to NaN completely at random.

    Every row keeps at least ``min_observed`` entries.
    """
    rng = np.random.default_rng(seed)
    X = np.array(X, dtype=np.float64)
    mask = rng.random(X.shape) < fraction
    for i in np.flatnonzero(mask.sum(axis=1) > X.shape[1] - min_observed):
        keep = rng.choice(X.shape[1], size=min_observed, replace=False)
        mask[i, keep] = False
    X[mask] = np.nan
    return X


def small_data(seed=0, n=60, d=4):
    """Three overlapping blobs in ``d`` dimensions with about 30 % of entries missing."""
    rng = np.random.default_rng(seed)
    centers = np.array([np.zeros(d), np.full(d, 2.5), np.r_[3.0, -2.0, np.zeros(d - 2)]])
    X = np.concatenate([c + rng.normal(size=(n // 3, d)) @ rng.normal(size=(d, d)) * 0.6
                        for c in centers])
    return knock_out(X, 0.3, seed=seed)


def run_iterates(X, covariance_type, params, n_iter, sample_weight=None, **kw):
    """Fastgmm's parameters after each of ``n_iter`` EM iterations from ``params``."""
    w0, m0, c0 = params
    seen = []
    model = fastgmm.GaussianMixture(
        n_components=m0.shape[0], covariance_type=covariance_type, max_iter=n_iter,
        tol=0.0, reg_covar=1e-6, weights_init=w0, means_init=m0,
        precisions_init=precisions(covariance_type, c0), missing="marginalize",
        callback=lambda info: seen.append(info.params.copy()), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        model.fit(X, sample_weight=sample_weight)
    return model, seen


def rel_diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def assert_iterates_match(model, seen, ref, ref_bounds):
    """Every iterate and lower bound of a fit agrees with the reference EM to REF_RTOL."""
    worst = 0.0
    for (rw, rm, rc), got in zip(ref, seen, strict=True):
        for a, b in ((got.weights, rw), (got.means, rm), (got.covariances, rc)):
            worst = max(worst, rel_diff(a, b))
    assert worst < REF_RTOL, worst
    np.testing.assert_allclose(model.lower_bounds_, ref_bounds, rtol=REF_RTOL)


# ---------------------------------------------------------------------------
# Exact EM against an independent reference
# ---------------------------------------------------------------------------


@pytest.fixture(params=["per-row", "per-pattern", "mid"])
def route(request, monkeypatch):
    """Rows with NaN through the per-row kernels, or patterns through the lifted E-step.

    ``mid``: patterns of two rows or more are mid-sized (full covariances run
    them through the per-row kernel, the other types as patterns).
    """
    import fastgmm._missing as mod

    monkeypatch.setattr(mod, "PATTERN_MIN_ROWS", 10**9 if request.param == "per-row" else 2)
    monkeypatch.setattr(mod, "FULL_PATTERN_MIN_ROWS", 10**9 if request.param == "mid" else 2)
    return request.param


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_iterates_match_reference(covariance_type, weighted, route):
    X = small_data()
    n, d = X.shape
    w = np.random.default_rng(1).uniform(0.2, 3.0, size=n) if weighted else None
    params = random_params(covariance_type, 3, d, seed=2)
    n_iter = 4
    ref, ref_bounds = missing_em_iterations(X, *params, covariance_type, n_iter, 1e-6, w)
    model, seen = run_iterates(X, covariance_type, params, n_iter, w)
    assert len(seen) == n_iter
    assert_iterates_match(model, seen, ref, ref_bounds)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_no_nan_changes_nothing(covariance_type):
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(size=(400, 3)), rng.normal(size=(400, 3)) + 4])
    w = rng.uniform(0.5, 2.0, size=X.shape[0])
    kw = dict(n_components=2, covariance_type=covariance_type, random_state=0, max_iter=20)
    a = fastgmm.GaussianMixture(**kw).fit(X, sample_weight=w)
    b = fastgmm.GaussianMixture(missing="marginalize", **kw).fit(X, sample_weight=w)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-12, atol=0)
    assert a.n_iter_ == b.n_iter_


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_stats_of_complete_rows_agree_with_compute_stats(covariance_type):
    # The missing-data kernels on rows without NaN reduce to the complete-data statistics.
    from fastgmm._compute import compute_stats

    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 3))
    w, m, c = random_params(covariance_type, 3, 3, seed=5)
    p = GaussianParams.from_covariances(covariance_type, w, m, c)
    a = incomplete_stats(X, None, p)
    b = compute_stats(X, None, p)
    for name in ("nk", "t", "s", "shift"):
        va, vb = getattr(a, name), getattr(b, name)
        if name == "s" and covariance_type == "spherical":
            # Only the sum over features is defined for spherical statistics.
            va, vb = va.sum(axis=1), vb.sum(axis=1)
        np.testing.assert_allclose(va, vb, rtol=1e-10, atol=1e-10)
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=1e-12)


def test_blocked_kernel_on_overlapping_wide_data():
    # Overlapping components and 45 % missing: most rows evaluate several
    # components exactly and nearly every row has its own pattern, so the
    # factor pools of the full-covariance kernel grow; k * d = 280 splits a
    # group of 1024 rows into blocks.  Statistics against scipy, row by row.
    from naive import missing_e_step

    rng = np.random.default_rng(21)
    k, d, n = 14, 20, 1100
    w, m, c = random_params("full", k, d, seed=22)
    m *= 0.3
    X = knock_out(m[rng.integers(0, k, n)] + rng.normal(size=(n, d)), 0.45, seed=23)
    sw = rng.uniform(0.0, 2.0, size=n)
    sw[::7] = 0.0
    p = GaussianParams.from_covariances("full", w, m, c)
    got = incomplete_stats(X, sw, p)
    resp, lse, completed, cond = missing_e_step(X, w, m, c, "full")
    wr = sw[:, None] * resp
    dev = completed - m[None]
    nk = wr.sum(axis=0)
    t = np.einsum("ik,ikd->kd", wr, dev)
    s = (np.einsum("ik,ikd,ike->kde", wr, dev, dev) + np.einsum("ik,ikde->kde", wr, cond))
    assert (resp > 1e-3).sum() > 2 * n  # many rows with more than one live component
    np.testing.assert_allclose(got.nk, nk, rtol=1e-10)
    np.testing.assert_allclose(got.t, t, rtol=1e-10, atol=1e-10 * np.abs(t).max())
    np.testing.assert_allclose(got.s, s, rtol=1e-10, atol=1e-10 * np.abs(s).max())
    assert got.log_likelihood == pytest.approx(float(sw @ lse), rel=1e-12)


def assert_same_bits_on_one_and_two_threads(X, params):
    """``missing_stats`` gives identical statistics on 1 and 2 Numba threads."""
    from fastgmm._parallel import numba_threads

    with numba_threads(1):
        a = missing_stats(X, None, params)
    with numba_threads(2):
        b = missing_stats(X, None, params)
    for name in ("nk", "t", "s"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.log_likelihood == b.log_likelihood


def test_float32_data_stays_float32():
    X = small_data().astype(np.float32)
    params = random_params("full", 3, X.shape[1], seed=2)
    model, seen = run_iterates(X, "full", params, 3)
    assert model.means_.dtype == np.float32
    ref, _ = missing_em_iterations(X.astype(np.float64), *params, "full", 3, 1e-6)
    # Complete rows run the float32 complete-data kernel (per-point float32).
    np.testing.assert_allclose(seen[-1].means, ref[-1][1], rtol=2e-5, atol=2e-5)


def test_statistics_are_thread_independent():
    X = knock_out(np.random.default_rng(6).normal(size=(20000, 5)), 0.2, seed=6)
    w, m, c = random_params("full", 4, 5, seed=7)
    p = GaussianParams.from_covariances("full", w, m, c)

    assert_same_bits_on_one_and_two_threads(X, p)


# ---------------------------------------------------------------------------
# Per-point outputs
# ---------------------------------------------------------------------------


def fitted_model(covariance_type="full", seed=0, **kw):
    """A model fitted with missing='marginalize' on :func:`small_data`."""
    X = small_data(seed)
    model = fastgmm.GaussianMixture(3, covariance_type=covariance_type, random_state=seed,
                                    missing="marginalize", **kw).fit(X)
    return model, X


def reference_of(model, X):
    """``missing_e_step`` under the fitted parameters of ``model``."""
    return missing_e_step(X, model.weights_, model.means_, model.covariances_,
                          model._fit_covariance_type)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_point_outputs_use_marginal_densities(covariance_type):
    model, X = fitted_model(covariance_type)
    resp, lse, _, _ = reference_of(model, X)
    np.testing.assert_allclose(model.score_samples(X), lse, rtol=1e-10)
    np.testing.assert_allclose(model.predict_proba(X), resp, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(model.predict(X), resp.argmax(axis=1))
    assert model.score(X) == pytest.approx(lse.mean(), rel=1e-12)


def test_point_outputs_option_per_call():
    X = small_data()
    complete = X[~np.isnan(X).any(axis=1)]
    model = fastgmm.GaussianMixture(2, random_state=0).fit(complete)
    with pytest.raises(ValueError, match="NaN"):
        model.score_samples(X)
    scores = model.score_samples(X, missing="marginalize")
    _, lse, _, _ = reference_of(model, X)
    np.testing.assert_allclose(scores, lse, rtol=1e-10)
    # Complete rows give the bits of the complete-data path.
    rows = ~np.isnan(X).any(axis=1)
    np.testing.assert_array_equal(scores[rows], model.score_samples(X[rows]))
    fitted, _ = fitted_model()
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict(X, missing="error")
    with pytest.raises(ValueError, match="missing must be one of"):
        fitted.predict(X, missing="drop")


# ---------------------------------------------------------------------------
# Imputation
# ---------------------------------------------------------------------------


def test_impute_single_gaussian_closed_form():
    rng = np.random.default_rng(8)
    cov = np.array([[2.0, 0.8, 0.3], [0.8, 1.0, -0.4], [0.3, -0.4, 1.5]])
    mu = np.array([1.0, -2.0, 0.5])
    model = fastgmm.GaussianMixture(1, means_init=mu[None], weights_init=[1.0], max_iter=0,
                                    precisions_init=np.linalg.inv(cov)[None])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(rng.normal(size=(10, 3)))
    X = np.array([[0.3, np.nan, np.nan], [np.nan, 1.0, np.nan], [np.nan, 0.2, -1.0],
                  [1.0, 2.0, 3.0]])
    got = model.impute(X)
    for i, row in enumerate(X):
        m = np.isnan(row)
        o = ~m
        expect = row.copy()
        expect[m] = mu[m] + cov[np.ix_(m, o)] @ np.linalg.solve(cov[np.ix_(o, o)],
                                                                 row[o] - mu[o])
        np.testing.assert_allclose(got[i], expect, rtol=1e-12, atol=1e-12)
    assert not np.isnan(X[3]).any() and np.array_equal(got[3], X[3])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_impute_mixture_is_conditional_expectation(covariance_type):
    model, X = fitted_model(covariance_type)
    resp, _, completed, _ = reference_of(model, X)
    expect = np.einsum("ik,ikd->id", resp, completed)
    got = model.impute(X)
    np.testing.assert_allclose(got, expect, rtol=1e-9, atol=1e-10)
    obs = ~np.isnan(X)
    assert np.array_equal(got[obs], X[obs])


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_multiple_imputation_draws_have_conditional_moments(covariance_type):
    model, X = fitted_model(covariance_type)
    row = X[np.isnan(X).sum(axis=1) == 2][0]
    m = np.isnan(row)
    rows = np.repeat(row[None], 40000, axis=0)
    draws = model.impute(rows, random_state=0)[:, m]
    resp, _, completed, cond = reference_of(model, row[None])
    cm = completed[0][:, m]
    mean = resp[0] @ cm
    cov = sum(resp[0, j] * (cond[0, j][np.ix_(m, m)] + np.outer(cm[j] - mean, cm[j] - mean))
              for j in range(resp.shape[1]))
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=5 * sd.max() / np.sqrt(40000))
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.05, atol=0.03 * sd.max() ** 2)
    # Reproducible with a seed, different with another.
    again = model.impute(rows[:50], random_state=0)
    assert np.array_equal(again, model.impute(rows[:50], random_state=0))
    assert not np.array_equal(again, model.impute(rows[:50], random_state=1))


# ---------------------------------------------------------------------------
# Conditioning
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_condition_closed_form(covariance_type):
    model, X = fitted_model(covariance_type)
    rng = np.random.default_rng(9)
    given = np.array([2, 0])
    Xg = rng.normal(size=(7, 2)) * 2
    cond = model.condition(Xg, given)
    target = np.array([1, 3])
    np.testing.assert_array_equal(cond.target_features, target)
    full = np.full((7, 4), np.nan)
    full[:, given] = Xg
    resp, _, completed, cmat = reference_of(model, full)
    np.testing.assert_allclose(cond.weights, resp, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cond.means, completed[:, :, target], rtol=1e-10, atol=1e-12)
    for i in range(7):
        np.testing.assert_allclose(cond.covariances, cmat[i][:, target][:, :, target],
                                   rtol=1e-10, atol=1e-12)
    mean, cov = cond.predict(return_cov=True)
    np.testing.assert_allclose(mean, np.einsum("ik,ikm->im", resp, completed[:, :, target]),
                               rtol=1e-10, atol=1e-12)
    assert cov.shape == (7, 2, 2)
    np.testing.assert_allclose(cov, np.swapaxes(cov, 1, 2))


def test_condition_against_gmr():
    gmr = pytest.importorskip("gmr")
    model, _ = fitted_model("full")
    given = np.array([0, 2])
    rng = np.random.default_rng(10)
    Xg = rng.normal(size=(5, 2)) * 2
    cond = model.condition(Xg, given)
    ref = gmr.GMM(n_components=3, priors=model.weights_, means=model.means_,
                  covariances=model.covariances_)
    for i in range(5):
        c = ref.condition(given, Xg[i])
        np.testing.assert_allclose(cond.weights[i], c.priors, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(cond.means[i], c.means, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(cond.covariances, c.covariances, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cond.predict(), ref.predict(given, Xg), rtol=1e-10, atol=1e-12)


def test_condition_bad_features():
    model, _ = fitted_model("diag")
    with pytest.raises(ValueError, match="at least one and at most 3"):
        model.condition(np.zeros((2, 4)), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="out of range"):
        model.condition(np.zeros((2, 1)), [7])
    with pytest.raises(ValueError, match="twice"):
        model.condition(np.zeros((2, 2)), [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        model.condition(np.array([[np.nan]]), [1])


# ---------------------------------------------------------------------------
# Out of core and Dask: the same statistics, the same EM loop
# ---------------------------------------------------------------------------


def medium_data(seed=11):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(1500, 3)), rng.normal(size=(1500, 3)) * 0.7 + 4])
    X = X[rng.permutation(X.shape[0])]
    return knock_out(X, 0.2, seed=seed), rng.uniform(0.5, 2.0, size=X.shape[0])


def fit_params(X, covariance_type, sample_weight=None):
    w0, m0, c0 = random_params(covariance_type, 2, 3, seed=12)
    model = fastgmm.GaussianMixture(
        2, covariance_type=covariance_type, missing="marginalize", max_iter=15, tol=0.0,
        weights_init=w0, means_init=m0 + 2.0,
        precisions_init=precisions(covariance_type, c0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        return model.fit(X, sample_weight=sample_weight)


def assert_same_fit(a, b, rtol=1e-10):
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_memmap_and_chunks_match_in_memory(covariance_type, tmp_path, route):
    X, w = medium_data()
    ref = fit_params(X, covariance_type, w)
    path = tmp_path / "x.npy"
    np.save(path, X)
    src = fastgmm.MemmapSource(str(path), w, block_size=1000)
    assert_same_fit(fit_params(src, covariance_type), ref)

    def chunks():
        for lo in range(0, X.shape[0], 700):
            yield X[lo:lo + 700], w[lo:lo + 700]

    assert_same_fit(fit_params(chunks, covariance_type), ref)


def test_dask_matches_in_memory():
    da = pytest.importorskip("dask.array")
    X, w = medium_data()
    ref = fit_params(X, "full", w)
    dx = da.from_array(X, chunks=(800, 3))
    dw = da.from_array(w, chunks=(800,))
    with __import__("dask").config.set(scheduler="synchronous"):
        got = fit_params(dx, "full", dw)
        assert_same_fit(got, ref)
        np.testing.assert_allclose(got.score_samples(dx).compute(), ref.score_samples(X),
                                   rtol=1e-10)
        with pytest.raises(ValueError, match="row with every entry missing \\(row 801\\)"):
            bad = X.copy()
            bad[801] = np.nan
            fit_params(da.from_array(bad, chunks=(800, 3)), "full")


def test_suff_stats_with_missing_add_up():
    model, X = fitted_model("tied")
    total = model.suff_stats(X[:20]) + model.suff_stats(X[20:])
    whole = model.suff_stats(X)
    for name in ("nk", "t", "s"):
        np.testing.assert_allclose(getattr(total, name), getattr(whole, name), rtol=1e-12,
                                   atol=1e-12)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def test_nan_is_an_error_by_default():
    X = small_data()
    with pytest.raises(ValueError, match="NaN.*missing='marginalize'"):
        fastgmm.GaussianMixture(2).fit(X)


def test_bad_missing_option():
    with pytest.raises(ValueError, match="missing must be one of"):
        fastgmm.GaussianMixture(2, missing="ignore").fit(np.zeros((5, 2)))


def test_row_all_missing_is_named(tmp_path):
    X = small_data()
    X[7] = np.nan
    with pytest.raises(ValueError, match="every entry missing \\(row 7\\)"):
        fastgmm.fit(X, 2, missing="marginalize")
    path = tmp_path / "x.npy"
    np.save(path, X)
    with pytest.raises(ValueError, match="every entry missing \\(row 7\\)"):
        fastgmm.fit(str(path), 2, missing="marginalize")
    model, _ = fitted_model()
    with pytest.raises(ValueError, match="every entry missing \\(row 7\\)"):
        model.predict(X)
    with pytest.raises(ValueError, match="every entry missing \\(row 7\\)"):
        model.impute(X)


def test_feature_never_observed_is_named():
    X = small_data()
    X[:, 2] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 1.0
    with pytest.raises(ValueError, match="feature 2 is never observed"):
        fastgmm.fit(X, 2, missing="marginalize")
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="feature 2 \\('c'\\) is never observed"):
        fastgmm.fit(frame, 2, missing="marginalize")


def test_infinity_is_still_an_error():
    X = small_data()
    X[3, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        fastgmm.fit(X, 2, missing="marginalize")
    model, _ = fitted_model()
    with pytest.raises(ValueError, match="infinity"):
        model.impute(X)


def test_nan_in_initial_parameters_is_refused():
    X = small_data()
    means = np.zeros((2, 4))
    means[1, 2] = np.nan
    with pytest.raises(ValueError, match="means_init contains NaN"):
        fastgmm.fit(X, 2, missing="marginalize", means_init=means)
    with pytest.raises(ValueError, match="weights_init contains NaN"):
        fastgmm.fit(X, 2, missing="marginalize", weights_init=[np.nan, 1.0])


def test_nan_in_fitted_parameters_is_refused():
    model, X = fitted_model("diag")
    model.means_ = model.means_.copy()
    model.means_[0, 0] = np.nan
    with pytest.raises(ValueError, match="means contain NaN"):
        model.impute(X)
    with pytest.raises(ValueError, match="means contain NaN"):
        model.score_samples(X)


def test_pattern_with_few_rows_is_fine():
    # An exact E-step needs no minimum number of rows per missing pattern:
    # a single row missing a feature is handled like any other.
    rng = np.random.default_rng(13)
    X = rng.normal(size=(200, 3))
    X[5, 0] = np.nan
    X[9, :2] = np.nan
    model = fastgmm.fit(X, 1, missing="marginalize", random_state=0)
    assert np.isfinite(model.covariances_).all()
    np.testing.assert_allclose(model.means_[0], np.nanmean(X, axis=0), atol=0.01)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def test_cli_fit_missing_and_impute(tmp_path, capsys):
    from fastgmm.cli import main

    rng = np.random.default_rng(14)
    X = np.exp(rng.multivariate_normal([1.0, 2.0, 0.5], [[0.5, 0.3, 0.1], [0.3, 0.4, 0.0],
                                                          [0.1, 0.0, 0.3]], size=300))
    cells = X.astype(object)
    holes = [(0, 1), (3, 0), (3, 2), (10, 2)]
    for i, j in holes:
        cells[i, j] = "" if i != 10 else "NA"
    path = tmp_path / "gaps.csv"
    lines = ["a,b,c"] + [",".join(str(v) for v in row) for row in cells]
    path.write_text("\n".join(lines) + "\n")
    model_path = tmp_path / "m.npz"
    assert main(["fit", str(path), "--k", "1", "--missing", "--log", "--standardize",
                 "--seed", "0", "--out", str(model_path), "-q"]) == 0
    assert main(["fit", str(path), "--k", "1", "--out", str(tmp_path / "no.npz"), "-q"]) == 2
    assert "--missing" in capsys.readouterr().err
    out = tmp_path / "filled.csv"
    assert main(["impute", str(model_path), str(path), "--out", str(out)]) == 0
    assert "filled 4 missing cells in 3 of 300 rows" in capsys.readouterr().out
    filled = np.loadtxt(out, delimiter=",", skiprows=1)
    assert filled.shape == (300, 3) and np.isfinite(filled).all()
    keep = np.ones_like(X, dtype=bool)
    for i, j in holes:
        keep[i, j] = False
    np.testing.assert_allclose(filled[keep], X[keep], rtol=1e-12)
    # The conditional expectation in the model's (log, standardised) units.
    model = fastgmm.load(model_path)
    Z = np.log(np.where(keep, X, np.nan))
    Z = (Z - np.nanmean(Z, axis=0)) / np.nanstd(Z, axis=0)
    expect = np.exp(np.nanmean(np.log(np.where(keep, X, np.nan)), axis=0)
                    + np.nanstd(np.log(np.where(keep, X, np.nan)), axis=0) * model.impute(Z))
    np.testing.assert_allclose(filled, expect, rtol=1e-9)
    drawn = tmp_path / "drawn.csv"
    assert main(["impute", str(model_path), str(path), "--seed", "3", "--out",
                 str(drawn)]) == 0
    draws = np.loadtxt(drawn, delimiter=",", skiprows=1)
    np.testing.assert_allclose(draws[keep], X[keep], rtol=1e-12)
    assert not np.allclose(draws[~keep], filled[~keep])


def test_model_file_keeps_the_option(tmp_path):
    model, X = fitted_model("tied")
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = fastgmm.load(path)
    assert loaded.missing == "marginalize"
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))


# ---------------------------------------------------------------------------
# Recovery of a known mixture, against dropping rows and imputing means
# ---------------------------------------------------------------------------

#: The known mixture of the recovery test: 3 correlated components in 4-D.
TRUE_WEIGHTS = np.array([0.5, 0.3, 0.2])
TRUE_MEANS = np.array([[0.0, 0.0, 0.0, 0.0], [4.0, 3.0, -2.0, 1.0], [-3.0, 4.0, 2.0, -2.0]])


def true_covariances():
    rng = np.random.default_rng(15)
    a = rng.normal(size=(3, 4, 4))
    return a @ np.swapaxes(a, 1, 2) / 4 + 0.3 * np.eye(4)


def recovery_errors(fraction, n=4000, seed=16):
    """Errors of the three estimates after removing ``fraction`` of the entries.

    Returns ``{method: (mean error, covariance error, weight error)}``: the
    largest Euclidean error of a mean, the largest relative Frobenius error
    of a covariance and the largest error of a weight, components matched to
    the truth by their means.
    """
    from itertools import permutations

    rng = np.random.default_rng(seed)
    cov = true_covariances()
    z = rng.choice(3, size=n, p=TRUE_WEIGHTS)
    X = TRUE_MEANS[z] + np.einsum("kde,ke->kd", np.linalg.cholesky(cov)[z],
                                  rng.standard_normal((n, 4)))
    Xm = knock_out(X, fraction, seed=seed)
    kw = dict(n_components=3, random_state=0, n_init=3, tol=1e-6, max_iter=500)
    fits = {"complete data": fastgmm.fit(X, **kw),
            "fastgmm (missing)": fastgmm.fit(Xm, missing="marginalize", **kw)}
    rows = ~np.isnan(Xm).any(axis=1)
    fits["drop incomplete rows"] = fastgmm.fit(Xm[rows], **kw)
    fits["mean imputation"] = fastgmm.fit(np.where(np.isnan(Xm), np.nanmean(Xm, axis=0), Xm),
                                          **kw)
    out = {}
    for name, model in fits.items():
        best = None
        for perm in permutations(range(3)):
            p = list(perm)
            err_m = np.linalg.norm(model.means_[p] - TRUE_MEANS, axis=1).max()
            if best is None or err_m < best[0]:
                err_c = max(np.linalg.norm(model.covariances_[p[j]] - cov[j])
                            / np.linalg.norm(cov[j]) for j in range(3))
                err_w = np.abs(model.weights_[p] - TRUE_WEIGHTS).max()
                best = (err_m, err_c, err_w)
        out[name] = best
    return out


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_recovery_beats_dropping_rows_and_mean_imputation(fraction):
    errors = recovery_errors(fraction)
    ours = errors["fastgmm (missing)"]
    full = errors["complete data"]
    # Within sampling error of the truth: the complete-data fit's own errors,
    # grown with the information lost (generously: up to 1 / (1 - fraction)^2).
    grow = 3.0 / (1.0 - fraction) ** 2
    assert ours[0] < grow * max(full[0], 0.03)
    assert ours[1] < grow * max(full[1], 0.03)
    assert ours[2] < grow * max(full[2], 0.01)
    # Better than either shortcut on the covariances, and on the means than
    # mean imputation, which drags every mean towards the overall mean.
    assert ours[1] < errors["drop incomplete rows"][1]
    assert ours[1] < errors["mean imputation"][1]
    assert ours[0] < errors["mean imputation"][0]


def test_partial_fit_with_missing_entries():
    X, _ = medium_data()
    complete = np.random.default_rng(17).normal(size=X.shape)
    kw = dict(n_components=2, random_state=0, max_iter=20)
    online = fastgmm.GaussianMixture(missing="marginalize", **kw)
    for lo in range(0, 3000, 1000):
        online.partial_fit(X[lo:lo + 1000])
    assert online.n_steps_ == 3 and np.isfinite(online.covariances_).all()
    # The second-batch E-step is the exact missing-data one.
    before = online._params()
    online.partial_fit(X[:500])
    stats = missing_stats(X[:500], None, before)
    assert online.lower_bound_ == pytest.approx(stats.mean_log_likelihood, rel=1e-12)
    # Batches without NaN: the option changes nothing.
    a = fastgmm.GaussianMixture(**kw)
    b = fastgmm.GaussianMixture(missing="marginalize", **kw)
    for lo in range(0, 3000, 1000):
        a.partial_fit(complete[lo:lo + 1000])
        b.partial_fit(complete[lo:lo + 1000])
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)


def test_bayesian_mixture_refuses_marginalizing():
    # Its variational constants depend on the number of features: no plug-in marginal.
    X = small_data()
    rows = ~np.isnan(X).any(axis=1)
    model = fastgmm.BayesianGaussianMixture(n_components=2, random_state=0, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        model.fit(X[rows])
    with pytest.raises(ValueError, match="available for GaussianMixture"):
        model.predict(X, missing="marginalize")
    with pytest.raises(ValueError, match="NaN"):
        model.predict(X)
    assert not hasattr(model, "impute")


# ---------------------------------------------------------------------------
# Pruning bounds of the per-row kernel
# ---------------------------------------------------------------------------


def ill_conditioned_params(k, d, seed, spread=3.0, condition=1e4):
    """Full covariances with eigenvalues from 1/sqrt(condition) to sqrt(condition)."""
    rng = np.random.default_rng(seed)
    w = rng.random(k) + 0.2
    w /= w.sum()
    means = rng.normal(scale=spread, size=(k, d))
    cov = np.empty((k, d, d))
    for j in range(k):
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        eig = np.exp(np.linspace(-0.5, 0.5, d) * np.log(condition))
        cov[j] = (q * rng.permutation(eig)) @ q.T
    return w, means, 0.5 * (cov + np.swapaxes(cov, 1, 2))


@pytest.mark.parametrize("condition", [1.0, 30.0, 1e4])
def test_pruning_bounds_hold_against_scipy_marginals(condition):
    # The eigenvalue bound and the line bound of em_stats_missing_full (its
    # Notes) are upper bounds of every marginal log density, near the means
    # (where the line bound is tight) and far from them.
    from scipy.stats import multivariate_normal

    from fastgmm._kernels_missing import _LINE_MARGIN, _LINE_SAFETY
    from fastgmm._missing import _kernel_params, _precision_floor

    k, d = 4, 6
    w, means, cov = ill_conditioned_params(k, d, seed=int(condition), condition=condition)
    p = GaussianParams.from_covariances("full", w, means, cov)
    _, _, prec, log_norm = _kernel_params(p)
    floor = _precision_floor(prec)
    rng = np.random.default_rng(11)
    checked = 0
    for trial in range(300):
        b = trial % k
        scale = [0.0, 0.3, 1.0, 5.0][trial % 4]
        x = means[b] + scale * rng.multivariate_normal(np.zeros(d), cov[b])
        miss = rng.random(d) < 0.4
        if miss.all():
            miss[rng.integers(d)] = False
        o = ~miss
        nm = int(miss.sum())
        for j in range(k):
            exact = np.log(w[j]) + multivariate_normal(means[j, o], cov[j][np.ix_(o, o)]).logpdf(
                x[o])
            d_o = x[o] - means[j, o]
            log_gap = 0.5 * (np.log(2 * np.pi) - np.log(floor[j]))
            eig_bound = log_norm[j] + nm * log_gap - 0.5 * floor[j] * (d_o @ d_o)
            assert eig_bound >= exact - 1e-9 * abs(exact)
            if j == b:
                continue
            v = (means[b] - means[j]) / np.linalg.norm(means[b] - means[j])
            u = np.where(miss, 0.0, v)
            lin = u[o] @ d_o
            s_o = u @ cov[j] @ u + _LINE_MARGIN * (nm + 1) ** 2 * (d + 2) / floor[j]
            if lin > 0 and s_o > 0:
                line_bound = log_norm[j] + nm * log_gap - 0.5 * _LINE_SAFETY * lin**2 / s_o
                assert line_bound >= exact - 1e-9 * abs(exact)
                checked += 1
    assert checked > 300


@pytest.mark.parametrize("condition", [1.0, 1e3])
def test_pruned_kernel_matches_reference_on_separated_clusters(condition, monkeypatch):
    # Separated, anisotropic clusters: the per-row kernel skips most (row,
    # component) pairs, and rows between clusters keep responsibilities from
    # exp(-30) to 1 that a bound too tight would drop.
    import fastgmm._missing as mod

    monkeypatch.setattr(mod, "PATTERN_MIN_ROWS", 10**9)
    k, d = 5, 6
    w, means, cov = ill_conditioned_params(k, d, seed=3, spread=6.0, condition=condition)
    rng = np.random.default_rng(5)
    parts = [rng.multivariate_normal(means[j], cov[j], size=150) for j in range(k)]
    # Rows along the lines between means: every gap between components.
    for j in range(k - 1):
        t = rng.uniform(0.0, 1.0, size=(60, 1))
        parts.append(means[j] + t * (means[j + 1] - means[j]) + 0.1 * rng.normal(size=(60, d)))
    X = knock_out(np.concatenate(parts), 0.25, seed=8)
    params = (w, means, cov)
    ref, ref_bounds = missing_em_iterations(X, *params, "full", 3, 1e-6)
    model, seen = run_iterates(X, "full", params, 3)
    assert_iterates_match(model, seen, ref, ref_bounds)


def test_pruned_kernel_is_thread_independent(monkeypatch):
    # Every row through the per-row kernel, on separated clusters (both bounds
    # skip components), over enough rows for the groups to be shared.
    import fastgmm._missing as mod

    monkeypatch.setattr(mod, "PATTERN_MIN_ROWS", 10**9)
    k, d = 6, 7
    w, means, cov = ill_conditioned_params(k, d, seed=9, spread=5.0, condition=50.0)
    rng = np.random.default_rng(10)
    labels = rng.integers(0, k, size=20000)
    X = means[labels] + np.einsum("nij,nj->ni", np.linalg.cholesky(cov)[labels],
                                  rng.normal(size=(20000, d)))
    X = knock_out(X, 0.25, seed=11)
    p = GaussianParams.from_covariances("full", w, means, cov)
    assert_same_bits_on_one_and_two_threads(X, p)
