"""fastgmm._validation: every input layout and dtype becomes the same C-contiguous data.

A fit on any accepted layout must equal, bit for bit, the fit on the
C-contiguous native-order array numpy makes of it; scalar weights count as
that weight on every row (checked against plain numpy/scipy EM).
"""

import warnings

import numpy as np
import pytest
from conftest import assert_same_bits, model_from, rough_start
from naive import em_iterations, make_blobs, n_parameters, weighted_log_prob
from scipy.special import logsumexp

import fastgmm
from fastgmm._validation import check_array, check_sample_weight


def _fit_params(X, sample_weight=None, k=2):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.DegenerateDataWarning)
        m = fastgmm.GaussianMixture(k, random_state=0).fit(X, sample_weight=sample_weight)
    return m


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
    """Every accepted layout and dtype fits, predicts and scores exactly like its C-contiguous
    native array, leaving the input untouched.
    """
    make, dtype = LAYOUTS[layout]
    X = make()
    before = np.array(X, copy=True)
    reference = np.ascontiguousarray(np.asarray(X), dtype=dtype)
    assert reference.flags.c_contiguous and reference.dtype.isnative
    got = _fit_params(X)
    assert_same_bits(got, _fit_params(reference))
    np.testing.assert_array_equal(got.predict(X), got.predict(reference))
    np.testing.assert_array_equal(got.score_samples(X), got.score_samples(reference))
    np.testing.assert_array_equal(np.asarray(X), before)  # input untouched
    if layout.startswith("read_only"):
        assert not X.flags.writeable


@pytest.mark.parametrize("kind", ["int", "read_only", "strided", "big_endian", "list"])
def test_sample_weight_layouts_give_same_fit(kind):
    """Integer, read-only, strided, big-endian and list weights fit exactly like a contiguous
    float64 array.
    """
    base = np.r_[np.arange(1, 61), np.arange(1, 61)[::-1]] % 5 + 1
    make = {"int": lambda: base.astype(np.int32),
            "read_only": lambda: _readonly(base.astype(np.float64)),
            "strided": lambda: np.repeat(base.astype(np.float64), 2)[::2],
            "big_endian": lambda: base.astype(">f8"),
            "list": lambda: base.tolist()}[kind]
    w = make()
    assert_same_bits(_fit_params(_FLOAT, w),
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
    assert_same_bits(_fit_params(ro), model)
    model.score_samples(ro)
    assert n_signatures() == before


def test_integer_input_becomes_float64(blobs):
    """Integer data is computed, and fitted, in float64."""
    Xi = np.round(blobs * 10).astype(np.int32)
    g = fastgmm.GaussianMixture(2, random_state=0).fit(Xi)
    assert g.means_.dtype == np.float64


def test_check_array_and_weights_convert_without_touching_the_input():
    """Accepted inputs come back C-contiguous, native, writeable and float64 (float32
    kept), equal to numpy's conversion; the caller's array is never the result.
    """
    f32 = _FLOAT.astype(">f4")
    out = check_array(f32)
    assert out.dtype == np.float32 and out.dtype.isnative and out.flags.c_contiguous
    np.testing.assert_array_equal(out, f32.astype(np.float32))
    ro = _readonly(_FLOAT)
    out = check_array(ro)
    assert out.flags.writeable and out is not ro
    np.testing.assert_array_equal(out, _FLOAT)
    assert check_array(_FLOAT, allow_float32=False).dtype == np.float64
    w = np.arange(1, 121, dtype=np.int32)
    got = check_sample_weight(w, 120)
    assert got.dtype == np.float64 and got is not w
    np.testing.assert_array_equal(got, w)
    assert check_sample_weight(None, 120) is None


def test_scalar_sample_weight_weighs_every_row():
    """A scalar ``sample_weight`` is that weight on every row: the same EM iterates as
    numpy/scipy EM with constant weights, and information criteria that count the
    total weight as the number of samples.
    """
    X = make_blobs(150, [(0.0, 0.0), (5.0, 1.0), (1.0, 6.0)], [1.0, 0.6, 1.4], seed=3)
    start = rough_start("full", X, seed=3)
    model = model_from("full", start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        model.fit(X, sample_weight=2.5)
    w = np.full(X.shape[0], 2.5)
    weights, means, cov, bounds = em_iterations(X, *start, "full", len(model.lower_bounds_),
                                                1e-6, w)
    np.testing.assert_allclose(model.weights_, weights, rtol=1e-8)
    np.testing.assert_allclose(model.means_, means, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(model.covariances_, cov, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(model.lower_bounds_, bounds, rtol=1e-10)
    ll = 2.5 * logsumexp(weighted_log_prob(X, model.weights_, model.means_,
                                           model.covariances_, "full"), axis=1).sum()
    p = n_parameters("full", 3, 2)
    assert model.bic(X, sample_weight=2.5) == pytest.approx(
        -2 * ll + p * np.log(2.5 * X.shape[0]), rel=1e-10)
    assert model.score(X, sample_weight=2.5) == pytest.approx(ll / (2.5 * X.shape[0]),
                                                              rel=1e-10)
