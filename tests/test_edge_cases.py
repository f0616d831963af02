"""Numerical edge cases: offsets, separation, tiny shapes, extreme scales, input layouts.

References come from numpy/scipy (``naive``), never from fastgmm itself.
"""

import warnings

import numpy as np
import pytest
from naive import e_step, em_iterations, full_covariances
from scipy.stats import multivariate_normal

import fastgmm

FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")


def _ref_cov(X, w, ctype, reg):
    """Weighted biased covariance of one component, in the estimator's layout (k=1)."""
    cov = np.cov(X.T, aweights=w, bias=True).reshape(X.shape[1], X.shape[1])
    d = X.shape[1]
    return {"full": (cov + reg * np.eye(d))[None], "tied": cov + reg * np.eye(d),
            "diag": (np.diag(cov) + reg)[None], "spherical": np.array([np.diag(cov).mean()
                                                                          + reg])}[ctype]


def _normwise(a, b):
    return np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max()


# ---------------------------------------------------------------------------
# Data far from the origin
# ---------------------------------------------------------------------------

def _two_clusters(n, offset, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 2)) @ np.array([[1.0, 0.3], [0.0, 0.8]])
    b = rng.normal(size=(n, 2)) * [0.7, 1.2] + [40.0, -30.0]
    return np.r_[a, b], offset


@pytest.mark.parametrize("dtype, offset, rtol", [(np.float64, 1e8, 1e-6),
                                                 (np.float32, 1e4, 1e-3)])
def test_offset_data_covariances_accurate(covariance_type, dtype, offset, rtol):
    Z, _ = _two_clusters(400, offset)
    X = (Z + offset).astype(dtype)
    # Reference from the data actually fitted, centred exactly in float64
    # (X - offset is exact: both are within a factor 2 of each other).
    Xc = X.astype(np.float64) - offset
    n = len(Z) // 2
    reg = 1e-6
    model = fastgmm.GaussianMixture(2, covariance_type=covariance_type, reg_covar=reg,
                                    random_state=0).fit(X)
    assert model.means_.dtype == dtype
    order = np.argsort(model.means_[:, 0])
    parts = [Xc[:n], Xc[n:]]
    means = model.means_.astype(np.float64)[order] - offset
    for j, part in enumerate(parts):
        np.testing.assert_allclose(means[j], part.mean(axis=0), rtol=0,
                                   atol=rtol * part.std())
    full = full_covariances(covariance_type, model.covariances_.astype(np.float64), 2, 2)
    if covariance_type == "tied":
        ref = sum(np.cov(p.T, bias=True) for p in parts) / 2 + reg * np.eye(2)
        assert _normwise(full[0], ref) < rtol
        return
    for j, part in enumerate(parts):
        ref = _ref_cov(part, None, covariance_type, reg)
        ref = full_covariances(covariance_type, ref, 1, 2)[0]
        assert _normwise(full[order[j]], ref) < rtol, (full[order[j]], ref)


def test_extremely_separated_clusters_no_nan_or_inf(covariance_type):
    rng = np.random.default_rng(1)
    # 450 standard deviations apart: cross log-densities near -1e5.
    X = np.r_[rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + [450.0, 0.0]]
    model = fastgmm.GaussianMixture(2, covariance_type=covariance_type,
                                    random_state=0).fit(X)
    for name in FITTED:
        assert np.isfinite(getattr(model, name)).all()
    assert np.isfinite(model.lower_bounds_).all()
    # Points whose log density is near -1e5 under every component.
    probe = np.array([[225.0, 0.0], [-450.0, 0.0], [225.0, 300.0], [0.0, 0.0]])
    resp, lse = e_step(probe, model.weights_, model.means_, model.covariances_,
                       covariance_type)
    assert lse.min() < -2e4
    proba = model.predict_proba(probe)
    score = model.score_samples(probe)
    assert np.isfinite(proba).all() and np.isfinite(score).all()
    np.testing.assert_allclose(score, lse, rtol=1e-10)
    np.testing.assert_allclose(proba, resp, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


def test_em_from_far_away_start_stays_finite(covariance_type):
    """Every sample has log-probability around -1e6 at the first E-step."""
    rng = np.random.default_rng(2)
    X = np.r_[rng.normal(size=(80, 2)), rng.normal(size=(80, 2)) + [8.0, 0.0]]
    k, d = 2, 2
    means0 = np.array([[1e3, 1e3], [1e3, -1e3]])
    prec = {"full": np.stack([np.eye(d)] * k), "tied": np.eye(d), "diag": np.ones((k, d)),
            "spherical": np.ones(k)}[covariance_type]
    model = fastgmm.GaussianMixture(k, covariance_type=covariance_type,
                                    weights_init=[0.5, 0.5], means_init=means0,
                                    precisions_init=prec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.DegenerateDataWarning)
        model.fit(X)
    assert model.lower_bounds_[0] < -5e5
    assert np.isfinite(model.lower_bounds_).all()
    for name in FITTED:
        assert np.isfinite(getattr(model, name)).all()


# ---------------------------------------------------------------------------
# Tiny shapes
# ---------------------------------------------------------------------------

def test_one_feature_matches_reference_em(covariance_type):
    rng = np.random.default_rng(3)
    X = np.r_[rng.normal(size=(60, 1)), rng.normal(size=(40, 1)) * 0.5 + 3.0]
    w0 = np.array([0.5, 0.5])
    m0 = np.array([[-0.5], [2.0]])
    cov0 = {"full": np.ones((2, 1, 1)), "tied": np.ones((1, 1)), "diag": np.ones((2, 1)),
            "spherical": np.ones(2)}[covariance_type]
    reg = 1e-6
    n_iter = 6
    rw, rm, rc, rb = em_iterations(X, w0, m0, cov0, covariance_type, n_iter, reg)
    model = fastgmm.GaussianMixture(2, covariance_type=covariance_type, weights_init=w0,
                                    means_init=m0, precisions_init=1.0 / cov0,
                                    max_iter=n_iter, tol=0.0, reg_covar=reg)
    with pytest.warns(fastgmm.ConvergenceWarning):
        model.fit(X)
    np.testing.assert_allclose(model.weights_, rw, rtol=1e-9)
    np.testing.assert_allclose(model.means_, rm, rtol=1e-9)
    np.testing.assert_allclose(model.covariances_, rc, rtol=1e-9)
    np.testing.assert_allclose(model.lower_bounds_, rb, rtol=1e-10)
    assert model.covariances_.shape == cov0.shape


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_one_component_is_weighted_mean_and_biased_covariance(covariance_type, offset):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 3)) + offset
    sw = rng.uniform(0.1, 3.0, size=300)
    reg = 1e-4
    model = fastgmm.GaussianMixture(1, covariance_type=covariance_type, reg_covar=reg,
                                    random_state=0).fit(X, sample_weight=sw)
    assert model.weights_.tolist() == [1.0]
    mean = np.average(X, axis=0, weights=sw)
    np.testing.assert_allclose(model.means_[0], mean, rtol=1e-13)
    ref = _ref_cov(X - mean, sw, covariance_type, reg)
    # One-pass statistics about the previous mean: near two-pass accuracy.
    np.testing.assert_allclose(model.covariances_, ref, rtol=1e-9 if offset else 1e-12)
    ll = np.average(multivariate_normal(mean, full_covariances(
        covariance_type, model.covariances_, 1, 3)[0]).logpdf(X), weights=sw)
    assert model.score(X, sample_weight=sw) == pytest.approx(ll, rel=1e-11)


def test_n_samples_equal_n_components(covariance_type):
    X = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 5.0]])
    reg = 1e-6
    model = fastgmm.GaussianMixture(3, covariance_type=covariance_type, reg_covar=reg,
                                    random_state=0).fit(X)
    # Each sample is its own component, with only the regularisation as spread.
    order = np.lexsort(model.means_.T[::-1])
    np.testing.assert_allclose(model.means_[order], X[np.lexsort(X.T[::-1])], atol=1e-12)
    np.testing.assert_allclose(model.weights_, 1 / 3, rtol=1e-12)
    full = full_covariances(covariance_type, model.covariances_, 3, 2)
    np.testing.assert_allclose(full, np.broadcast_to(reg * np.eye(2), full.shape),
                               rtol=1e-6, atol=1e-14)
    np.testing.assert_array_equal(np.sort(model.predict(X)), [0, 1, 2])


@pytest.mark.parametrize("scale", [1e150, 1e-150])
@pytest.mark.parametrize("ctype", ["full", "diag"])
def test_values_near_1e150_are_scale_equivariant(scale, ctype):
    rng = np.random.default_rng(5)
    Z = np.r_[rng.normal(size=(150, 2)), rng.normal(size=(150, 2)) + [6.0, 0.0]]
    reg = 1e-6
    base = fastgmm.GaussianMixture(2, covariance_type=ctype, reg_covar=reg,
                                   random_state=0).fit(Z)
    big = fastgmm.GaussianMixture(2, covariance_type=ctype, reg_covar=reg * scale ** 2,
                                  random_state=0).fit(Z * scale)
    np.testing.assert_array_equal(big.predict(Z * scale), base.predict(Z))
    np.testing.assert_allclose(big.means_ / scale, base.means_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(big.covariances_ / scale ** 2, base.covariances_, rtol=1e-9)
    np.testing.assert_allclose(big.weights_, base.weights_, rtol=1e-9)
    # A density scales by scale**-d.
    assert big.lower_bound_ == pytest.approx(base.lower_bound_ - 2 * np.log(scale),
                                             rel=1e-9)
    assert np.isfinite(big.score_samples(Z * scale)).all()


# ---------------------------------------------------------------------------
# Input layouts and dtypes
# ---------------------------------------------------------------------------

def _fit_params(X, sample_weight=None, k=2):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.DegenerateDataWarning)
        m = fastgmm.GaussianMixture(k, random_state=0).fit(X, sample_weight=sample_weight)
    return m


def _assert_same_fit(a, b):
    for name in FITTED:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    assert a.lower_bounds_ == b.lower_bounds_


_rng = np.random.default_rng(6)
_INT = np.r_[_rng.integers(0, 6, size=(60, 3)), _rng.integers(20, 26, size=(60, 3))]
_BOOL = _rng.random((120, 3)) < np.r_[np.full((60, 1), 0.2), np.full((60, 1), 0.8)]
_FLOAT = np.r_[_rng.normal(size=(60, 3)), _rng.normal(size=(60, 3)) + 5.0]


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


LAYOUTS = {
    "int64": (lambda: _INT.astype(np.int64), np.float64),
    "int32": (lambda: _INT.astype(np.int32), np.float64),
    "uint8": (lambda: _INT.astype(np.uint8), np.float64),
    "bool": (lambda: _BOOL, np.float64),
    "float16": (lambda: _FLOAT.astype(np.float16), np.float64),
    "list": (lambda: _FLOAT.tolist(), np.float64),
    "non_contiguous_rows": (lambda: np.repeat(_FLOAT, 2, axis=0)[::2], np.float64),
    "non_contiguous_cols": (lambda: np.repeat(_FLOAT, 2, axis=1)[:, ::2], np.float64),
    "fortran": (lambda: np.asfortranarray(_FLOAT), np.float64),
    "read_only": (lambda: _readonly(_FLOAT), np.float64),
    "big_endian_f8": (lambda: _FLOAT.astype(">f8"), np.float64),
    "big_endian_f4": (lambda: _FLOAT.astype(">f4"), np.float32),
    "fortran_f4": (lambda: np.asfortranarray(_FLOAT.astype(np.float32)), np.float32),
    "read_only_f4": (lambda: _readonly(_FLOAT.astype(np.float32)), np.float32),
    "dataframe": (lambda: __import__("pandas").DataFrame(_FLOAT), np.float64),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_input_layouts_give_same_fit_as_c_contiguous(layout):
    make, dtype = LAYOUTS[layout]
    X = make()
    before = np.array(X, copy=True)
    reference = np.ascontiguousarray(np.asarray(X), dtype=dtype)
    assert reference.flags.c_contiguous and reference.dtype.isnative
    got = _fit_params(X)
    _assert_same_fit(got, _fit_params(reference))
    np.testing.assert_array_equal(got.predict(X), got.predict(reference))
    np.testing.assert_array_equal(got.score_samples(X), got.score_samples(reference))
    np.testing.assert_array_equal(np.asarray(X), before)  # input untouched
    if layout.startswith("read_only"):
        assert not X.flags.writeable


@pytest.mark.parametrize("kind", ["int", "read_only", "strided", "big_endian", "list"])
def test_sample_weight_layouts_give_same_fit(kind):
    base = np.r_[np.arange(1, 61), np.arange(1, 61)[::-1]] % 5 + 1
    make = {"int": lambda: base.astype(np.int32),
            "read_only": lambda: _readonly(base.astype(np.float64)),
            "strided": lambda: np.repeat(base.astype(np.float64), 2)[::2],
            "big_endian": lambda: base.astype(">f8"),
            "list": lambda: base.tolist()}[kind]
    w = make()
    _assert_same_fit(_fit_params(_FLOAT, w),
                     _fit_params(_FLOAT, np.ascontiguousarray(base, dtype=np.float64)))


def test_read_only_input_compiles_no_new_kernel_specialisation():
    """A read-only array is a distinct Numba type; it must not trigger compilation."""
    from numba.core.registry import CPUDispatcher

    from fastgmm import _kernels, _kernels_kmeans

    def n_signatures():
        kernels = {id(f): f for m in (_kernels, _kernels_kmeans) for f in vars(m).values()
                   if isinstance(f, CPUDispatcher)}
        return sum(len(f.signatures) for f in kernels.values())

    X = _FLOAT.copy()
    model = _fit_params(X)
    model.predict(X)
    before = n_signatures()
    ro = _readonly(X)
    _assert_same_fit(_fit_params(ro), model)
    model.score_samples(ro)
    assert n_signatures() == before
