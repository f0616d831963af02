"""fastgmm._degenerate: empty and collapsed components are repaired, reported, or raised.

References are computed with numpy/scipy (``naive``) from the same parameters,
never with the repair code under test.
"""

import math
import re
import warnings

import numpy as np
import pytest
from naive import e_step, full_covariances, m_step, unit_covariances, weighted_log_prob
from scipy.special import logsumexp

import fastgmm
from fastgmm import DegenerateCovarianceError, DegenerateDataWarning
from fastgmm._compute import compute_stats
from fastgmm._degenerate import MAX_RESEEDS, DegenerateRepair
from fastgmm._em import run_em
from fastgmm._params import GaussianParams
from fastgmm._sources import ArraySource

WHERE = re.compile(r"at (initialisation|EM iteration \d+): ")


def _fit(X, k, record=True, **kw):
    """Fit, returning the model and the DegenerateDataWarning messages."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        model = fastgmm.GaussianMixture(k, random_state=0, **kw).fit(X)
    others = [r for r in rec if not issubclass(r.category, (DegenerateDataWarning,
                                                             fastgmm.ConvergenceWarning))]
    assert not others, [str(r.message) for r in others]
    return model, [str(r.message) for r in rec if r.category is DegenerateDataWarning]


def assert_valid(model, X):
    """A usable mixture: finite, weights on the simplex, SPD covariances, sane outputs."""
    k, d = model.means_.shape
    ctype = model.covariance_type
    for a in (model.weights_, model.means_, model.covariances_, model.precisions_cholesky_):
        assert np.isfinite(a).all()
    assert (model.weights_ > 0).all()
    assert model.weights_.sum() == pytest.approx(1.0, abs=1e-12)
    full = full_covariances(ctype, model.covariances_, k, d)
    for c in full:
        np.testing.assert_allclose(c, c.T, rtol=0, atol=1e-12 * np.abs(c).max())
        assert np.linalg.eigvalsh(c).min() > 0
    assert np.isfinite(model.lower_bounds_).all() and len(model.lower_bounds_) >= 1
    proba = model.predict_proba(X)
    assert np.isfinite(proba).all() and (proba >= 0).all() and (proba <= 1).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert np.isfinite(model.score_samples(X)).all()


# ---------------------------------------------------------------------------
# Scenarios from the issue, with reg_covar=0 so that nothing hides the degeneracy
# ---------------------------------------------------------------------------

_rng = np.random.default_rng(7)
_blob = _rng.normal(size=(60, 3))
SCENARIOS = {
    # 2 distinct points, 30 copies each: every component collapses to a point.
    "duplicates": (np.repeat(_rng.normal(size=(2, 2)) * 4, 30, axis=0), 2),
    # The second feature never varies.
    "constant_feature": (np.c_[_rng.normal(size=(80, 1)), np.full((80, 1), 3.0)], 2),
    # 3 distinct points (fewer than d + 1 = 4) far from a blob in 3-d.
    "cluster_below_d_plus_1": (np.r_[_blob, np.repeat(_rng.normal(size=(3, 3)) + 40, 5,
                                                        axis=0)], 2),
    # 3 distinct points, 5 components: k-means leaves clusters empty.
    "more_components_than_points": (np.repeat(_rng.normal(size=(3, 2)) * 5, 10, axis=0), 5),
    # One sample per component.
    "n_equals_k": (_rng.normal(size=(3, 2)), 3),
}
# (scenario, covariance_type) pairs that must need a repair.  The others are
# well posed for that covariance type (a spherical variance averages over
# features; diag and tied see variance in every feature) and must not warn.
MUST_REPAIR = {
    ("duplicates", c) for c in ("full", "tied", "diag", "spherical")} | {
    ("constant_feature", c) for c in ("full", "tied", "diag")} | {
    ("cluster_below_d_plus_1", "full")} | {
    ("more_components_than_points", c) for c in ("full", "tied", "diag", "spherical")} | {
    ("n_equals_k", c) for c in ("full", "diag", "spherical")}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenarios_complete_with_warning_or_raise(scenario, covariance_type):
    """Each degenerate scenario fits a valid mixture; 'warn' warns exactly where a repair is
    needed, naming where and what; 'ignore' gives the same bits silently; 'raise' raises at
    the first repair.
    """
    X, k = SCENARIOS[scenario]
    kw = dict(covariance_type=covariance_type, reg_covar=0.0)
    model, messages = _fit(X, k, **kw)
    assert_valid(model, X)
    if (scenario, covariance_type) in MUST_REPAIR:
        assert messages, "a degenerate fit must warn"
    elif covariance_type != "tied":  # tied with n == k is at the edge of rounding
        assert not messages, messages
    for msg in messages:
        # Each warning names where it happened and which component it repaired.
        assert WHERE.search(msg), msg
        assert re.search(r"component \d+ |the tied covariance", msg), msg
        assert "diagonal regularisation was raised" in msg or "re-seeded" in msg \
            or "left empty" in msg or "splitting" in msg, msg

    # 'ignore': same repairs, no warning, identical parameters.
    quiet, quiet_messages = _fit(X, k, on_degenerate="ignore", **kw)
    assert quiet_messages == []
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(quiet, name), getattr(model, name))
    assert quiet.lower_bounds_ == model.lower_bounds_

    # 'raise': a strict error exactly when 'warn' had something to repair.
    strict = fastgmm.GaussianMixture(k, random_state=0, on_degenerate="raise", **kw)
    if messages:
        first = WHERE.search(messages[0]).group(0).rstrip(": ")
        with pytest.raises(DegenerateCovarianceError, match=re.escape(first)) as info:
            strict.fit(X)
        assert "component" in str(info.value) or "tied" in str(info.value)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
            strict.fit(X)


@pytest.mark.parametrize("scenario", ["duplicates", "more_components_than_points"])
def test_peer_fails_where_fastgmm_survives(scenario):
    """Where scikit-learn fails on an ill-defined covariance, fastgmm repairs, warns and puts
    every component on a distinct point.
    """
    from sklearn.mixture import GaussianMixture as SkGMM

    X, k = SCENARIOS[scenario]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="ill-defined empirical covariance"):
            SkGMM(k, reg_covar=0.0, random_state=0).fit(X)
    model, messages = _fit(X, k, reg_covar=0.0)
    assert messages
    assert_valid(model, X)
    # Every component sits on one of the distinct points.
    distinct = np.unique(X, axis=0)
    for mu in model.means_:
        assert np.abs(distinct - mu).max(axis=1).min() < 1e-9


def test_collinear_cluster_at_large_scale_default_settings():
    """A rank-deficient cluster at scale 1e7: rounding outweighs reg_covar=1e-6."""
    from sklearn.mixture import GaussianMixture as SkGMM

    rng = np.random.default_rng(0)
    t = rng.normal(size=(40, 1))
    line = np.c_[t, 2 * t, -t]
    X = np.r_[rng.normal(size=(200, 3)) * 3 + 10, line] * 1e7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="ill-defined empirical covariance"):
            SkGMM(2, random_state=0).fit(X)
    model, messages = _fit(X, 2)
    assert messages and all("diagonal regularisation was raised" in m for m in messages)
    assert_valid(model, X)
    labels = model.predict(X)
    j = labels[-1]
    assert (labels[200:] == j).all() and (labels[:200] != j).all()
    np.testing.assert_allclose(model.means_[j], line.mean(axis=0) * 1e7, rtol=0,
                               atol=1e-6 * np.abs(X).max())
    assert model.weights_[j] == pytest.approx(40 / 240, rel=1e-9)


def test_more_components_than_points_default_reg_reseeds_at_initialisation():
    """More components than distinct points: empty components are re-seeded at initialisation and
    none is left dead.
    """
    X, k = SCENARIOS["more_components_than_points"]
    model, messages = _fit(X, k)
    assert any("at initialisation" in m and "re-seeded at the worst-explained sample" in m
               for m in messages)
    assert_valid(model, X)
    # No component is left dead: each explains a share of the data.
    assert model.weights_.min() > 0.01


# ---------------------------------------------------------------------------
# Empty component during EM: re-seed at the worst-explained row (checked with scipy)
# ---------------------------------------------------------------------------

def _three_clusters():
    rng = np.random.default_rng(3)
    X = np.r_[rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + [10.0, 0.0],
              rng.normal(size=(50, 2)) * 0.5 + [0.0, 30.0]]
    w0 = np.array([0.4, 0.4, 0.2])
    m0 = np.array([[0.0, 0.0], [10.0, 0.0], [1e4, 1e4]])  # component 2 explains nothing
    return X, w0, m0


def _user_init(ctype, w0, m0):
    """Unit precisions and the equal unit covariances for ``k`` components in ``d``."""
    unit = unit_covariances(ctype, *m0.shape)
    return unit, unit.copy()


@pytest.mark.parametrize("weighted", [False, True])
def test_empty_component_reseeded_at_worst_explained_row(covariance_type, weighted):
    """An empty component is re-seeded at the row of lowest scipy density (never a zero-weight
    row) with weight 1/3 and the pooled covariance; the others are numpy's M-step.
    """
    X, w0, m0 = _three_clusters()
    ctype = covariance_type
    prec, cov0 = _user_init(ctype, w0, m0)
    reg = 1e-6

    def reference(sw):
        resp, _ = e_step(X, w0, m0, cov0, ctype)
        assert (resp[:, 2] == 0).all()  # the component is empty in exact terms
        hw, hm, hc = m_step(X, resp[:, :2], ctype, reg, sw)
        lse = logsumexp(weighted_log_prob(X, hw, hm, hc, ctype), axis=1)
        if sw is not None:
            lse[sw == 0] = np.inf
        return hw, hm, hc, int(np.argmin(lse))

    sw = None
    if weighted:
        # Zero weight on the row that would otherwise be picked.
        sw = np.ones(len(X))
        sw[reference(None)[3]] = 0.0
    hw, hm, hc, row = reference(sw)

    seen = {}

    def callback(info):
        if info.iteration == 1:
            seen["params"] = info.params.copy()

    model = fastgmm.GaussianMixture(
        3, covariance_type=ctype, weights_init=w0, means_init=m0, precisions_init=prec,
        reg_covar=reg, callback=callback, max_iter=1000, tol=1e-6)
    with pytest.warns(DegenerateDataWarning,
                      match=rf"at EM iteration 1: component 2 was empty and was re-seeded "
                            rf"at the worst-explained sample \(row {row}\)"):
        model.fit(X, sample_weight=sw)
    p = seen["params"]
    np.testing.assert_array_equal(p.means[2], X[row])
    assert p.weights[2] == pytest.approx(1 / 3, rel=1e-12)
    np.testing.assert_allclose(p.weights[:2], hw * 2 / 3, rtol=1e-10)
    np.testing.assert_allclose(p.means[:2], hm, rtol=1e-10, atol=1e-10)
    full_h = full_covariances(ctype, hc, 2, 2)
    full_p = full_covariances(ctype, p.covariances, 3, 2)
    # Tied statistics are taken about one shift, the weighted mean of the means,
    # which the far-away component drags 2000 units off the data: about
    # eps * 2000**2 of relative rounding, hence the looser tolerance.
    rtol = 1e-7 if ctype == "tied" else 1e-9
    np.testing.assert_allclose(full_p[:2], full_h, rtol=rtol, atol=1e-12)
    # The re-seeded component takes the pooled (weight-averaged) covariance.
    pooled = (hw[:, None, None] * full_h).sum(axis=0) / hw.sum()
    np.testing.assert_allclose(full_p[2], pooled, rtol=rtol, atol=1e-12)

    assert_valid(model, X)
    if weighted:
        return  # the seed is then a tail row of another cluster: a local optimum is fine
    # From there EM finds the third cluster.
    order = np.argsort(model.means_[:, 1] * 100 + model.means_[:, 0])
    np.testing.assert_allclose(model.means_[order][:, 1], [0, 0, 30], atol=0.3)
    w_expected = np.array([100, 100, 50]) / 250
    np.testing.assert_allclose(np.sort(model.weights_), np.sort(w_expected), atol=0.01)


def test_empty_component_raise_mode_names_component_and_iteration():
    """With on_degenerate='raise' an empty component raises, naming it and the iteration, and
    leaves the model unfitted.
    """
    X, w0, m0 = _three_clusters()
    prec, _ = _user_init("full", w0, m0)
    model = fastgmm.GaussianMixture(3, weights_init=w0, means_init=m0, precisions_init=prec,
                                    on_degenerate="raise")
    with pytest.raises(DegenerateCovarianceError,
                       match=r"component 2 is empty at EM iteration 1") as info:
        model.fit(X)
    assert info.value.component == 2
    assert not hasattr(model, "weights_")


def test_empty_component_without_data_splits_heaviest(covariance_type):
    """Statistics-only repair: moment-matched split of the heaviest component."""
    X, w0, m0 = _three_clusters()
    ctype = covariance_type
    _, cov0 = _user_init(ctype, w0, m0)
    reg = 1e-6
    resp, _ = e_step(X, w0, m0, cov0, ctype)
    hw, hm, hc = m_step(X, resp[:, :2], ctype, reg)
    big = int(np.argmax(hw))
    params0 = GaussianParams.from_covariances(ctype, w0, m0, cov0)
    repair = DegenerateRepair("warn")  # no data: cannot look for the worst row
    with pytest.warns(DegenerateDataWarning,
                      match=rf"component 2 was empty and was filled by splitting "
                            rf"component {big}"):
        res = run_em(ArraySource(X), params0, tol=0.0, max_iter=1, reg_covar=reg,
                     repair=repair)
    p = res.params
    other = 1 - big
    # Mass of the parent is shared equally; the untouched component is the M-step's.
    assert p.weights[2] == pytest.approx(hw[big] / 2, rel=1e-10)
    assert p.weights[big] == pytest.approx(hw[big] / 2, rel=1e-10)
    assert p.weights[other] == pytest.approx(hw[other], rel=1e-10)
    np.testing.assert_allclose(p.means[other], hm[other], rtol=1e-10)
    # The halves are symmetric about the parent mean ...
    np.testing.assert_allclose((p.means[big] + p.means[2]) / 2, hm[big], rtol=1e-10)
    step = (p.means[big] - p.means[2]) / 2
    full_parent = full_covariances(ctype, hc, 2, 2)[big]
    full_p = full_covariances(ctype, p.covariances, 3, 2)
    np.testing.assert_allclose(full_p[2], full_p[big], rtol=1e-12)
    rtol = 1e-7 if ctype == "tied" else 1e-9  # far shift: see the re-seed test
    if ctype in ("full", "diag"):
        # ... and together match the parent's covariance exactly.
        np.testing.assert_allclose(full_p[big] + np.outer(step, step), full_parent,
                                   rtol=1e-9)
        lam = (np.linalg.eigvalsh(full_parent)[-1] if ctype == "full"
               else np.diag(full_parent).max())
        assert np.linalg.norm(step) == pytest.approx(math.sqrt(2 / math.pi * lam), rel=1e-9)
    else:  # tied and spherical keep the parent's covariance
        np.testing.assert_allclose(full_p[big], full_parent, rtol=rtol)
    assert np.isfinite(res.lower_bounds).all()


# ---------------------------------------------------------------------------
# Collapse during EM: regularisation raised once, kept for the rest of the run
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("ctype", ["full", "diag", "spherical"])
def test_collapse_during_em_raises_regularisation_once(ctype):
    """A collapsed component gets 1e-6 of the data variance as extra regularisation, reported
    once and kept for the run.
    """
    rng = np.random.default_rng(5)
    point = np.array([1000.0, 1000.0])
    X = np.r_[rng.normal(size=(100, 2)), np.repeat(point[None], 20, axis=0)]
    w0 = np.array([100, 20]) / 120
    m0 = np.array([[0.0, 0.0], point])
    prec, _ = _user_init(ctype, w0, m0)
    model = fastgmm.GaussianMixture(2, covariance_type=ctype, weights_init=w0,
                                    means_init=m0, precisions_init=prec, reg_covar=0.0)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        model.fit(X)
    messages = [str(r.message) for r in rec]
    assert all(r.category is DegenerateDataWarning for r in rec), messages
    # Reported once, at the iteration it happened; not again while the extra holds.
    assert len(messages) == 1 and "at EM iteration 1: component 1 collapsed" in messages[0]
    extra = 1e-6 * X.var(axis=0).mean()  # 1e-6 of the mean data variance
    assert f"raised by {extra:.3g}" in messages[0]
    full = full_covariances(ctype, model.covariances_, 2, 2)
    np.testing.assert_allclose(full[1], extra * np.eye(2), rtol=1e-9)
    np.testing.assert_array_equal(model.means_[1], point)
    np.testing.assert_allclose(model.weights_, w0, rtol=1e-12)
    assert_valid(model, X)


def test_repair_is_bitwise_noop_on_healthy_data(covariance_type):
    """On healthy data the repair changes no bit of the EM iterates."""
    rng = np.random.default_rng(11)
    X = np.r_[rng.normal(size=(150, 3)), rng.normal(size=(150, 3)) + 4]
    k = 3
    w0 = np.full(k, 1 / k)
    m0 = X[[0, 160, 299]]
    _, cov0 = _user_init(covariance_type, w0, np.zeros((k, 3)))
    p0 = GaussianParams.from_covariances(covariance_type, w0, m0, cov0)
    kw = dict(tol=0.0, max_iter=6, reg_covar=1e-6)
    plain = run_em(ArraySource(X), p0, **kw)
    repaired = run_em(ArraySource(X), p0, repair=DegenerateRepair("raise", ArraySource(X)), **kw)
    for a, b in zip((plain.params.weights, plain.params.means, plain.params.covariances),
                    (repaired.params.weights, repaired.params.means,
                     repaired.params.covariances), strict=True):
        np.testing.assert_array_equal(a, b)
    assert plain.lower_bounds == repaired.lower_bounds


def test_reseed_limit_then_left_empty():
    """A component that keeps emptying is re-seeded MAX_RESEEDS times, then left."""
    X, w0, m0 = _three_clusters()
    stuck = GaussianParams.from_covariances("diag", w0, m0, np.ones((3, 2)))
    stats = compute_stats(X, None, stuck)
    assert stats.nk[2] == 0.0
    repair = DegenerateRepair("warn", ArraySource(X))
    for it in range(1, MAX_RESEEDS + 1):
        with pytest.warns(DegenerateDataWarning, match=rf"iteration {it}: component 2 was "
                                                       "empty and was re-seeded"):
            p = repair(stats, 1e-6, it)
        assert p.weights[2] == pytest.approx(1 / 3)
    with pytest.warns(DegenerateDataWarning,
                      match=rf"component 2 is empty again after {MAX_RESEEDS} re-seeds"):
        p = repair(stats, 1e-6, MAX_RESEEDS + 1)
    assert p.weights[2] < 1e-14
    assert np.isfinite(p.covariances).all() and (p.covariances > 0).all()
    # A new run (iteration number goes back) starts with a fresh budget.
    with pytest.warns(DegenerateDataWarning, match="re-seeded"):
        repair(stats, 1e-6, 1)


def test_overflowing_statistics_give_a_clear_error():
    """Statistics that overflow raise DegenerateCovarianceError naming the overflow, in 'warn'
    and 'raise' modes.
    """
    X = np.random.default_rng(0).normal(size=(300, 2)) * 1e155
    for mode in ("warn", "raise"):
        # k-means' own variance estimate overflows first; numpy warns about it.
        with np.errstate(over="ignore"), pytest.raises(DegenerateCovarianceError,
                                                       match="not finite.*overflow"):
            fastgmm.GaussianMixture(2, random_state=0, on_degenerate=mode).fit(X)


def test_float32_collinear_cluster_is_repaired_for_float32_precision():
    """Singular at float32 resolution, fine in float64: only the float32 fit repairs."""
    rng = np.random.default_rng(8)
    pair = np.repeat(np.array([[500.0, 500.0], [510.0, 504.0]]), 4, axis=0)
    X = np.r_[rng.normal(scale=30.0, size=(40, 2)), pair]
    kw = dict(weights_init=[40 / 48, 8 / 48], means_init=[[0.0, 0.0], [505.0, 502.0]],
              precisions_init=np.stack([np.eye(2) / 900, np.eye(2) / 25]))
    m64, msg64 = _fit(X, 2, **kw)
    assert msg64 == []
    m32, msg32 = _fit(X.astype(np.float32), 2, **kw)
    assert msg32 and all("component 1 collapsed" in m for m in msg32)
    assert m32.covariances_.dtype == np.float32
    # The stored float32 covariances are still positive definite, so sampling works.
    for c in m32.covariances_.astype(np.float64):
        assert np.linalg.eigvalsh(c).min() > 0
    Xs, _ = m32.sample(50, random_state=0)
    assert np.isfinite(Xs).all()
    assert_valid(m32, X.astype(np.float32))


def test_out_of_core_source_repairs_from_statistics_alone(tmp_path):
    """A .npy file is read block by block: repairs need no in-memory data."""
    X, k = SCENARIOS["more_components_than_points"]
    path = tmp_path / "x.npy"
    np.save(path, X)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        model = fastgmm.GaussianMixture(k, reg_covar=0.0, random_state=0).fit(str(path))
    messages = [str(r.message) for r in rec if r.category is DegenerateDataWarning]
    assert messages and all(WHERE.search(m) for m in messages)
    assert not any("worst-explained" in m for m in messages)  # no row access
    assert_valid(model, X)
    distinct = np.unique(X, axis=0)
    for mu in model.means_:
        assert np.abs(distinct - mu).max(axis=1).min() < 1e-9


def test_more_seeds_than_distinct_rows_share_a_seed():
    """Three empty components and two distinct rows: every seed is a row, both rows are used
    before one is reused.
    """
    X = np.repeat(np.array([[0.0, 0.0], [3.0, 1.0]]), [6, 4], axis=0)
    means = np.array([[1.0, 0.5], [1e4, 0.0], [-1e4, 0.0], [0.0, 1e4]])
    params = GaussianParams.from_covariances("full", np.full(4, 0.25), means,
                                             np.stack([np.eye(2)] * 4))
    stats = compute_stats(X, None, params)
    assert (stats.nk[1:] == 0).all()
    with pytest.warns(DegenerateDataWarning) as rec:
        p = DegenerateRepair("warn", ArraySource(X))(stats, 1e-6, 1)
    message = str(rec[0].message)
    for j in (1, 2, 3):
        assert f"component {j} was empty and was re-seeded" in message
    seeds = p.means[1:]
    assert all((np.abs(X - s).max(axis=1) == 0).any() for s in seeds)
    # The two distinct rows are used before any is used twice.
    assert len({tuple(s) for s in seeds[:2]}) == 2
    np.testing.assert_allclose(p.weights[1:], 0.25, rtol=1e-12)
    assert p.weights.sum() == pytest.approx(1.0, abs=1e-14)
