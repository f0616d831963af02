"""Property-based tests (hypothesis) on small, well-posed random problems.

Every property is checked against an exact mathematical identity (monotone
EM, simplex responsibilities, permutation invariance, translation and scale
equivariance), never against stored results.
"""

import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from naive import unit_covariances

import fastgmm
from fastgmm import ConvergenceWarning, DegenerateDataWarning

SETTINGS = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw):
    """A well-separated mixture sample, its size and seed, and a covariance type."""
    k = draw(st.integers(1, 3))
    d = draw(st.integers(1, 3))
    n_per = draw(st.integers(8, 30))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    ctype = draw(st.sampled_from(COVARIANCE_TYPES))
    weighted = draw(st.booleans())
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=6.0, size=(k, d))
    scales = rng.uniform(0.5, 2.0, size=(k, d))
    X = np.concatenate([centers[j] + scales[j] * rng.normal(size=(n_per, d))
                        for j in range(k)])
    w = rng.uniform(0.2, 3.0, size=len(X)) if weighted else None
    return X, w, k, ctype, rng


def _user_init(X, k, ctype, rng):
    """Initial parameters independent of row order: rows picked, unit precisions."""
    d = X.shape[1]
    means = X[rng.choice(len(X), size=k, replace=False)].copy()
    prec = unit_covariances(ctype, k, d)
    return np.full(k, 1.0 / k), means, prec


def _fit(X, w, k, ctype, init, max_iter=12, reg=1e-6):
    weights, means, prec = init
    model = fastgmm.GaussianMixture(k, covariance_type=ctype, weights_init=weights,
                                    means_init=means, precisions_init=prec, tol=0.0,
                                    max_iter=max_iter, reg_covar=reg)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        model.fit(X, sample_weight=w)
    kinds = {r.category for r in rec}
    assert kinds <= {ConvergenceWarning, DegenerateDataWarning}, [str(r.message) for r in rec]
    # A repair (re-seed or split) legitimately breaks the EM identities below.
    assume(DegenerateDataWarning not in kinds)
    return model


@SETTINGS
@given(problems())
def test_lower_bound_never_decreases_and_responsibilities_on_simplex(problem):
    """EM never decreases the lower bound; responsibilities lie on the simplex, also far from the
    data; score is the weighted mean of score_samples.
    """
    X, w, k, ctype, rng = problem
    model = _fit(X, w, k, ctype, _user_init(X, k, ctype, rng), max_iter=25)
    lb = np.asarray(model.lower_bounds_)
    assert np.isfinite(lb).all()
    assert (np.diff(lb) >= -1e-9 * np.maximum(1.0, np.abs(lb[1:]))).all(), lb
    probe = np.r_[X, rng.normal(scale=20.0, size=(10, X.shape[1]))]
    proba = model.predict_proba(probe)
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert model.score(X, sample_weight=w) == pytest.approx(
        np.average(model.score_samples(X), weights=w), rel=1e-12)


@SETTINGS
@given(problems(), st.integers(0, 2 ** 31 - 1))
def test_row_permutation_leaves_parameters_unchanged(problem, perm_seed):
    """Permuting the rows (and their weights) leaves the parameters unchanged and permutes the
    labels.
    """
    X, w, k, ctype, rng = problem
    init = _user_init(X, k, ctype, rng)
    perm = np.random.default_rng(perm_seed).permutation(len(X))
    a = _fit(X, w, k, ctype, init)
    b = _fit(X[perm], None if w is None else w[perm], k, ctype, init)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-7,
                                   atol=1e-9, err_msg=name)
    np.testing.assert_array_equal(b.predict(X[perm]), a.predict(X)[perm])


@SETTINGS
@given(problems(), st.lists(st.floats(-100.0, 100.0), min_size=3, max_size=3))
def test_translation_moves_means_only(problem, shift):
    """Translating data and start moves the means by the translation and changes nothing else."""
    X, w, k, ctype, rng = problem
    c = np.asarray(shift[: X.shape[1]])
    weights, means, prec = _user_init(X, k, ctype, rng)
    a = _fit(X, w, k, ctype, (weights, means, prec))
    b = _fit(X + c, w, k, ctype, (weights, means + c, prec))
    np.testing.assert_allclose(b.means_, a.means_ + c, rtol=0, atol=1e-7)
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(b.weights_, a.weights_, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(b.lower_bounds_, a.lower_bounds_, rtol=1e-7)


@SETTINGS
@given(problems(), st.floats(-3.0, 3.0))
def test_scaling_is_equivariant(problem, log10_scale):
    """Scaling data, start and reg_covar scales means and covariances and shifts the lower bounds
    by -d log(scale).
    """
    X, w, k, ctype, rng = problem
    s = 10.0 ** log10_scale
    d = X.shape[1]
    weights, means, prec = _user_init(X, k, ctype, rng)
    reg = 1e-6
    a = _fit(X, w, k, ctype, (weights, means, prec), reg=reg)
    b = _fit(X * s, w, k, ctype, (weights, means * s, prec / s ** 2), reg=reg * s ** 2)
    np.testing.assert_allclose(b.means_ / s, a.means_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(b.covariances_ / s ** 2, a.covariances_, rtol=1e-7)
    np.testing.assert_allclose(b.weights_, a.weights_, rtol=1e-7, atol=1e-10)
    # Densities scale by s**-d.
    np.testing.assert_allclose(np.asarray(b.lower_bounds_) + d * np.log(s),
                               a.lower_bounds_, rtol=1e-7, atol=1e-8)
