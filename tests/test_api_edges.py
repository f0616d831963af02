"""The Python API at the edges a user meets (issue #28, item 4)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import fastgmm
from fastgmm import DegenerateDataWarning, NotFittedError


def _blobs(seed=0, n=200):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(0.0, 1.0, (n // 2, 2)), rng.normal(5.0, 1.0, (n - n // 2, 2))])


def _with_gaps(X, seed=1, rate=0.15):
    X = X.copy()
    rng = np.random.default_rng(seed)
    X[rng.random(X.shape) < rate] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.0
    return X


# ---------------------------------------------------------------------------
# every NaN error's advice applies to the call that raised it
# ---------------------------------------------------------------------------


def test_gaussian_mixture_advice_works_where_given():
    X = _with_gaps(_blobs())
    with pytest.raises(ValueError, match=re.escape("or fit with missing='marginalize'")):
        fastgmm.GaussianMixture(2, random_state=0).fit(X)
    model = fastgmm.GaussianMixture(2, random_state=0).fit(_blobs())
    with pytest.raises(ValueError, match=re.escape("pass missing='marginalize' to this call")):
        model.predict(X)
    assert model.predict(X, missing="marginalize").shape == (X.shape[0],)   # as advised


def test_bayesian_mixture_is_not_advised_an_option_it_lacks():
    X = _with_gaps(_blobs())
    for call in (lambda: fastgmm.BayesianGaussianMixture(2, random_state=0).fit(X),
                 lambda: fastgmm.BayesianGaussianMixture(2, random_state=0).fit(
                     _blobs()).predict(X)):
        with pytest.raises(ValueError, match="has no missing-data option") as info:
            call()
        assert "marginalize" not in str(info.value)


def test_condition_is_not_advised_an_option_it_already_has():
    model = fastgmm.GaussianMixture(2, missing="marginalize", random_state=0).fit(
        _with_gaps(_blobs()))
    with pytest.raises(ValueError, match="X_given contains NaN") as info:
        model.condition([[np.nan]], [0])
    assert "marginalize" not in str(info.value)
    assert "given_features" in str(info.value)


def test_select_advises_its_own_missing_option_and_it_works():
    X = _with_gaps(_blobs())
    with pytest.raises(ValueError, match=re.escape("pass missing='marginalize' to select")):
        fastgmm.select(X, [1, 2], "full", random_state=0)
    result = fastgmm.select(X, [1, 2, 3], ("full", "diag"), missing="marginalize",
                            random_state=0)
    assert result.best_params_["n_components"] == 2
    # Each cell's BIC is -2 log L + p log n with L the likelihood of the observed
    # entries: the marginal mixture density of each row, computed with scipy.
    for model in (result.best_model_, result.models_[("diag", 3)]):
        assert model._marginalize(None)
        log_l = 0.0
        for row in X:
            o = ~np.isnan(row)
            cov = model.covariances_
            covs = [np.diag(c) if cov.ndim == 2 else c for c in cov]
            log_l += logsumexp([np.log(wk) + multivariate_normal(mk[o], ck[np.ix_(o, o)])
                                .logpdf(row[o]) for wk, mk, ck
                                in zip(model.weights_, model.means_, covs, strict=True)])
        row = result.criteria_[(result.criteria_["covariance_type"] == model.covariance_type)
                               & (result.criteria_["n_components"] == model.n_components)]
        p = model._n_parameters()
        np.testing.assert_allclose(float(row["bic"].iloc[0]), -2 * log_l + p * np.log(len(X)),
                                   rtol=1e-9)


# ---------------------------------------------------------------------------
# pandas' missing marker reads as NaN
# ---------------------------------------------------------------------------


def test_pd_na_reads_as_a_missing_value():
    pd = pytest.importorskip("pandas")
    sk_validation = pytest.importorskip("sklearn.utils.validation")
    X = _with_gaps(_blobs())
    frame = pd.DataFrame({"a": pd.array(list(X[:, 0]), dtype="Float64"),
                          "b": pd.array(list(X[:, 1]), dtype="Float64")})
    frame[frame.isna()] = pd.NA
    assert np.asarray(frame).dtype == object and frame.isna().to_numpy().any()
    # scikit-learn reads pd.NA as NaN.
    sk = sk_validation.check_array(frame, ensure_all_finite="allow-nan")
    np.testing.assert_array_equal(sk, X)
    a = fastgmm.GaussianMixture(2, missing="marginalize", random_state=0).fit(frame)
    b = fastgmm.GaussianMixture(2, missing="marginalize", random_state=0).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.predict(frame), b.predict(X))
    with pytest.raises(ValueError, match="X contains NaN"):
        fastgmm.GaussianMixture(2, random_state=0).fit(frame)
    # Other objects are still refused as non-numeric.
    with pytest.raises(TypeError, match="non-numeric"):
        fastgmm.GaussianMixture(1).fit(pd.DataFrame({"a": ["x", pd.NA, "y"]}))


# ---------------------------------------------------------------------------
# a feature observed too rarely for its variance
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("observed, warns", [(1, True), (2, False)])
def test_a_feature_observed_in_one_row_warns(observed, warns):
    X = _blobs()
    X[observed:, 1] = np.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fastgmm.GaussianMixture(1, missing="marginalize", random_state=0).fit(X)
    messages = [str(w.message) for w in caught if issubclass(w.category, DegenerateDataWarning)]
    if warns:
        assert any("feature 1 is observed in only 1 row" in m for m in messages), messages
    else:
        assert not any("is observed in only" in m for m in messages), messages


# ---------------------------------------------------------------------------
# scikit-learn's conventions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [fastgmm.GaussianMixture, fastgmm.BayesianGaussianMixture])
def test_not_fitted_error_has_scikit_learns_text(cls):
    sk_validation = pytest.importorskip("sklearn.utils.validation")
    sk_mixture = pytest.importorskip("sklearn.mixture")
    sk_model = getattr(sk_mixture, cls.__name__)()
    with pytest.raises(Exception) as sk_info:
        sk_validation.check_is_fitted(sk_model)
    with pytest.raises(NotFittedError) as info:
        cls().predict(_blobs())
    assert str(info.value) == str(sk_info.value)
    assert str(info.value) == (f"This {cls.__name__} instance is not fitted yet. Call 'fit' "
                               "with appropriate arguments before using this estimator.")


def test_sample_weight_is_routed_by_scikit_learns_meta_estimators():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.exceptions import UnsetMetadataPassedError
    from sklearn.model_selection import KFold, cross_validate
    from sklearn.pipeline import Pipeline

    X = _blobs()
    w = np.random.default_rng(3).random(X.shape[0]) + 0.5
    with sklearn.config_context(enable_metadata_routing=True):
        model = fastgmm.GaussianMixture(2, random_state=0).set_fit_request(
            sample_weight=True).set_score_request(sample_weight=True)
        pipe = Pipeline([("gm", model)]).fit(X, sample_weight=w)
        direct = fastgmm.GaussianMixture(2, random_state=0).fit(X, sample_weight=w)
        np.testing.assert_array_equal(pipe.named_steps["gm"].means_, direct.means_)

        folds = list(KFold(3).split(X))
        out = cross_validate(model, X, params={"sample_weight": w}, cv=folds,
                             return_estimator=True)
        for (train, test), fitted, score in zip(folds, out["estimator"], out["test_score"],
                                                 strict=True):
            ref = fastgmm.GaussianMixture(2, random_state=0).fit(X[train],
                                                                 sample_weight=w[train])
            np.testing.assert_array_equal(fitted.means_, ref.means_)
            expected = np.average(ref.score_samples(X[test]), weights=w[test])
            np.testing.assert_allclose(score, expected, rtol=1e-12)

        # Not requested: scikit-learn refuses to pass it, as for its own estimators.
        with pytest.raises(UnsetMetadataPassedError):
            Pipeline([("gm", fastgmm.GaussianMixture(2))]).fit(X, sample_weight=w)
    with pytest.raises(TypeError, match="sample_weight must be True, False, None"):
        fastgmm.GaussianMixture().set_fit_request(sample_weight=3)
