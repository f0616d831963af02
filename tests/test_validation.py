"""fastgmm._validation: every input layout and dtype becomes the same C-contiguous data.

A fit on any accepted layout must equal, bit for bit, the fit on the
C-contiguous native-order array numpy makes of it; scalar weights count as
that weight on every row (checked against plain numpy/scipy EM).
"""

import warnings

import numpy as np
import pytest
from conftest import assert_same_bits

import fastgmm


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
    Xi = np.round(blobs * 10).astype(np.int32)
    g = fastgmm.GaussianMixture(2, random_state=0).fit(Xi)
    assert g.means_.dtype == np.float64
