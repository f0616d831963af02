"""Failure leaves the estimator as it was; parameters changed since a fit are clear.

Also: fitted attributes set by hand must agree in shape before any kernel
reads them, and ``repr`` works whatever a parameter holds.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import fastgmm
from fastgmm import GaussianMixture, NotFittedError

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
FITTED = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


def _data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal([0.0, 0.0], 1.0, (n // 2, 2)),
                      rng.normal([5.0, 3.0], [1.0, 0.5], (n - n // 2, 2))])


def _state(model) -> dict:
    """Everything a model holds, deep-copied, for before/after comparisons."""
    return copy.deepcopy(vars(model))


def _assert_same_state(model, before):
    after = vars(model)
    assert set(after) == set(before)
    for key, value in before.items():
        if isinstance(value, np.ndarray):
            assert after[key].tobytes() == value.tobytes(), key
        elif key == "_online_stats":
            assert after[key] is not None
            for field in ("nk", "t", "s", "shift"):
                np.testing.assert_array_equal(getattr(after[key], field),
                                              getattr(value, field))
        else:
            assert after[key] == value, key


def _nan_batch(X):
    bad = X.copy()
    bad[3, 1] = np.nan
    return bad


# ---------------------------------------------------------------------------
# a rejected call changes nothing
# ---------------------------------------------------------------------------


def test_a_fit_rejected_for_nan_keeps_the_online_statistics():
    X = _data()
    model = GaussianMixture(2, random_state=0)
    twin = GaussianMixture(2, random_state=0)
    for m in (model, twin):
        m.partial_fit(X[:200])
        m.partial_fit(X[200:400])
    before = _state(model)
    with pytest.raises(ValueError, match="NaN"):
        model.fit(_nan_batch(X))
    _assert_same_state(model, before)
    # The next batch continues the running statistics (no silent restart).
    model.partial_fit(X[400:])
    twin.partial_fit(X[400:])
    assert model.n_steps_ == twin.n_steps_ == 3
    np.testing.assert_array_equal(model.means_, twin.means_)


@pytest.mark.parametrize("bad", ["nan", "weights", "features"])
def test_a_rejected_batch_leaves_online_em_as_it_was(bad):
    X = _data()
    model = GaussianMixture(2, random_state=0).partial_fit(X[:300])
    before = _state(model)
    with pytest.raises(ValueError):
        if bad == "nan":
            model.partial_fit(_nan_batch(X[300:]))
        elif bad == "weights":
            model.partial_fit(X[300:], sample_weight=-np.ones(300))
        else:
            model.partial_fit(np.hstack([X[300:], X[300:, :1]]))
    _assert_same_state(model, before)


def test_partial_fit_of_a_path_raises_before_fitting(tmp_path):
    np.save(tmp_path / "x.npy", _data())
    model = GaussianMixture(2, random_state=0)
    with pytest.raises(TypeError, match=r"X is a file path \('.*x\.npy'\), not an array"):
        model.partial_fit(str(tmp_path / "x.npy"))
    assert not model.__sklearn_is_fitted__()
    assert vars(model) == vars(GaussianMixture(2, random_state=0))
    with pytest.raises(TypeError, match="file path"):
        model.partial_fit(tmp_path / "x.npy")


def test_a_failed_warm_start_or_refit_keeps_the_fitted_model():
    X = _data()
    model = GaussianMixture(2, random_state=0).fit(X)
    before = _state(model)
    with pytest.raises(ValueError, match="NaN"):
        model.fit(_nan_batch(X))
    _assert_same_state(model, before)
    model.set_params(warm_start=True)
    with pytest.raises(ValueError, match="warm_start: X has 3 features"):
        model.fit(np.hstack([X, X[:, :1]]))
    model.set_params(warm_start=False)
    _assert_same_state(model, before)


# ---------------------------------------------------------------------------
# parameters changed after a fit
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fitted_type", COVARIANCE_TYPES)
def test_predictions_keep_using_the_fitted_covariance_type(fitted_type):
    X = _data()
    model = GaussianMixture(2, covariance_type=fitted_type, random_state=0).fit(X)
    expected = (model.predict(X), model.predict_proba(X), model.score_samples(X),
                model.bic(X), model.sample(50, random_state=1)[0])
    stats = model.suff_stats(X)
    for other in COVARIANCE_TYPES:
        model.set_params(covariance_type=other, n_components=3)
        got = (model.predict(X), model.predict_proba(X), model.score_samples(X),
               model.bic(X), model.sample(50, random_state=1)[0])
        for a, b in zip(expected, got, strict=True):
            np.testing.assert_array_equal(a, b)
        assert model.suff_stats(X).covariance_type == stats.covariance_type
    # The next fit reads the parameters, and predictions follow it.
    model.set_params(covariance_type="spherical", n_components=3).fit(X)
    assert model.covariances_.shape == (3,)
    assert model.predict_proba(X).shape == (X.shape[0], 3)


@pytest.mark.parametrize("change, match", [
    ({"n_components": 3}, r"warm_start: n_components is 3 but the model was fitted with 2 "
                          r"components; set warm_start=False to fit afresh"),
    ({"covariance_type": "diag"}, r"warm_start: covariance_type is 'diag' but the model was "
                                  r"fitted with 'full' covariances"),
])
def test_warm_start_after_a_structural_change_is_a_clear_error(change, match):
    X = _data()
    model = GaussianMixture(2, random_state=0).fit(X)
    before = _state(model)
    model.set_params(warm_start=True, **change)
    with pytest.raises(ValueError, match=match):
        model.fit(X)
    model.set_params(warm_start=False, n_components=2, covariance_type="full")
    _assert_same_state(model, before)
    # Cold, it simply fits the new structure.
    model.set_params(**change).fit(X)
    assert model.means_.shape[0] == model.n_components


@pytest.mark.parametrize("change, match", [
    ({"n_components": 3}, r"partial_fit: n_components is 3 but the model was fitted with 2"),
    ({"covariance_type": "tied"}, r"partial_fit: covariance_type is 'tied' but the model was "
                                  r"fitted with 'full'"),
])
def test_partial_fit_after_a_structural_change_is_a_clear_error(change, match):
    X = _data()
    model = GaussianMixture(2, random_state=0).partial_fit(X[:300])
    model.set_params(**change)
    before = _state(model)
    with pytest.raises(ValueError, match=match + r".*call fit to start afresh"):
        model.partial_fit(X[300:])
    _assert_same_state(model, before)


def test_an_old_pickle_without_the_fitted_type_still_predicts():
    X = _data()
    model = GaussianMixture(2, covariance_type="diag", random_state=0).fit(X)
    clone = pickle.loads(pickle.dumps(model))
    del clone._fit_covariance_type       # as pickled by fastgmm 0.1
    np.testing.assert_array_equal(clone.predict_proba(X), model.predict_proba(X))


# ---------------------------------------------------------------------------
# fitted attributes set by hand never reach a kernel inconsistent
# ---------------------------------------------------------------------------


def _calls(model, X):
    return {
        "predict": lambda: model.predict(X),
        "predict_proba": lambda: model.predict_proba(X),
        "score_samples": lambda: model.score_samples(X),
        "score": lambda: model.score(X),
        "bic": lambda: model.bic(X),
        "sample": lambda: model.sample(5),
        "suff_stats": lambda: model.suff_stats(X),
        "partial_fit": lambda: model.partial_fit(X),
    }


@pytest.mark.parametrize("edit, match", [
    (lambda m: setattr(m, "n_features_in_", 3), r"n_features_in_ is 3 but means_ has 2"),
    (lambda m: setattr(m, "n_features_in_", 20000), r"n_features_in_ is 20000"),
    (lambda m: setattr(m, "means_", m.means_[:, :1].copy()), r"n_features_in_ is 2 but "
                                                             r"means_ has 1"),
    (lambda m: setattr(m, "means_", m.means_[0]), r"means_ has shape \(2,\)"),
    (lambda m: setattr(m, "weights_", np.array([0.2, 0.3, 0.5])),
     r"weights_ has shape \(3,\), but full covariances with means_ of shape \(2, 2\) need "
     r"\(2,\)"),
    (lambda m: setattr(m, "covariances_", m.covariances_[:1]), r"covariances_ has shape"),
    (lambda m: setattr(m, "precisions_cholesky_", m.precisions_cholesky_[:, :1, :1]),
     r"precisions_cholesky_ has shape \(2, 1, 1\)"),
    (lambda m: setattr(m, "means_", np.array([["a", "b"], ["c", "d"]])), r"not a real array"),
])
def test_inconsistent_fitted_attributes_are_refused_before_any_kernel(edit, match):
    X = _data()
    model = GaussianMixture(2, random_state=0).fit(X)
    edit(model)
    for name, call in _calls(model, X[:, :2] if model.n_features_in_ == 2 else X).items():
        with pytest.raises(ValueError, match="the fitted (attributes are inconsistent|"
                                             "attribute)"):
            call()
        with pytest.raises(ValueError, match=match):
            call()
        del name


def test_unfitted_models_still_say_not_fitted():
    for name, call in _calls(GaussianMixture(2), _data()).items():
        if name == "partial_fit":
            continue
        with pytest.raises(NotFittedError):
            call()


# ---------------------------------------------------------------------------
# repr
# ---------------------------------------------------------------------------


def test_repr_with_array_like_and_odd_parameters():
    pd = pytest.importorskip("pandas")
    means = pd.DataFrame(np.zeros((2, 2)))

    class NoTruth:
        def __eq__(self, other):
            raise TypeError("no comparison")

        def __repr__(self):
            return "NoTruth()"

    model = GaussianMixture(2, means_init=means, weights_init=[0.5, 0.5],
                            precisions_init=np.ones(2), random_state=NoTruth())
    text = repr(model)
    assert "means_init=DataFrame(shape=(2, 2))" in text
    assert "precisions_init=array(shape=(2,))" in text
    assert "weights_init=[0.5, 0.5]" in text and "random_state=NoTruth()" in text
    assert repr(GaussianMixture()) == "GaussianMixture()"
    assert repr(fastgmm.GaussianMixture(3, tol=1e-3)) == "GaussianMixture(n_components=3)"


def test_plots_read_the_fitted_covariance_type():
    from fastgmm import plotting

    model = GaussianMixture(2, covariance_type="diag", random_state=0).fit(_data())
    model.set_params(covariance_type="full")
    ctype, means, covariances = plotting._mixture_parts(model)
    assert ctype == "diag" and covariances.shape == (2, 2)
