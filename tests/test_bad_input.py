"""Bad input, exhaustively, at every public entry point.

Each case must raise a clear ``ValueError``/``TypeError`` (or the not-fitted
error) whose message names the argument, leave the caller's arrays and a
fitted model untouched, and never crash the interpreter.
"""

import contextlib
import io
import os
import pickle

import numpy as np
import pytest
import scipy.sparse

import fastgmm
from fastgmm import GaussianMixture, NotFittedError

_rng = np.random.default_rng(0)
X = np.r_[_rng.normal(size=(30, 2)), _rng.normal(size=(30, 2)) + 5.0]
FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")


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
# X
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
    value, exc, match = BAD_X[case]
    before = _copy(value)
    with pytest.raises(exc, match=match):
        FIT_ENTRIES[entry](value)
    _assert_same(value, before)


@pytest.mark.parametrize("case", sorted(BAD_X))
@pytest.mark.parametrize("entry", sorted(FITTED_ENTRIES))
def test_bad_X_at_fitted_entry_points(model, entry, case):
    value, exc, match = BAD_X[case]
    before, snap = _copy(value), _snapshot(model)
    with pytest.raises(exc, match=match):
        FITTED_ENTRIES[entry](model, value)
    _assert_same(value, before)
    _assert_unchanged(model, snap)


@pytest.mark.parametrize("entry", sorted(FITTED_ENTRIES))
def test_wrong_n_features_after_fit(model, entry):
    snap = _snapshot(model)
    with pytest.raises(ValueError,
                       match=r"X has 3 features, but GaussianMixture is expecting 2 features"):
        FITTED_ENTRIES[entry](model, np.ones((6, 3)))
    _assert_unchanged(model, snap)


def test_wrong_n_features_with_warm_start(model):
    warm = GaussianMixture(2, warm_start=True, random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"warm_start: X has 3 features.*fitted with 2"):
        warm.fit(np.ones((10, 3)))


def test_too_few_samples_for_components():
    with pytest.raises(ValueError, match=r"X has 2 samples but n_components=3"):
        GaussianMixture(3).fit(X[:2])
    with pytest.raises(ValueError, match=r"X has 2 samples but n_components=3"):
        GaussianMixture(3).partial_fit(X[:2])


def test_dataframe_with_other_column_names(model):
    pd = pytest.importorskip("pandas")
    named = GaussianMixture(2, random_state=0).fit(pd.DataFrame(X, columns=["a", "b"]))
    with pytest.raises(ValueError, match=r"feature names that differ"):
        named.predict(pd.DataFrame(X, columns=["b", "a"]))


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
    value, exc, match = BAD_W[case]
    before, snap, x_before = _copy(value), _snapshot(model), X.copy()
    with pytest.raises(exc, match=match):
        W_ENTRIES[entry](model, value)
    _assert_same(value, before)
    np.testing.assert_array_equal(X, x_before)
    _assert_unchanged(model, snap)


def test_fewer_positive_weights_than_components():
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
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2, covariance_type=ctype, precisions_init=bad).fit(X)


@pytest.mark.parametrize("name, value", [("learning_offset", -1.0),
                                         ("learning_offset", np.nan),
                                         ("learning_offset", "x"),
                                         ("learning_decay", -0.5), ("learning_decay", 2.0),
                                         ("learning_decay", "x")])
def test_bad_online_parameters(name, value):
    with pytest.raises((ValueError, TypeError), match=name):
        GaussianMixture(2, **{name: value}).partial_fit(X)


def test_unknown_parameters():
    with pytest.raises(ValueError, match=r"invalid parameter 'banana'"):
        GaussianMixture(2).set_params(banana=1)
    with pytest.raises(TypeError, match=r"banana"):
        fastgmm.fit(X, 2, banana=1)


def test_select_bad_arguments():
    with pytest.raises(ValueError, match=r"n_components"):
        fastgmm.select(X, n_components=[0])
    with pytest.raises(ValueError, match=r"criterion"):
        fastgmm.select(X, n_components=[1], criterion="foo")
    with pytest.raises(ValueError, match=r"covariance_type"):
        fastgmm.select(X, n_components=[1], covariance_types="banana")


# ---------------------------------------------------------------------------
# Calls before fit, and other method arguments
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score",
                                    "bic", "aic", "suff_stats"])
def test_methods_before_fit(method):
    with pytest.raises(NotFittedError, match="not fitted"):
        getattr(GaussianMixture(2), method)(X)


def test_sample_and_save_before_fit(tmp_path):
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
    with pytest.raises(exc, match="n_samples"):
        model.sample(n)


def test_sample_bad_random_state(model):
    with pytest.raises(TypeError, match="random_state"):
        model.sample(3, random_state="x")


def test_apply_stats_bad_statistics(model):
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


# ---------------------------------------------------------------------------
# Model files and the command line
# ---------------------------------------------------------------------------

class _Trap:
    """Unpickling this would create a file: loading must never unpickle."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_load_bad_files(tmp_path, model):
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


def _cli(argv):
    from fastgmm import cli

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        status = cli.main(argv)
    return status, err.getvalue()


def test_cli_bad_input_is_one_line_and_status_2(tmp_path):
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
