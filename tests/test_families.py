"""mclust's 14 parsimonious covariance families, against mclust and closed forms.

The reference values come from R's mclust (``tests/data/mclust/make_fixtures.R``
wrote ``mclust_fixtures.json`` and the data sets); the suite does not need R.
Every model is fitted from the same initial hard partition as mclust's
``me()`` (its first M-step from those responsibilities), with ``reg_covar=0``
and a tight tolerance, and compared with mclust's log-likelihood, BIC (mclust's
sign: ``2 logL - p log n``), parameter count and parameters.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastgmm
from fastgmm._compute import resp_stats
from fastgmm._covariance import FAMILIES, MCLUST_MODELS, SKLEARN_TYPES, family

DATA = Path(__file__).resolve().parent / "data" / "mclust"
FIXTURES = json.loads((DATA / "mclust_fixtures.json").read_text())
SETS = tuple(FIXTURES["sets"])

#: mclust's VVE converges to points that are not stationary for the exact
#: M-step (see test_vve_reaches_at_least_mclust), so it is tested apart.
AGREEING = tuple(m for m in MCLUST_MODELS if m != "VVE")

#: What the issue asks: log-likelihood and BIC to 1e-6 relative, parameters to 1e-5.
RTOL_LL = 1e-6
TOL_PARAM = 1e-5


def _data(name):
    return np.loadtxt(DATA / f"{name}.csv", delimiter=",", skiprows=1)


def _start(X, labels, k, model):
    """Parameters of the M-step from hard responsibilities (mclust's ``me(z=...)``)."""
    fam = family(model)
    shift = X.mean(axis=0) if fam.shared else np.zeros((k, X.shape[1]))
    stats = resp_stats(X, None, None, k, shift, model, labels=labels.astype(np.int64))
    return stats.m_step(0.0)


def _fit_from(X, model, start, **kw):
    gm = fastgmm.GaussianMixture(start.n_components, covariance_type=model, reg_covar=0.0,
                                 tol=1e-15, max_iter=20000, weights_init=start.weights,
                                 means_init=start.means, precisions_init=start.precisions,
                                 **kw)
    return gm.fit(X)


def _full(gm):
    k, d = gm.means_.shape
    return np.asarray(family(gm.covariance_type).to_full(gm.covariances_, k, d))


def _fit_like_mclust(name, model):
    S = FIXTURES["sets"][name]
    X = _data(name)
    start = _start(X, np.asarray(S["labels"]), S["G"], model)
    return X, S["models"][model], _fit_from(X, model, start)


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("model", AGREEING)
def test_agrees_with_mclust(name, model):
    X, ref, gm = _fit_like_mclust(name, model)
    n = X.shape[0]
    assert gm.converged_
    assert gm._n_parameters() == ref["n_parameters"]
    loglik = gm.score(X) * n
    np.testing.assert_allclose(loglik, ref["loglik"], rtol=RTOL_LL)
    np.testing.assert_allclose(-gm.bic(X), ref["bic"], rtol=RTOL_LL)
    np.testing.assert_allclose(gm.weights_, ref["weights"], rtol=0, atol=TOL_PARAM)
    means, cov = np.array(ref["means"]), np.array(ref["covariances"])
    np.testing.assert_allclose(gm.means_, means, rtol=0, atol=TOL_PARAM * np.abs(means).max())
    np.testing.assert_allclose(_full(gm), cov, rtol=0, atol=TOL_PARAM * np.abs(cov).max())


@pytest.mark.parametrize("name", SETS)
def test_vve_reaches_at_least_mclust(name):
    # Documented difference: from the same start fastgmm's VVE (exact M-step,
    # MM iterated to convergence) ends at a log-likelihood no lower than
    # mclust's, and mclust's fitted VVE is not a fixed point of the exact EM.
    X, ref, gm = _fit_like_mclust(name, "VVE")
    n = X.shape[0]
    assert gm._n_parameters() == ref["n_parameters"]
    assert gm.score(X) * n >= ref["loglik"] - 1e-6 * abs(ref["loglik"])
    cov = np.array(ref["covariances"])
    again = fastgmm.GaussianMixture(
        len(ref["weights"]), covariance_type="VVE", reg_covar=0.0, tol=1e-12, max_iter=20000,
        weights_init=ref["weights"], means_init=ref["means"],
        precisions_init=np.linalg.inv(cov)).fit(X)
    assert again.score(X) * n > ref["loglik"] + 1e-3


# ---------------------------------------------------------------------------
# Parameter counts: mclust's (Scrucca et al. 2016, Table 1), written out
# ---------------------------------------------------------------------------

def _mclust_count(model, k, d):
    half = d * (d - 1) // 2
    return {"EII": 1, "VII": k, "EEI": d, "VEI": k + d - 1, "EVI": 1 + k * (d - 1),
            "VVI": k * d, "EEE": d * (d + 1) // 2, "VEE": k + d - 1 + half,
            "EVE": 1 + k * (d - 1) + half, "VVE": k * d + half, "EEV": d + k * half,
            "VEV": k + d - 1 + k * half, "EVV": 1 + k * (d * (d + 1) // 2 - 1),
            "VVV": k * d * (d + 1) // 2}[model]


@pytest.mark.parametrize("model", MCLUST_MODELS)
def test_parameter_counts(model):
    for k in (1, 2, 5):
        for d in (1, 2, 3, 7):
            assert family(model).n_cov_parameters(k, d) == _mclust_count(model, k, d)


def test_aliases_are_scikit_learns_four():
    for old, new in zip(SKLEARN_TYPES, ("VVV", "EEE", "VVI", "VII"), strict=True):
        a, b = family(old), family(new)
        assert a.kind == b.kind and a.mclust == new
        assert a.n_cov_parameters(3, 4) == b.n_cov_parameters(3, 4)
    X = _data("iris")
    fits = [fastgmm.GaussianMixture(3, covariance_type=t, random_state=0).fit(X)
            for t in ("full", "VVV")]
    np.testing.assert_array_equal(fits[0].covariances_, fits[1].covariances_)
    assert set(FAMILIES) == set(SKLEARN_TYPES) | set(MCLUST_MODELS)


# ---------------------------------------------------------------------------
# The constraints hold on fitted models (checked by independent algebra)
# ---------------------------------------------------------------------------

def _decompose(cov):
    """Volumes, shapes (sorted) and eigenvectors of each covariance."""
    vals, vecs = np.linalg.eigh(cov)
    vol = np.exp(np.log(vals).mean(axis=1))
    return vol, vals / vol[:, None], vecs


def _commute(cov):
    return max(np.abs(a @ b - b @ a).max() for a in cov for b in cov)


@pytest.mark.parametrize("model", MCLUST_MODELS)
def test_fitted_covariances_follow_the_model(model):
    X = _data("iris")
    gm = fastgmm.GaussianMixture(3, covariance_type=model, reg_covar=0.0, tol=1e-8,
                                 random_state=1).fit(X)
    cov = _full(gm)
    vol, shape, vecs = _decompose(cov)
    scale = np.abs(cov).max()
    off_diag = np.abs(cov - np.einsum("kii->ki", cov)[:, :, None] * np.eye(4)).max()
    equal_vol, equal_shape = model[0] == "E", model[1] == "E"
    if equal_vol:
        np.testing.assert_allclose(vol, vol[0], rtol=1e-10)
    if model[1] == "I":
        np.testing.assert_allclose(shape, 1.0, rtol=1e-10)
    if model[2] == "I":
        assert off_diag == 0.0
    if model[2] == "E" and model[1] != "I":
        assert _commute(cov) <= 1e-10 * scale ** 2
    if equal_shape and model[2] != "E":
        # Same shape, orientation free: the sorted eigenvalues are proportional.
        np.testing.assert_allclose(shape, np.broadcast_to(shape[0], shape.shape), rtol=1e-8)
    if model[1:] == "EE":
        ratio = cov / cov[:, :1, :1]
        np.testing.assert_allclose(ratio, np.broadcast_to(ratio[0], ratio.shape), rtol=1e-8)
    if model == "VVV":
        assert _commute(cov) > 1e-6 * scale ** 2


def test_closed_form_m_steps():
    # EEI: pooled within-component variances; EII: their mean; EVV: W_k /
    # det(W_k)^(1/d) times sum_k det(W_k)^(1/d) / n, all from the definitions.
    X = _data("diabetes")
    labels = np.asarray(FIXTURES["sets"]["diabetes"]["labels"])
    k, (n, d) = 3, X.shape
    groups = [X[labels == j] for j in range(k)]
    W = np.array([(g - g.mean(0)).T @ (g - g.mean(0)) for g in groups])
    eei = _start(X, labels, k, "EEI").covariances
    np.testing.assert_allclose(eei, np.tile(np.einsum("kii->i", W) / n, (k, 1)), rtol=1e-12)
    eii = _start(X, labels, k, "EII").covariances
    np.testing.assert_allclose(eii, np.trace(W, axis1=1, axis2=2).sum() / (n * d), rtol=1e-12)
    g = np.linalg.det(W) ** (1 / d)
    evv = _start(X, labels, k, "EVV").covariances
    np.testing.assert_allclose(evv, W / g[:, None, None] * g.sum() / n, rtol=1e-10)


def _objective(W, nk, cov):
    """``sum_k n_k log det Sigma_k + tr(W_k Sigma_k^-1)`` (the M-step minimises it)."""
    return sum(m * np.linalg.slogdet(c)[1] + np.trace(w @ np.linalg.inv(c))
               for w, m, c in zip(W, nk, cov, strict=True))


@pytest.mark.parametrize("model", ["VEI", "VEE", "EVE", "VVE", "VEV"])
def test_iterative_m_steps_are_optima(model):
    # The iterative M-step's result beats nearby covariances of the same model.
    X = _data("iris")
    labels = np.asarray(FIXTURES["sets"]["iris"]["labels"])
    k, d = 3, X.shape[1]
    groups = [X[labels == j] for j in range(k)]
    W = np.array([(g - g.mean(0)).T @ (g - g.mean(0)) for g in groups])
    nk = np.array([len(g) for g in groups], dtype=float)
    cov = np.asarray(family(model).to_full(_start(X, labels, k, model).covariances, k, d))
    best = _objective(W, nk, cov)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.normal(scale=1e-3, size=(d, d))
        rot = np.linalg.qr(np.eye(d) + a - a.T)[0]           # a small rotation
        rot *= np.sign(np.diag(rot))
        scl = np.exp(rng.normal(scale=1e-3, size=k))
        if model[0] == "E":
            scl[:] = scl[0]
        moved = np.einsum("k,ij,kjl,ml->kim", scl, rot, cov, rot)  # keeps the model
        if model == "VEI":
            moved = cov * scl[:, None, None]
        assert _objective(W, nk, moved) >= best - 1e-9 * abs(best)


# ---------------------------------------------------------------------------
# Through the estimator: degenerate data, model files, refusals
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("model", MCLUST_MODELS)
def test_degenerate_data_is_repaired(model):
    # Duplicated points and more components than clusters: the fit ends with
    # positive definite covariances (repaired, with a warning if needed).
    rng = np.random.default_rng(3)
    X = np.vstack([np.repeat(rng.normal(size=(3, 3)), 20, axis=0),
                   rng.normal(size=(40, 3)) + 5])
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = fastgmm.GaussianMixture(6, covariance_type=model, random_state=0).fit(X)
    assert np.all(np.linalg.eigvalsh(_full(gm)) > 0)
    assert np.isfinite(gm.score(X))


@pytest.mark.parametrize("model", ["EEI", "VEE", "EVE"])
def test_model_file_round_trip(tmp_path, model):
    X = _data("faithful")
    gm = fastgmm.GaussianMixture(2, covariance_type=model, random_state=0).fit(X)
    path = tmp_path / "m.npz"
    gm.save(path)
    back = fastgmm.load(path)
    assert back.covariance_type == model
    np.testing.assert_array_equal(back.covariances_, gm.covariances_)
    np.testing.assert_allclose(back.score_samples(X), gm.score_samples(X), rtol=1e-12)


def test_bayesian_refuses_constrained_families():
    X = _data("faithful")
    with pytest.raises(ValueError, match="no variational M-step"):
        fastgmm.BayesianGaussianMixture(2, covariance_type="VEV").fit(X)


@pytest.mark.parametrize("model", ["EII", "EEI", "VEI", "EVI", "VEE", "EVE", "EEV", "VEV",
                                   "EVV"])
def test_missing_data_estep_feeds_the_constrained_m_step(model):
    """One EM iteration with missing entries: the exact E-step, then the family's M-step.

    The reference E-step is scipy's row-by-row conditional Gaussians
    (``naive.missing_e_step``); its expected scatter of each component,
    constrained by the family's M-step (checked against mclust above), must
    be what a fit with ``missing='marginalize'`` reaches after one iteration.
    """
    from naive import missing_e_step

    rng = np.random.default_rng(3)
    X = _data("iris")[:, :3].copy()
    X[rng.random(X.shape) < 0.15] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 5.0
    fam = family(model)
    k, d = 3, X.shape[1]
    means = np.array([[5.0, 3.4, 1.5], [5.9, 2.8, 4.3], [6.6, 3.0, 5.6]])
    cov = fam.precisions_cholesky(np.asarray(fam.unit(k, d)) * 0.3)
    w0 = np.full(k, 1.0 / k)
    gm = fastgmm.GaussianMixture(k, covariance_type=model, missing="marginalize", max_iter=1,
                                 tol=0.0, reg_covar=0.0, weights_init=w0, means_init=means,
                                 precisions_init=fam.precisions(cov))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        gm.fit(X)
    full0 = np.asarray(fam.to_full(np.asarray(fam.unit(k, d)) * 0.3, k, d))
    resp, _, completed, cond = missing_e_step(X, w0, means, full0, "full")
    nk = resp.sum(axis=0)
    mu = np.einsum("ik,ikd->kd", resp, completed) / nk[:, None]
    dev = completed - mu[None]
    scatter = (np.einsum("ik,ikd,ike->kde", resp, dev, dev)
               + np.einsum("ik,ikde->kde", resp, cond))
    s = scatter if fam.matrix else np.diagonal(scatter, axis1=1, axis2=2).copy()
    _, want = fam.moments(mu, nk, np.zeros((k, d)), s)
    np.testing.assert_allclose(gm.means_, mu, rtol=1e-9)
    np.testing.assert_allclose(gm.covariances_, want, rtol=1e-7, atol=1e-12)


# ---------------------------------------------------------------------------
# Live comparison with mclust (only where R and mclust are installed)
# ---------------------------------------------------------------------------

_R_SCRIPT = """
suppressPackageStartupMessages(library(mclust))
X <- as.matrix(read.csv("{csv}"))
z <- unmap(hclass(hc(X), 3))
ctrl <- emControl(tol = c(1e-14, 1e-14), itmax = c(100000L, 100000L))
for (m in c("EVI", "VEE", "EEV")) cat(m, me(data = X, modelName = m, z = z,
                                            control = ctrl)$loglik, "\\n")
"""


def _has_mclust():
    if shutil.which("Rscript") is None:
        return False
    run = subprocess.run(["Rscript", "-e", "library(mclust)"], capture_output=True)
    return run.returncode == 0


@pytest.mark.skipif(not _has_mclust(),
                    reason="needs Rscript with the mclust package (optional; the fixture "
                           "tests above cover the same comparison without R)")
def test_live_mclust():
    X = _data("diabetes")
    script = _R_SCRIPT.format(csv=DATA / "diabetes.csv")
    out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    labels = np.asarray(FIXTURES["sets"]["diabetes"]["labels"])
    for model, value in zip(out[::2], out[1::2], strict=True):
        gm = _fit_from(X, model, _start(X, labels, 3, model))
        np.testing.assert_allclose(gm.score(X) * X.shape[0], float(value), rtol=RTOL_LL)


# ---------------------------------------------------------------------------
# select over mclust's models, printed as mclust prints its BIC table
# ---------------------------------------------------------------------------

def test_select_mclust_grid_and_summary():
    X = _data("faithful")
    result = fastgmm.select(X, range(1, 4), "mclust", random_state=0)
    assert result.covariance_types == MCLUST_MODELS == fastgmm.MCLUST_MODELS
    n = X.shape[0]
    for (model, k), gm in result.models_.items():
        # mclust's count, through BIC's definition
        p = _mclust_count(model, k, 2) + k * 2 + k - 1
        bic = -2 * gm.score(X) * n + p * np.log(n)
        np.testing.assert_allclose(result.values()[k - 1, MCLUST_MODELS.index(model)], bic,
                                   rtol=1e-10)
    text = str(result)
    lines = text.splitlines()
    assert lines[1].split() == list(MCLUST_MODELS)
    assert [int(line.split()[0]) for line in lines[2:5]] == [1, 2, 3]
    values = result.values()
    order = np.argsort(values, axis=None, kind="stable")[:3]
    expect = [f"{MCLUST_MODELS[j]},{i + 1}" for i, j in
              (np.unravel_index(o, values.shape) for o in order)]
    assert lines[-3] == "Top 3 models based on the BIC criterion:"
    assert lines[-2].split() == expect
    np.testing.assert_allclose([float(v) for v in lines[-1].split()],
                               np.sort(values, axis=None)[:3], rtol=1e-6)


def test_select_keeps_scikit_learns_default():
    X = _data("faithful")
    result = fastgmm.select(X, [1, 2], random_state=0)
    assert result.covariance_types == SKLEARN_TYPES
