"""The exceptions and warnings fastgmm raises, in one place."""

from __future__ import annotations


class NotFittedError(ValueError, AttributeError):
    """Raised when a method that needs a fitted model is called before ``fit``."""


class ConvergenceWarning(UserWarning):
    """The best EM run stopped at ``max_iter`` before meeting ``tol``."""


class DegenerateDataWarning(UserWarning):
    """EM met a degenerate component and repaired it (see ``on_degenerate``)."""


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
