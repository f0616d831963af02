"""Bounded fuzz loop: random shapes, values, weights and parameters.

Every call must either succeed with finite output or raise one of the
documented exceptions (``ValueError`` and its subclasses
``DegenerateCovarianceError``/``NotFittedError``, or ``TypeError``).  The
seed is fixed and the loop is bounded in count and in time, so the test is
reproducible and cheap.
"""

import time
import warnings
from collections import Counter

import numpy as np

import fastgmm
from fastgmm import ConvergenceWarning, DegenerateDataWarning

SEED = 20240611
MAX_CASES = 150
MAX_SECONDS = 20.0
DOCUMENTED = (ValueError, TypeError)


def _values(rng, n, d):
    good = ["normal", "blobs", "duplicates", "constant_col", "integers", "bool", "tiny",
            "huge", "offset", "float32"]
    bad = ["nan", "inf", "strings", "complex", "3d", "1d"]
    kind = rng.choice(good) if rng.random() < 0.85 else rng.choice(bad)
    shape = (n, d)
    if kind == "normal":
        return rng.normal(size=shape)
    if kind == "blobs":
        return rng.normal(size=shape) + rng.integers(0, 3, size=(n, 1)) * 10.0
    if kind == "duplicates":
        return np.repeat(rng.normal(size=(max(1, n // 5), d)), 5, axis=0)[:n]
    if kind == "constant_col":
        X = rng.normal(size=shape)
        if d:
            X[:, 0] = 7.0
        return X
    if kind == "integers":
        return rng.integers(-3, 4, size=shape)
    if kind == "bool":
        return rng.random(shape) < 0.5
    if kind == "tiny":
        return rng.normal(size=shape) * 10.0 ** rng.uniform(-150, -100)
    if kind == "huge":
        return rng.normal(size=shape) * 10.0 ** rng.uniform(100, 150)
    if kind == "offset":
        return rng.normal(size=shape) + 1e8
    if kind == "float32":
        return (rng.normal(size=shape) * 100).astype(np.float32)
    if kind == "nan":
        X = rng.normal(size=shape)
        if X.size:
            X.flat[rng.integers(0, X.size)] = np.nan
        return X
    if kind == "inf":
        X = rng.normal(size=shape)
        if X.size:
            X.flat[rng.integers(0, X.size)] = -np.inf
        return X
    if kind == "strings":
        return np.full(shape, "x")
    if kind == "complex":
        return rng.normal(size=shape) + 1j
    if kind == "3d":
        return rng.normal(size=(n, d, 2))
    return rng.normal(size=n)


def _weights(rng, n):
    kind = (rng.choice(["none", "none", "uniform", "integers", "sparse"]) if rng.random() < 0.85
            else rng.choice(["zeros", "negative", "nan", "short"]))
    if kind == "none":
        return None
    if kind == "uniform":
        return rng.uniform(0.1, 5.0, size=n)
    if kind == "integers":
        return rng.integers(0, 4, size=n)
    if kind == "zeros":
        return np.zeros(n)
    if kind == "negative":
        return -rng.uniform(size=n)
    if kind == "nan":
        w = np.ones(n)
        w[: min(1, n)] = np.nan
        return w
    if kind == "short":
        return np.ones(max(0, n - 1))
    w = np.zeros(n)
    w[rng.integers(0, max(1, n), size=3) % max(1, n)] = 1.0
    return w


def _params(rng):
    params = {
        "n_components": int(rng.choice([1, 2, 3, 5])),
        "covariance_type": str(rng.choice(["full", "tied", "diag", "spherical"])),
        "reg_covar": float(rng.choice([0.0, 1e-6, 1e-3])),
        "max_iter": int(rng.choice([0, 1, 5, 20])),
        "n_init": int(rng.choice([1, 2])),
        "init_params": str(rng.choice(["kmeans", "k-means++", "random",
                                       "random_from_data"])),
        "tol": float(rng.choice([1e-3, 0.0, 1e-8])),
        "on_degenerate": str(rng.choice(["warn", "warn", "ignore", "raise"])),
        "random_state": int(rng.integers(0, 1000)),
    }
    if rng.random() < 0.15:  # one invalid parameter
        name, value = [("n_components", 0), ("covariance_type", "bogus"),
                       ("reg_covar", -1.0), ("init_params", "nope"), ("tol", np.nan),
                       ("n_init", 1.5), ("on_degenerate", "loud")][rng.integers(0, 7)]
        params[name] = value
    return params


def _check_finite_model(model, X):
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.isfinite(getattr(model, name)).all(), name
    assert np.isfinite(model.lower_bounds_).all()
    assert abs(float(model.weights_.sum()) - 1.0) < 1e-5
    proba = model.predict_proba(X)
    assert np.isfinite(proba).all() and (proba >= 0).all() and (proba <= 1 + 1e-6).all()
    assert np.isfinite(model.score_samples(X)).all()
    Xs, ys = model.sample(7)
    assert Xs.shape == (7, X.shape[1]) and np.isfinite(Xs).all() and ys.shape == (7,)
    assert np.isfinite(model.bic(X))


def run_fuzz(seed=SEED, max_cases=MAX_CASES, max_seconds=MAX_SECONDS):
    """Run the loop; returns the number of cases and a Counter of outcomes."""
    rng = np.random.default_rng(seed)
    outcomes = Counter()
    start = time.perf_counter()
    n_cases = 0
    while n_cases < max_cases and time.perf_counter() - start < max_seconds:
        n_cases += 1
        n = int(rng.integers(0, 60)) if rng.random() < 0.1 else int(rng.integers(5, 60))
        d = int(rng.integers(0, 4)) if rng.random() < 0.1 else int(rng.integers(1, 4))
        X = _values(rng, n, d)
        w = _weights(rng, n)
        params = _params(rng)
        X_before = np.array(X, copy=True)
        case = f"case {n_cases}: X {X.dtype}{X.shape}, w={None if w is None else w[:3]}, " \
               f"{params}"
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            try:
                model = fastgmm.GaussianMixture(**params).fit(X, sample_weight=w)
            except DOCUMENTED as exc:
                outcomes[type(exc).__name__] += 1
                model = None
            else:
                outcomes["fitted"] += 1
                _check_finite_model(model, np.asarray(X))
        unexpected = [str(r.message) for r in rec
                      if not issubclass(r.category, (ConvergenceWarning,
                                                     DegenerateDataWarning))]
        assert not unexpected, (case, unexpected)
        outcomes.update(r.category.__name__ for r in rec)
        np.testing.assert_array_equal(X, X_before, err_msg=case)
    return n_cases, outcomes


def test_fuzz_fit_and_predict_succeed_or_raise_documented_errors():
    """Random shapes, values, weights and parameters either fit a finite, usable model or raise a
    documented error, never touching the input; both outcomes occur.
    """
    n_cases, outcomes = run_fuzz()
    # The loop must have exercised both sides of the contract.
    assert outcomes["fitted"] >= 40 and outcomes["ValueError"] >= 10, outcomes
    assert n_cases >= 50, (n_cases, outcomes)
