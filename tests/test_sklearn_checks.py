"""scikit-learn's estimator checks on every estimator fastgmm exports, and its exception classes.

scikit-learn is in the test extra, so these run wherever the suite runs.
"""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.exceptions import NotFittedError as SkNotFittedError
from sklearn.utils.estimator_checks import estimator_checks_generator

import fastgmm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Every estimator the package exports, as scikit-learn's checks expect them:
#: small settings, fixed seeds.
ESTIMATORS = [fastgmm.GaussianMixture(n_components=2, random_state=0),
              fastgmm.BayesianGaussianMixture(n_components=2, random_state=0)]


def _check_name(check) -> str:
    return getattr(check, "func", check).__name__


def _checks(array_api: bool) -> list:
    """``(estimator, check)`` pairs: the array-API check alone, or every other one.

    The array-API check needs ``SCIPY_ARRAY_API=1`` before scipy is imported,
    so it runs in a fresh interpreter (``test_sklearn_array_api_check``)
    instead of being skipped here.
    """
    out = []
    with warnings.catch_warnings():
        # scikit-learn warns that the estimator does not inherit from its
        # BaseEstimator: fastgmm follows the contract without depending on it.
        warnings.filterwarnings("ignore", message=".*does not inherit from")
        for est in ESTIMATORS:
            for item in estimator_checks_generator(
                    est, expected_failed_checks=est._sklearn_expected_failed_checks(),
                    mark="xfail", xfail_strict=True):
                # An expected failure comes as ``pytest.param(est, check, marks=xfail)``.
                _, check = getattr(item, "values", item)
                if (_check_name(check) == "check_array_api_input") == array_api:
                    out.append(item)
    return out


@pytest.mark.parametrize("estimator, check", _checks(array_api=False),
                         ids=lambda v: _check_name(v) if callable(v) else type(v).__name__)
@pytest.mark.filterwarnings("ignore:.*does not inherit from:UserWarning")
def test_sklearn_estimator_checks(estimator, check):
    """Each of scikit-learn's checks passes, or fails as the estimator declares, with a reason."""
    check(estimator)


def test_sklearn_array_api_check():
    """With array-API dispatch on and NumPy inputs, results do not change (scikit-learn's check)."""
    assert len(_checks(array_api=True)) == len(ESTIMATORS)
    code = ("import warnings\n"
            "warnings.simplefilter('ignore')\n"
            "from sklearn.utils.estimator_checks import estimator_checks_generator\n"
            "import fastgmm\n"
            "for est in [fastgmm.GaussianMixture(n_components=2, random_state=0),\n"
            "            fastgmm.BayesianGaussianMixture(n_components=2, random_state=0)]:\n"
            "    for e, check in estimator_checks_generator(est):\n"
            "        if getattr(check, 'func', check).__name__ == 'check_array_api_input':\n"
            "            check(e)\n"
            "            print('ran')\n")
    assert _run(code, {"SCIPY_ARRAY_API": "1"}).split() == ["ran"] * len(ESTIMATORS)


def test_every_expected_failure_has_a_reason():
    for est in ESTIMATORS:
        reasons = est._sklearn_expected_failed_checks()
        assert all(isinstance(r, str) and len(r) > 40 for r in reasons.values())


def test_not_fitted_error_is_scikit_learns():
    assert issubclass(fastgmm.NotFittedError, SkNotFittedError)
    assert issubclass(fastgmm.NotFittedError, ValueError)
    assert issubclass(fastgmm.NotFittedError, AttributeError)
    with pytest.raises(SkNotFittedError, match="not fitted yet"):
        fastgmm.GaussianMixture(2).predict(np.zeros((3, 2)))


def test_convergence_warning_is_scikit_learns():
    assert issubclass(fastgmm.ConvergenceWarning, SkConvergenceWarning)
    X = np.random.default_rng(0).normal(size=(300, 2))
    with pytest.warns(SkConvergenceWarning, match="did not converge"):
        fastgmm.GaussianMixture(3, max_iter=1, tol=0.0, random_state=0).fit(X)


def test_a_warning_filter_on_scikit_learns_class_silences_fastgmms():
    X = np.random.default_rng(0).normal(size=(300, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", SkConvergenceWarning)
        fastgmm.GaussianMixture(3, max_iter=1, tol=0.0, random_state=0).fit(X)


def _run(code: str, extra_env: dict | None = None) -> str:
    env = dict(os.environ, PYTHONPATH=ROOT, **(extra_env or {}))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_without_scikit_learn_the_classes_derive_from_the_builtins():
    # ``sys.modules[name] = None`` makes ``import name`` raise ImportError.
    out = _run("import sys\n"
               "sys.modules['sklearn'] = None\n"
               "import fastgmm\n"
               "E, W = fastgmm.NotFittedError, fastgmm.ConvergenceWarning\n"
               "print(E.__mro__[1:3] == (ValueError, AttributeError),\n"
               "      W.__mro__[1] is UserWarning)\n"
               "try:\n"
               "    fastgmm.GaussianMixture(2).predict([[0.0, 1.0]])\n"
               "except ValueError as exc:\n"
               "    print(type(exc) is E)\n")
    assert out.split() == ["True", "True", "True"]


def test_import_fastgmm_does_not_import_scikit_learn():
    out = _run("import sys, fastgmm\n"
               "print('sklearn' in sys.modules)\n"
               "fastgmm.NotFittedError\n"
               "print('sklearn' in sys.modules)\n")
    assert out.split() == ["False", "True"]


def test_the_classes_are_made_once():
    from fastgmm import _exceptions

    assert fastgmm.NotFittedError is _exceptions.NotFittedError
    assert fastgmm.ConvergenceWarning is _exceptions.ConvergenceWarning
    assert sklearn.__version__  # the real scikit-learn, not a stand-in
