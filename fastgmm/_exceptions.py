"""The exceptions and warnings fastgmm raises, in one place.

:class:`NotFittedError` and :class:`ConvergenceWarning` are subclasses of
scikit-learn's exceptions of the same names whenever scikit-learn can be
imported, so that code written for scikit-learn (``except
sklearn.exceptions.NotFittedError``, warning filters on its
``ConvergenceWarning``) catches fastgmm's too; without scikit-learn they
derive from the same builtins as scikit-learn's.  Importing scikit-learn
takes seconds, far longer than ``import fastgmm``, so these two classes are
made on first use (module ``__getattr__``), once per process, and the rest
of fastgmm refers to them through this module at the moment it raises.
"""

from __future__ import annotations

import threading


class DegenerateDataWarning(UserWarning):
    """EM met a degenerate component and repaired it (see ``on_degenerate``).

    A plain ``UserWarning``: scikit-learn has no warning for a repaired
    component, and its data warnings (about dtype conversion or
    dimensionality) mean something else.
    """


class DegenerateCovarianceError(ValueError):
    """A covariance matrix is not positive definite.

    Attributes
    ----------
    component : int or None
        The offending component (``None`` for a tied covariance).
    """

    def __init__(self, message: str, component: int | None = None):
        super().__init__(message)
        self.component = component


_DOCS = {
    "NotFittedError": (
        "Raised when a method that needs a fitted model is called before ``fit``.\n\n"
        "A ``ValueError`` and an ``AttributeError``, and a subclass of\n"
        "``sklearn.exceptions.NotFittedError`` when scikit-learn is installed."),
    "ConvergenceWarning": (
        "The best EM run stopped at ``max_iter`` before meeting ``tol``.\n\n"
        "A ``UserWarning``, and a subclass of ``sklearn.exceptions.ConvergenceWarning``\n"
        "when scikit-learn is installed."),
}
_BUILTIN_BASES = {"NotFittedError": (ValueError, AttributeError),
                  "ConvergenceWarning": (UserWarning,)}
_lock = threading.Lock()


def _make(name: str) -> type:
    try:
        from sklearn import exceptions
    except ImportError:
        bases = _BUILTIN_BASES[name]
    else:
        bases = (getattr(exceptions, name),)
    return type(name, bases, {"__doc__": _DOCS[name], "__module__": __name__})


def __getattr__(name: str) -> type:
    if name not in _DOCS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _lock:
        cls = globals().get(name)
        if cls is None:
            cls = globals()[name] = _make(name)
    return cls
