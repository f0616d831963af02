"""Bad input, exhaustively, at every public entry point: the one home for bad input.

Each case must raise a clear ``ValueError``/``TypeError`` (or the not-fitted
error, or ``ModelFileError`` for a damaged model file) whose message names the
argument, leave the caller's arrays, files and a fitted model untouched, and
never crash the interpreter; the command line answers with exit status 2 and
one line on stderr.  Grouped by entry point: the estimator's data, weights
and parameters; its other methods; select; statistics; out-of-core sources;
model files; the command line; plots; the bundled data.
"""

import contextlib
import io
import os
import pickle
import re

import numpy as np
import pytest
import scipy.sparse
from conftest import (
    CLI_BAD,
    FITTED,
    STREAM_CENTERS,
    STREAM_SCALES,
    TWO_BLOBS,
    dask_blobs,
    file_metadata,
    new_axes,
    npz_members,
    three_blobs,
    with_metadata,
    write_members,
)
from naive import make_blobs

import fastgmm
from fastgmm import (
    GaussianMixture,
    IterableSource,
    MemmapSource,
    ModelFileError,
    NotFittedError,
    SuffStats,
    cli,
    plotting,
    select,
)
from fastgmm._io import FORMAT_VERSION

_rng = np.random.default_rng(0)
X = np.r_[_rng.normal(size=(30, 2)), _rng.normal(size=(30, 2)) + 5.0]


@pytest.fixture(scope="module")
def model():
    return GaussianMixture(2, random_state=0).fit(X)


def _snapshot(m):
    return {a: np.array(getattr(m, a), copy=True) for a in FITTED}


def _assert_unchanged(m, snap):
    for a, v in snap.items():
        np.testing.assert_array_equal(getattr(m, a), v)


def _copy(value):
    return np.array(value, copy=True) if isinstance(value, np.ndarray) else None


def _assert_same(value, copy):
    if copy is not None:
        np.testing.assert_array_equal(value, copy)


# ---------------------------------------------------------------------------
# GaussianMixture and fastgmm.fit: X
# ---------------------------------------------------------------------------

BAD_X = {
    "nan": (np.where(np.arange(10)[:, None] == 3, np.nan, np.ones((10, 2))), ValueError,
            r"X contains NaN"),
    "inf": (np.where(np.arange(10)[:, None] == 3, np.inf, np.ones((10, 2))), ValueError,
            r"X contains infinity"),
    "neg_inf": (np.where(np.arange(10)[:, None] == 3, -np.inf, np.ones((10, 2))), ValueError,
                r"X contains infinity"),
    "1d": (np.arange(10.0), ValueError, r"X must be 2-dimensional.*reshape"),
    "3d": (np.zeros((4, 2, 2)), ValueError, r"X must be 2-dimensional"),
    "scalar": (3.0, ValueError, r"X must be 2-dimensional"),
    "no_samples": (np.zeros((0, 2)), ValueError, r"X has 0 sample"),
    "no_features": (np.zeros((10, 0)), ValueError, r"X has 0 features"),
    "strings": (np.array([["a", "b"]] * 10), TypeError, r"X has non-numeric dtype"),
    "object": (np.array([[1.0, "a"]] * 10, dtype=object), TypeError,
               r"X has dtype object with non-numeric"),
    "complex": (np.ones((10, 2), dtype=complex), ValueError,
                r"Complex data not supported: X has complex dtype"),
    "none": (None, TypeError, r"X is None"),
    "ragged": ([[1.0, 2.0], [3.0]], TypeError, r"X could not be converted"),
    "sparse": (scipy.sparse.csr_matrix(np.ones((10, 2))), TypeError, r"X is a sparse matrix"),
}

FIT_ENTRIES = {
    "fit": lambda v: GaussianMixture(2).fit(v),
    "fit_predict": lambda v: GaussianMixture(2).fit_predict(v),
    "partial_fit": lambda v: GaussianMixture(2).partial_fit(v),
    "fastgmm.fit": lambda v: fastgmm.fit(v, 2),
    "fastgmm.select": lambda v: fastgmm.select(v, n_components=[1, 2], covariance_types="diag"),
}
FITTED_ENTRIES = {
    "predict": lambda m, v: m.predict(v),
    "predict_proba": lambda m, v: m.predict_proba(v),
    "score_samples": lambda m, v: m.score_samples(v),
    "score": lambda m, v: m.score(v),
    "bic": lambda m, v: m.bic(v),
    "aic": lambda m, v: m.aic(v),
    "suff_stats": lambda m, v: m.suff_stats(v),
    "partial_fit": lambda m, v: m.partial_fit(v),
}


@pytest.mark.parametrize("case", sorted(BAD_X))
@pytest.mark.parametrize("entry", sorted(FIT_ENTRIES))
def test_bad_X_at_fitting_entry_points(entry, case):
    """Every fitting entry point refuses each bad X with a message naming it, and leaves the
    array untouched.
    """
    value, exc, match = BAD_X[case]
    before = _copy(value)
    with pytest.raises(exc, match=match):
        FIT_ENTRIES[entry](value)
    _assert_same(value, before)


@pytest.mark.parametrize("case", sorted(BAD_X))
@pytest.mark.parametrize("entry", sorted(FITTED_ENTRIES))
def test_bad_X_at_fitted_entry_points(model, entry, case):
    """Every method of a fitted model refuses each bad X, leaving the array and the model
    untouched.
    """
    value, exc, match = BAD_X[case]
    before, snap = _copy(value), _snapshot(model)
    with pytest.raises(exc, match=match):
        FITTED_ENTRIES[entry](model, value)
    _assert_same(value, before)
    _assert_unchanged(model, snap)


@pytest.mark.parametrize("entry", sorted(FITTED_ENTRIES))
def test_wrong_n_features_after_fit(model, entry):
    """Every method of a fitted model refuses X with another number of features, saying both
    counts.
    """
    snap = _snapshot(model)
    with pytest.raises(ValueError,
                       match=r"X has 3 features, but GaussianMixture is expecting 2 features"):
        FITTED_ENTRIES[entry](model, np.ones((6, 3)))
    _assert_unchanged(model, snap)


def test_wrong_n_features_with_warm_start(model):
    """A warm start refuses X with another number of features."""
    warm = GaussianMixture(2, warm_start=True, random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"warm_start: X has 3 features.*fitted with 2"):
        warm.fit(np.ones((10, 3)))


def test_too_few_samples_for_components():
    """Fewer rows than components are refused by fit and partial_fit."""
    with pytest.raises(ValueError, match=r"X has 2 samples but n_components=3"):
        GaussianMixture(3).fit(X[:2])
    with pytest.raises(ValueError, match=r"X has 2 samples but n_components=3"):
        GaussianMixture(3).partial_fit(X[:2])


def test_dataframe_with_other_column_names(model):
    """Predicting on a DataFrame whose names differ from those of the fit is refused."""
    pd = pytest.importorskip("pandas")
    named = GaussianMixture(2, random_state=0).fit(pd.DataFrame(X, columns=["a", "b"]))
    with pytest.raises(ValueError, match=r"feature names that differ"):
        named.predict(pd.DataFrame(X, columns=["b", "a"]))


@pytest.mark.parametrize("bad, exc, match", [
    (np.array([[1.0, np.nan]] * 5), ValueError, "NaN"),
    (np.array([[1.0, np.inf]] * 5), ValueError, "infinity"),
    (np.arange(5.0), ValueError, "2-dimensional"),
    (np.zeros((2, 2, 2)), ValueError, "2-dimensional"),
    (np.zeros((0, 2)), ValueError, "0 sample"),
    (np.zeros((5, 0)), ValueError, "0 features"),
    (np.array([["a", "b"]] * 5), TypeError, "non-numeric"),
    (np.ones((5, 2), dtype=complex), ValueError, "complex"),
])
def test_bad_X_raises_clear_errors(bad, exc, match):
    """``fit`` refuses non-finite, misshapen, empty, non-numeric and complex X with the error type
    and message of each.
    """
    with pytest.raises(exc, match=match):
        fastgmm.GaussianMixture(1).fit(bad)


def test_other_bad_inputs():
    """Too few rows, calls before fit, other feature counts, bad parameters, bad user-given
    arrays and bad weights each raise a clear error.
    """
    X = TWO_BLOBS
    with pytest.raises(ValueError, match="n_components"):
        fastgmm.GaussianMixture(5).fit(X[:3])
    with pytest.raises(fastgmm.NotFittedError, match="not fitted"):
        fastgmm.GaussianMixture(2).predict(X)
    g = fastgmm.fit(X, 2, random_state=0)
    with pytest.raises(ValueError, match="3 features.*2 features"):
        g.predict(np.ones((4, 3)))
    with pytest.raises(ValueError, match="covariance_type"):
        fastgmm.GaussianMixture(2, covariance_type="banana").fit(X)
    with pytest.raises(ValueError, match="n_components"):
        fastgmm.GaussianMixture(0).fit(X)
    with pytest.raises(TypeError, match="n_init"):
        fastgmm.GaussianMixture(2, n_init=1.5).fit(X)
    with pytest.raises(ValueError, match="reg_covar"):
        fastgmm.GaussianMixture(2, reg_covar=-1).fit(X)
    with pytest.raises(ValueError, match="init_params"):
        fastgmm.GaussianMixture(2, init_params="nope").fit(X)
    with pytest.raises(ValueError, match="means_init has shape"):
        fastgmm.GaussianMixture(2, means_init=np.zeros((3, 2))).fit(X)
    with pytest.raises(ValueError, match="weights_init must sum to 1"):
        fastgmm.GaussianMixture(2, weights_init=[0.2, 0.2]).fit(X)
    with pytest.raises(ValueError, match="positive definite"):
        fastgmm.GaussianMixture(2, precisions_init=np.stack([np.eye(2), -np.eye(2)])).fit(X)
    with pytest.raises(ValueError, match="sample_weight has 3 entries"):
        fastgmm.GaussianMixture(2).fit(X, sample_weight=[1, 2, 3])
    with pytest.raises(ValueError, match="negative"):
        fastgmm.GaussianMixture(2).fit(X, sample_weight=-np.ones(len(X)))


# ---------------------------------------------------------------------------
# sample_weight
# ---------------------------------------------------------------------------

N = len(X)
BAD_W = {
    "nan": (np.r_[np.nan, np.ones(N - 1)], ValueError, r"sample_weight contains NaN"),
    "inf": (np.r_[np.inf, np.ones(N - 1)], ValueError, r"sample_weight contains NaN or inf"),
    "negative": (np.r_[-1.0, np.ones(N - 1)], ValueError, r"sample_weight contains negative"),
    "all_zero": (np.zeros(N), ValueError, r"sample_weight sums to zero"),
    "too_short": (np.ones(N - 1), ValueError, rf"sample_weight has {N - 1} entries but X "
                                              rf"has {N} samples"),
    "too_long": (np.ones(N + 1), ValueError, r"sample_weight has .* entries"),
    "2d": (np.ones((N, 1)), ValueError, r"sample_weight must be 1-dimensional"),
    "strings": (np.array(["a"] * N), TypeError, r"sample_weight must be real numbers"),
    "complex": (np.ones(N, dtype=complex), TypeError, r"sample_weight must be real numbers"),
    "ragged": ([[1.0], [1.0, 2.0]], TypeError, r"sample_weight could not be converted"),
}
W_ENTRIES = {
    "fit": lambda m, w: GaussianMixture(2).fit(X, sample_weight=w),
    "fit_predict": lambda m, w: GaussianMixture(2).fit_predict(X, sample_weight=w),
    "partial_fit(new)": lambda m, w: GaussianMixture(2).partial_fit(X, sample_weight=w),
    "fastgmm.fit": lambda m, w: fastgmm.fit(X, 2, sample_weight=w),
    "fastgmm.select": lambda m, w: fastgmm.select(X, n_components=[1, 2],
                                                  covariance_types="diag", sample_weight=w),
    "score": lambda m, w: m.score(X, sample_weight=w),
    "bic": lambda m, w: m.bic(X, sample_weight=w),
    "aic": lambda m, w: m.aic(X, sample_weight=w),
    "suff_stats": lambda m, w: m.suff_stats(X, sample_weight=w),
    "partial_fit(fitted)": lambda m, w: m.partial_fit(X, sample_weight=w),
}


@pytest.mark.parametrize("case", sorted(BAD_W))
@pytest.mark.parametrize("entry", sorted(W_ENTRIES))
def test_bad_sample_weight(model, entry, case):
    """Every entry point taking weights refuses each bad weight array, leaving the weights, X and
    the fitted model untouched.
    """
    value, exc, match = BAD_W[case]
    before, snap, x_before = _copy(value), _snapshot(model), X.copy()
    with pytest.raises(exc, match=match):
        W_ENTRIES[entry](model, value)
    _assert_same(value, before)
    np.testing.assert_array_equal(X, x_before)
    _assert_unchanged(model, snap)


def test_fewer_positive_weights_than_components():
    """Fewer rows of positive weight than components are refused."""
    w = np.r_[1.0, np.zeros(N - 1)]
    with pytest.raises(ValueError, match=r"only 1 samples have positive weight.*n_components=2"):
        GaussianMixture(2).fit(X, sample_weight=w)


# ---------------------------------------------------------------------------
# Constructor parameters
# ---------------------------------------------------------------------------

BAD_PARAMS = [
    ("n_components", 0), ("n_components", -1), ("n_components", 1.5), ("n_components", "2"),
    ("n_components", True), ("n_components", None),
    ("covariance_type", "banana"), ("covariance_type", 1), ("covariance_type", None),
    ("tol", -1.0), ("tol", np.nan), ("tol", np.inf), ("tol", "x"), ("tol", None),
    ("reg_covar", -1e-6), ("reg_covar", np.nan), ("reg_covar", np.inf), ("reg_covar", "a"),
    ("max_iter", -1), ("max_iter", 1.5), ("max_iter", "10"), ("max_iter", None),
    ("n_init", 0), ("n_init", 1.5), ("n_init", None),
    ("init_params", "nope"), ("init_params", 3), ("init_params", None),
    ("random_state", -1), ("random_state", 2 ** 32), ("random_state", "seed"),
    ("random_state", 1.5),
    ("warm_start", "yes"), ("warm_start", 1), ("warm_start", None),
    ("verbose", -1), ("verbose", 1.5), ("verbose", "1"),
    ("verbose_interval", 0), ("verbose_interval", 1.5),
    ("n_threads", 0), ("n_threads", -1), ("n_threads", 1.5), ("n_threads", "2"),
    ("callback", "not callable"), ("callback", 1),
    ("on_degenerate", "loud"), ("on_degenerate", 1), ("on_degenerate", None),
    ("weights_init", [0.5, 0.6]), ("weights_init", [1.0]), ("weights_init", "ab"),
    ("weights_init", [[0.5, 0.5]]), ("weights_init", [np.nan, 1.0]),
    ("weights_init", [-0.5, 1.5]),
    ("means_init", np.zeros((3, 2))), ("means_init", np.zeros((2, 3))),
    ("means_init", np.zeros(4)), ("means_init", [["a", "b"], ["c", "d"]]),
    ("means_init", np.full((2, 2), np.inf)),
    ("precisions_init", np.zeros((2, 2, 2))),
    ("precisions_init", np.stack([np.eye(2), [[1.0, 2.0], [0.0, 1.0]]])),
    ("precisions_init", np.stack([np.eye(2), -np.eye(2)])),
    ("precisions_init", np.ones((2, 3, 3))), ("precisions_init", np.eye(2)),
    ("precisions_init", np.full((2, 2, 2), np.nan)), ("precisions_init", "x"),
]


def _param_id(p):
    return f"{p[0]}={p[1]!r}"[:40]


@pytest.mark.parametrize("param", BAD_PARAMS, ids=[_param_id(p) for p in BAD_PARAMS])
def test_bad_parameter_values_and_types(param):
    """Each bad constructor value or type is refused, naming the parameter, by fit, fastgmm.fit
    and a fit after set_params.
    """
    name, value = param
    kw = {"n_components": 2, name: value}
    with pytest.raises((ValueError, TypeError), match=name):
        GaussianMixture(**kw).fit(X)
    with pytest.raises((ValueError, TypeError), match=name):
        fastgmm.fit(X, **kw)
    # set_params accepts anything (scikit-learn's contract); fit validates.
    est = GaussianMixture(2).set_params(**{name: value})
    with pytest.raises((ValueError, TypeError), match=name):
        est.fit(X)


@pytest.mark.parametrize("ctype, bad, match", [
    ("tied", np.ones((2, 2, 2)), r"precisions_init has shape \(2, 2, 2\), expected \(2, 2\)"),
    ("tied", np.array([[1.0, 2.0], [2.0, 1.0]]), r"precisions_init is not positive definite"),
    ("tied", np.array([[1.0, 0.5], [0.0, 1.0]]), r"precisions_init is not symmetric"),
    ("diag", np.ones((2, 3)), r"precisions_init has shape \(2, 3\), expected \(2, 2\)"),
    ("diag", np.array([[1.0, 0.0], [1.0, 1.0]]), r"precisions_init must be positive"),
    ("spherical", np.ones((2, 2)), r"precisions_init has shape \(2, 2\), expected \(2,\)"),
    ("spherical", np.array([1.0, -1.0]), r"precisions_init must be positive"),
])
def test_bad_precisions_init_per_covariance_type(ctype, bad, match):
    """precisions_init of the wrong shape, not symmetric or not positive definite is refused for
    each covariance type.
    """
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2, covariance_type=ctype, precisions_init=bad).fit(X)


@pytest.mark.parametrize("name, value", [("learning_offset", -1.0),
                                         ("learning_offset", np.nan),
                                         ("learning_offset", "x"),
                                         ("learning_decay", -0.5), ("learning_decay", 2.0),
                                         ("learning_decay", "x")])
def test_bad_online_parameters(name, value):
    """partial_fit refuses a negative, non-finite or non-numeric learning_offset and a
    non-numeric learning_decay or one outside [0, 1].
    """
    with pytest.raises((ValueError, TypeError), match=name):
        GaussianMixture(2, **{name: value}).partial_fit(X)


def test_unknown_parameters():
    """Unknown parameter names are refused by set_params and fastgmm.fit."""
    with pytest.raises(ValueError, match=r"invalid parameter 'banana'"):
        GaussianMixture(2).set_params(banana=1)
    with pytest.raises(TypeError, match=r"banana"):
        fastgmm.fit(X, 2, banana=1)


# ---------------------------------------------------------------------------
# Calls before fit, and other method arguments
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score",
                                    "bic", "aic", "suff_stats"])
def test_methods_before_fit(method):
    """Every method that needs a fitted model raises NotFittedError before fit."""
    with pytest.raises(NotFittedError, match="not fitted"):
        getattr(GaussianMixture(2), method)(X)


def test_sample_and_save_before_fit(tmp_path):
    """``sample`` and save before fit raise NotFittedError (a ValueError and an AttributeError), and
    no file is written.
    """
    with pytest.raises(NotFittedError, match="not fitted"):
        GaussianMixture(2).sample(3)
    with pytest.raises(NotFittedError, match="unfitted"):
        GaussianMixture(2).save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
    # The not-fitted error is both a ValueError and an AttributeError (scikit-learn's).
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)


@pytest.mark.parametrize("n, exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                    ("3", TypeError), (None, TypeError)])
def test_sample_bad_n_samples(model, n, exc):
    """``sample`` refuses a non-positive or non-integer number of samples."""
    with pytest.raises(exc, match="n_samples"):
        model.sample(n)


def test_sample_bad_random_state(model):
    """``sample`` refuses a random_state that is not a seed or generator."""
    with pytest.raises(TypeError, match="random_state"):
        model.sample(3, random_state="x")


def test_apply_stats_bad_statistics(model):
    """apply_stats refuses non-statistics, another number of components and another covariance
    type, leaving the model untouched.
    """
    snap = _snapshot(model)
    with pytest.raises(TypeError, match=r"stats must be a fastgmm.SuffStats"):
        model.apply_stats(1)
    other = GaussianMixture(3, random_state=0).fit(X).suff_stats(X)
    with pytest.raises(ValueError, match=r"stats have 3 components"):
        model.apply_stats(other)
    diag = GaussianMixture(2, covariance_type="diag", random_state=0).fit(X).suff_stats(X)
    with pytest.raises(ValueError, match=r"stats are for covariance_type='diag'"):
        model.apply_stats(diag)
    _assert_unchanged(model, snap)


def test_apply_stats_errors():
    """apply_stats and suff_stats refuse statistics or data of another type, component count or
    feature count.
    """
    X = three_blobs()
    model = fastgmm.GaussianMixture(3, random_state=0).fit(X)
    with pytest.raises(TypeError, match="SuffStats"):
        model.apply_stats({"nk": 1})
    diag = fastgmm.GaussianMixture(3, covariance_type="diag", random_state=0).fit(X)
    with pytest.raises(ValueError, match="covariance_type"):
        model.apply_stats(diag.suff_stats(X))
    other = fastgmm.GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="components"):
        model.apply_stats(other.suff_stats(X))
    with pytest.raises(ValueError, match="features"):
        model.suff_stats(X[:, :2])


def test_partial_fit_bad_batches_and_parameters():
    """After two stepwise updates, a batch with other features or weights summing to
    zero is refused; so are a decay above 1 and a negative offset on a first call.
    """
    X1 = make_blobs(200, STREAM_CENTERS, STREAM_SCALES, seed=3)
    X2 = make_blobs(100, STREAM_CENTERS, STREAM_SCALES, seed=4)
    a = GaussianMixture(3, random_state=0).partial_fit(X1)
    counts = np.random.default_rng(4).integers(1, 4, size=X2.shape[0])
    a.partial_fit(X2, sample_weight=counts)
    with pytest.raises(ValueError, match="features"):
        a.partial_fit(X2[:, :1])
    with pytest.raises(ValueError, match="learning_decay must be <= 1"):
        GaussianMixture(3, learning_decay=1.5).partial_fit(X1)
    with pytest.raises(ValueError, match="learning_offset"):
        GaussianMixture(3, learning_offset=-1.0).partial_fit(X1)
    with pytest.raises(ValueError, match="sums to zero"):
        a.partial_fit(X2, sample_weight=np.zeros(X2.shape[0]))


# ---------------------------------------------------------------------------
# fastgmm.select
# ---------------------------------------------------------------------------

def test_select_bad_arguments():
    """``select`` refuses n_components below 1, an unknown criterion and an unknown covariance
    type.
    """
    with pytest.raises(ValueError, match=r"n_components"):
        fastgmm.select(X, n_components=[0])
    with pytest.raises(ValueError, match=r"criterion"):
        fastgmm.select(X, n_components=[1], criterion="foo")
    with pytest.raises(ValueError, match=r"covariance_type"):
        fastgmm.select(X, n_components=[1], covariance_types="banana")


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
    """Each bad select argument raises the error type and message it should."""
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(error, match=match):
        select(X, **kwargs)


def test_bad_data_raise():
    """``select`` refuses NaN and fewer rows of positive weight than the largest n_components."""
    with pytest.raises(ValueError, match="contains NaN"):
        select(np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), (1,))
    X = np.random.default_rng(0).normal(size=(10, 2))
    w = np.zeros(10)
    w[:2] = 1.0
    with pytest.raises(ValueError, match="only 2 samples of positive weight"):
        select(X, (1, 3), sample_weight=w)


# ---------------------------------------------------------------------------
# Sufficient statistics
# ---------------------------------------------------------------------------

def test_merging_statistics_of_other_parameters_is_refused():
    """Statistics add up only when computed under the same parameters: another
    covariance type, another shape or another shift is refused, as is adding
    anything but statistics (or the 0 that ``sum`` starts from).
    """
    rng = np.random.default_rng(0)
    shift = rng.normal(size=(2, 3))
    a = SuffStats("diag", shift, np.ones(2), np.zeros((2, 3)), np.ones((2, 3)), 0.0, 2.0, 2)
    other_type = SuffStats("spherical", shift, np.ones(2), np.zeros((2, 3)), np.ones((2, 3)))
    other_shape = SuffStats("diag", shift[:, :2], np.ones(2), np.zeros((2, 2)),
                            np.ones((2, 2)))
    other_shift = SuffStats("diag", shift + 1.0, np.ones(2), np.zeros((2, 3)),
                            np.ones((2, 3)))
    with pytest.raises(ValueError, match="different covariance types"):
        a + other_type
    with pytest.raises(ValueError, match="different shapes"):
        a + other_shape
    with pytest.raises(ValueError, match="their shifts differ"):
        a + other_shift
    with pytest.raises(TypeError):
        a + 1.0
    with pytest.raises(TypeError):
        1 + a
    assert (0 + a) is a


# ---------------------------------------------------------------------------
# Out-of-core sources: memory maps, chunk factories, Dask arrays
# ---------------------------------------------------------------------------

def test_memmap_validation_errors(tmp_path):
    """Memory maps and .npy paths refuse non-finite rows (naming the row), other files, missing
    files, 1-D arrays, bad weights, bad block sizes, too few rows, and weights given beside a
    source.
    """
    X = three_blobs()
    bad = X.copy()
    bad[1234, 1] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match=r"NaN \(row 1234\)"):
        fastgmm.GaussianMixture(2).fit(MemmapSource(tmp_path / "bad.npy", block_size=256))
    with pytest.raises(ValueError, match="not a .npy file"):
        fastgmm.GaussianMixture(2).fit(str(tmp_path / "x.csv"))
    with pytest.raises(ValueError, match="no such .npy file"):
        fastgmm.GaussianMixture(2).fit(tmp_path / "missing.npy")
    np.save(tmp_path / "one_d.npy", X[:, 0])
    with pytest.raises(ValueError, match="2-dimensional"):
        fastgmm.GaussianMixture(2).fit(tmp_path / "one_d.npy")
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(ValueError, match="sample_weight has 3 entries but X has"):
        fastgmm.GaussianMixture(2).fit(tmp_path / "x.npy", sample_weight=np.ones(3))
    w = np.ones(X.shape[0])
    w[7] = -1
    with pytest.raises(ValueError, match="negative"):
        fastgmm.GaussianMixture(2).fit(tmp_path / "x.npy", sample_weight=w)
    with pytest.raises(ValueError, match="block_size"):
        MemmapSource(tmp_path / "x.npy", block_size=0)
    with pytest.raises(ValueError, match="n_components"):
        fastgmm.GaussianMixture(3).fit(MemmapSource(np.load(tmp_path / "x.npy",
                                                            mmap_mode="r")[:2]))
    with pytest.raises(ValueError, match="to the data source itself"):
        fastgmm.GaussianMixture(2).fit(MemmapSource(tmp_path / "x.npy"), sample_weight=w)


def test_chunk_factory_errors():
    """Chunk factories refuse non-callables, changing data, chunks of other widths or with NaN,
    no rows, non-iterables, mixed weighting, and weights given to fit.
    """
    X = three_blobs()
    with pytest.raises(TypeError, match="chunks must be a callable"):
        IterableSource(X)
    calls = []

    def shrinking():
        calls.append(1)
        return iter([X[: X.shape[0] - len(calls)]])

    with pytest.raises(ValueError, match="same data on every call"):
        fastgmm.GaussianMixture(2, max_iter=5).fit(shrinking)
    with pytest.raises(ValueError, match="chunk 1 has 2 features"):
        fastgmm.GaussianMixture(2).fit(lambda: iter([X, X[:, :2]]))
    with pytest.raises(ValueError, match="chunk 0 contains NaN"):
        fastgmm.GaussianMixture(2).fit(lambda: iter([np.full((5, 2), np.nan)]))
    with pytest.raises(ValueError, match="no rows"):
        fastgmm.GaussianMixture(2).fit(lambda: iter([]))
    with pytest.raises(TypeError, match="must return an iterable"):
        fastgmm.GaussianMixture(2).fit(lambda: 3)
    with pytest.raises(ValueError, match="sample weights unlike earlier chunks"):
        fastgmm.GaussianMixture(2).fit(lambda: iter([X, (X, np.ones(len(X)))]))
    with pytest.raises(ValueError, match="chunk factory"):
        fastgmm.GaussianMixture(2).fit(lambda: iter([X]), sample_weight=np.ones(len(X)))


def test_dask_input_errors(dask_client):
    """Dask input refuses non-finite values (found on the workers), other shapes and feature
    counts, and bad weights; DaskSource wants a Dask array and merges column chunks.
    """
    import dask.array as da

    from fastgmm import DaskSource

    X = dask_blobs()
    model = fastgmm.GaussianMixture(3, random_state=0).fit(X)
    bad = X.copy()
    bad[17, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        fastgmm.GaussianMixture(3).fit(da.from_array(bad, chunks=(1000, 3)))
    with pytest.raises(ValueError, match="2-dimensional"):
        fastgmm.GaussianMixture(3).fit(da.ones((10, 2, 2)))
    with pytest.raises(ValueError, match="features"):
        model.predict(da.from_array(X[:, :2], chunks=(1000, 2)))
    with pytest.raises(ValueError, match="negative"):
        fastgmm.GaussianMixture(3).fit(da.from_array(X, chunks=(1000, 3)),
                                       sample_weight=-np.ones(X.shape[0]))
    with pytest.raises(ValueError, match="sample_weight has 5 entries but X has"):
        fastgmm.GaussianMixture(3).fit(da.from_array(X, chunks=(1000, 3)),
                                       sample_weight=np.ones(5))
    with pytest.raises(TypeError, match="dask.array.Array"):
        DaskSource(X)
    # Column chunks are merged; float32 stays float32, integers become float64.
    src = DaskSource(da.from_array(X.astype(np.float32), chunks=(900, 1)))
    assert src.dtype == np.float32 and src.X.chunks[1] == (3,)
    assert DaskSource(da.from_array(X.astype(np.int16), chunks=900)).dtype == np.float64


# ---------------------------------------------------------------------------
# Model files: save and load
# ---------------------------------------------------------------------------

class _Trap:
    """Unpickling this would create a file: loading must never unpickle."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_load_bad_files(tmp_path, model):
    """``load`` refuses missing, non-model and pickled files (never unpickling one) and non-path
    arguments.
    """
    with pytest.raises(FileNotFoundError):
        fastgmm.load(tmp_path / "missing.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a model")
    with pytest.raises(fastgmm.ModelFileError, match="not a fastgmm model file"):
        fastgmm.load(tmp_path / "garbage.npz")
    trap = tmp_path / "trap"
    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump(_Trap(str(trap)), fh)
    with pytest.raises(fastgmm.ModelFileError):
        fastgmm.load(tmp_path / "evil.pkl")
    np.savez(tmp_path / "evil.npz", weights_=np.array([_Trap(str(trap))], dtype=object))
    with pytest.raises(fastgmm.ModelFileError):
        fastgmm.load(tmp_path / "evil.npz")
    assert not trap.exists()
    with pytest.raises(TypeError):
        fastgmm.load(3)
    assert issubclass(fastgmm.ModelFileError, ValueError)


def test_save_refuses_unfitted_and_foreign_objects(tmp_path):
    """``save`` refuses an unfitted model and a non-model, writing nothing."""
    with pytest.raises(fastgmm.NotFittedError):
        fastgmm.GaussianMixture(2).save(tmp_path / "x.npz")
    with pytest.raises(TypeError, match="GaussianMixture"):
        fastgmm._io.save(object(), tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_failed_save_leaves_nothing_behind(tmp_path, saved):
    """A save that fails half-way (extra metadata not JSON) keeps the previous file and leaves no
    temporary one.
    """
    model, _, _ = saved
    path = tmp_path / "keep.npz"
    path.write_bytes(b"previous content")
    with pytest.raises(TypeError, match="JSON"):
        fastgmm._io.save(model, path, extra={"bad": object()})
    assert path.read_bytes() == b"previous content"
    assert os.listdir(tmp_path) == ["keep.npz"]


def test_missing_file(tmp_path):
    """Loading a missing file raises FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        fastgmm.load(tmp_path / "nope.npz")


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_file(tmp_path, saved, keep):
    """A file cut anywhere is refused as damaged or not a model file."""
    raw = saved[2].read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(raw[:int(len(raw) * keep)])
    with pytest.raises(ModelFileError, match="not a fastgmm model file|damaged or truncated"):
        fastgmm.load(path)


def test_flipped_byte_is_detected(tmp_path, saved):
    """One flipped byte in the stored means is detected by the ZIP checksum or the recorded
    digest.
    """
    raw = bytearray(saved[2].read_bytes())
    members = npz_members(saved[2])
    # Flip a byte inside the stored means (past the .npy header): the zip CRC
    # or the recorded digest must notice.
    target = members["means_"].tobytes()[:16]
    at = bytes(raw).index(target) + 3
    raw[at] ^= 0x40
    path = tmp_path / "flip.npz"
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="damaged|integrity"):
        fastgmm.load(path)


def test_not_a_model_file(tmp_path):
    """A text file and an .npz without metadata are refused."""
    text = tmp_path / "data.csv"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(ModelFileError, match="not a fastgmm model file"):
        fastgmm.load(text)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.arange(3))
    with pytest.raises(ModelFileError, match="no metadata"):
        fastgmm.load(other)


def test_edited_array_is_detected(tmp_path, saved):
    """An edited array fails the integrity check, naming the array."""
    members = npz_members(saved[2])
    members["means_"] = members["means_"] + 1.0
    path = tmp_path / "edited.npz"
    write_members(path, members)
    with pytest.raises(ModelFileError, match="integrity check.*means_"):
        fastgmm.load(path)


def _edited_metadata_file(path, saved, edit, redigest=True):
    """The saved model file with its metadata changed by ``edit(meta)``, written to
    ``path``; the metadata digest is recomputed unless ``redigest`` is False.
    """
    members = npz_members(saved[2])
    meta = file_metadata(members)
    edit(meta)
    write_members(path, with_metadata(members, meta, redigest=redigest))
    return path


def test_edited_metadata_is_detected(tmp_path, saved):
    """Edited metadata fails the integrity check."""
    path = _edited_metadata_file(tmp_path / "meta.npz", saved,
                                 lambda meta: meta.update(covariance_type="diag"),
                                 redigest=False)
    with pytest.raises(ModelFileError, match="integrity check"):
        fastgmm.load(path)


def test_inconsistent_content_is_rejected_even_with_fresh_digests(tmp_path, saved):
    """Metadata inconsistent with the arrays is refused even with recomputed digests."""
    path = _edited_metadata_file(tmp_path / "inconsistent.npz", saved,
                                 lambda meta: meta.update(covariance_type="diag"))
    # The shapes say full.
    with pytest.raises(ModelFileError, match=r"not a valid model: covariances_ has shape"):
        fastgmm.load(path)


def test_added_member_is_detected(tmp_path, saved):
    """A member added to the file is refused."""
    members = npz_members(saved[2])
    members["surprise"] = np.zeros(2)
    path = tmp_path / "added.npz"
    write_members(path, members)
    with pytest.raises(ModelFileError, match="added"):
        fastgmm.load(path)


def test_future_version_is_refused(tmp_path, saved):
    """A file of a later format version is refused, naming the version that wrote it."""
    path = _edited_metadata_file(
        tmp_path / "future.npz", saved,
        lambda meta: meta.update(format_version=FORMAT_VERSION + 1, fastgmm_version="9.0.0"))
    with pytest.raises(ModelFileError,
                       match=r"format version 2 \(written by fastgmm 9\.0\.0\).*Upgrade"):
        fastgmm.load(path)


def test_pickled_member_is_refused(tmp_path, saved):
    """A member that needs pickle is refused."""
    members = npz_members(saved[2])
    path = tmp_path / "pickled.npz"
    buf = io.BytesIO()
    np.savez(buf, **members, evil=np.array([{"a": 1}], dtype=object))
    path.write_bytes(buf.getvalue())
    with pytest.raises(ModelFileError, match="pickled"):
        fastgmm.load(path)


def test_odd_attribute_names_are_refused(tmp_path, saved):
    """Metadata attributes that are not fitted-attribute names, or that contradict the arrays,
    are refused.
    """
    path = _edited_metadata_file(tmp_path / "attr.npz", saved,
                                 lambda meta: meta["attributes"].update(__class__="str"))
    with pytest.raises(ModelFileError, match="'__class__' is not a fitted-attribute name"):
        fastgmm.load(path)
    path = _edited_metadata_file(tmp_path / "attr.npz", saved,
                                 lambda meta: meta["attributes"].update(n_features_in_=5))
    with pytest.raises(ModelFileError, match="n_features_in_=5"):
        fastgmm.load(path)


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------

def _cli(argv):
    from fastgmm import cli

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        status = cli.main(argv)
    return status, err.getvalue()


def test_cli_bad_input_is_one_line_and_status_2(tmp_path):
    """Missing files, NaN, bad --k and --covariance values and non-model files exit 2 with one
    error line and no output file.
    """
    good = tmp_path / "x.csv"
    np.savetxt(good, X, delimiter=",", header="a,b", comments="")
    holes = X.copy()
    holes[3, 1] = np.nan
    np.savetxt(tmp_path / "nan.csv", holes, delimiter=",", header="a,b", comments="")
    out = str(tmp_path / "m.npz")
    cases = [
        (["fit", str(tmp_path / "missing.csv"), "--k", "2", "--out", out], "no such file"),
        (["fit", str(tmp_path / "nan.csv"), "--k", "2", "--out", out], "NaN"),
        (["fit", str(good), "--k", "0", "--out", out], "--k"),
        (["fit", str(good), "--k", "two", "--out", out], "--k"),
        (["fit", str(good), "--k", "2", "--covariance", "banana", "--out", out],
         "--covariance"),
        (["predict", str(good), str(good), "--out", str(tmp_path / "p.csv")],
         "not a fastgmm model file"),
    ]
    for argv, needle in cases:
        status, err = _cli(argv)
        assert status == 2, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fastgmm") and "error" in lines[0], err
        assert needle in lines[0], (needle, err)
        assert "Traceback" not in err
    assert not os.path.exists(out)


# Bad inputs run in this process through cli.main (same code path as the
# separate processes of conftest.CLI_BAD, no interpreter start-up).
BAD_IN_PROCESS = {
    "empty_cell": (["fit", "holes.csv", "--k", "2", "--out", "bad4.npz"], "bad4.npz"),
    "log_of_zero": (["fit", "zeros.csv", "--k", "1", "--log", "--out", "bad7.npz"],
                    "bad7.npz"),
    "future_model": (["info", "future.npz"], None),
    "not_a_model": (["info", "w.csv"], None),
    "missing_model": (["predict", "nothere.npz", "w.csv", "--out", "bad10.csv"],
                      "bad10.csv"),
    "bad_output_suffix": (["predict", "m.npz", "w.csv", "--out", "bad11.txt"], "bad11.txt"),
    "missing_k": (["fit", "w.csv", "--out", "bad12.npz"], "bad12.npz"),
    "bad_k": (["fit", "w.csv", "--k", "0", "--out", "bad13.npz"], "bad13.npz"),
    "no_command": ([], None),
    "ragged_csv": (["fit", "ragged.csv", "--k", "1", "--out", "bad14.npz"], "bad14.npz"),
    "negative_weight": (["fit", "x.npy", "--k", "1", "--columns", "0", "--sample-weight",
                         "1", "--out", "bad15.npz"], "bad15.npz"),
}

BAD_MESSAGES = {
    "missing_data": r"fastgmm fit: error: missing\.csv: no such file",
    "unknown_column": r"unknown column 'Nope'; the columns are Channel, Region, Fresh",
    "non_numeric_column": r"column 'name' is not numeric \(data row 1 holds 'anne'\)",
    "empty_cell": r"column 'b' has a missing value in data row 2",
    "nan_in_npy": r"column '1' is NaN \(a missing value\) in data row 3",
    "k_above_rows": r"--k 5 is larger than the number of data rows \(3\)",
    "log_of_zero": r"--log needs positive values, but column 'y' is 0 in data row 2",
    "truncated_model": r"fastgmm predict: error: truncated\.npz is damaged or truncated",
    "tampered_model": r"tampered\.npz failed its integrity check",
    "future_model": r"model format version 2 .*Upgrade fastgmm",
    "not_a_model": r"w\.csv is not a fastgmm model file",
    "missing_model": r"nothere\.npz: no such file",
    "bad_output_suffix": r"must end in \.csv or \.npy",
    "missing_k": r"fastgmm fit: error: the following arguments are required: --k",
    "no_command": r"fastgmm: error: choose a command",
    "bad_k": r"argument --k: expected a positive integer( or 'auto')?, got '?0'?",
    "ragged_csv": r"data row 2 has 1 field but the file has 2 columns",
    "k_neither_integer_nor_auto": r"argument --k: .*positive integer or 'auto'",
    "negative_weight": r"--sample-weight column '1' has negative values",
}


def _check_one_line_error(name, status, stdout, stderr, folder, out):
    assert status == 2, (stdout, stderr)
    assert "Traceback" not in stderr
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert re.search(BAD_MESSAGES[name], lines[0]), lines[0]
    if out is not None:
        assert not (folder / out).exists()


@pytest.mark.parametrize("name", list(CLI_BAD))
def test_bad_input_exits_2_with_one_line(cli_ws, name):
    """Each bad input of conftest.CLI_BAD, run as a process, exits 2 with the expected single
    stderr line, no stdout, no output file.
    """
    d, res = cli_ws
    proc = res[f"bad_{name}"]
    _check_one_line_error(name, proc.returncode, proc.stdout, proc.stderr, d, CLI_BAD[name][1])


@pytest.mark.parametrize("name", list(BAD_IN_PROCESS))
def test_more_bad_input_exits_2_with_one_line(cli_ws, name, monkeypatch, capsys):
    """Each bad input run through cli.main exits 2 with the expected single stderr line, no
    stdout, no output file.
    """
    d, _ = cli_ws
    monkeypatch.chdir(d)
    args, out = BAD_IN_PROCESS[name]
    status = cli.main(args)
    captured = capsys.readouterr()
    _check_one_line_error(name, status, captured.out, captured.err, d, out)


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------

def test_ellipse_argument_errors(plot_models):
    """plot_ellipses refuses bad dims, negative radii, too few colours, unfitted models and non-
    models.
    """
    pytest.importorskip("matplotlib")
    _, fitted = plot_models
    model = fitted["full"]
    with pytest.raises(ValueError, match="dims"):
        plotting.plot_ellipses(model, ax=new_axes(), dims=(0, 0))
    with pytest.raises(ValueError, match="dims"):
        plotting.plot_ellipses(model, ax=new_axes(), dims=(0, 3))
    with pytest.raises(ValueError, match="n_std"):
        plotting.plot_ellipses(model, ax=new_axes(), n_std=(1, -2))
    with pytest.raises(ValueError, match="colors"):
        plotting.plot_ellipses(model, ax=new_axes(), colors=["red"])
    with pytest.raises(fastgmm.NotFittedError):
        plotting.plot_ellipses(fastgmm.GaussianMixture(2), ax=new_axes())
    with pytest.raises(TypeError, match="GaussianMixture"):
        plotting.plot_ellipses(np.eye(2), ax=new_axes())


def test_criterion_argument_errors():
    """plot_criterion refuses non-mappings, unequal curves, nothing to plot and non-pairs."""
    pytest.importorskip("matplotlib")
    with pytest.raises(TypeError, match="mapping"):
        plotting.plot_criterion([1, 2, 3], ax=new_axes())
    with pytest.raises(ValueError, match="equal"):
        plotting.plot_criterion({"full": ([1, 2], [1.0])}, ax=new_axes())
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_criterion({}, ax=new_axes())
    with pytest.raises(TypeError, match="pair"):
        plotting.plot_criterion({"full": 3}, ax=new_axes())


def test_soft_assignment_argument_errors(plot_models):
    """plot_soft_assignments refuses probabilities of other lengths or outside [0, 1], a missing
    component and 1-D X.
    """
    pytest.importorskip("matplotlib")
    X, _ = plot_models
    p = np.full(len(X), 0.5)
    with pytest.raises(ValueError, match="rows"):
        plotting.plot_soft_assignments(X, p[:-1], ax=new_axes())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plotting.plot_soft_assignments(X, p + 1.0, ax=new_axes())
    with pytest.raises(ValueError, match="component"):
        plotting.plot_soft_assignments(X, np.column_stack([p, p]), ax=new_axes(), component=2)
    with pytest.raises(ValueError, match="2-dimensional"):
        plotting.plot_soft_assignments(X[:, 0], p, ax=new_axes())


# ---------------------------------------------------------------------------
# The bundled data
# ---------------------------------------------------------------------------

def test_segment_profile_rejects_bad_labels(wholesale):
    """segment_profile refuses labels of another shape, out of range or non-integer, and accepts
    integer-valued floats.
    """
    with pytest.raises(ValueError, match=r"shape \(440,\)"):
        wholesale.segment_profile(np.zeros(10, dtype=int))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        wholesale.segment_profile(np.full(440, 2), n_segments=2)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        wholesale.segment_profile(np.full(440, -1), n_segments=1)
    with pytest.raises(TypeError, match="integers"):
        wholesale.segment_profile(np.full(440, 0.5))
    labels = np.zeros(440)
    labels[:10] = 1.0
    assert wholesale.segment_profile(labels).column("customers") == [430, 10]


def test_select_verbose_is_checked():
    """A negative ``verbose`` for select is refused, naming it."""
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="verbose must be >= 0"):
        fastgmm.select(X, [1, 2], verbose=-1)
