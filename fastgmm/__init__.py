"""fastgmm: Gaussian mixture models fitted by EM with Numba kernels.

>>> import fastgmm
>>> model = fastgmm.fit(X, n_components=3)          # doctest: +SKIP
>>> labels = model.predict(X)                        # doctest: +SKIP
"""

from ._em import IterationInfo
from ._estimator import GaussianMixture, fit
from ._stats import DegenerateCovarianceError, GaussianParams, SuffStats
from ._validation import ConvergenceWarning, DegenerateDataWarning, NotFittedError

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "DegenerateCovarianceError",
    "DegenerateDataWarning",
    "GaussianMixture",
    "GaussianParams",
    "IterationInfo",
    "NotFittedError",
    "SuffStats",
    "__version__",
    "fit",
]
