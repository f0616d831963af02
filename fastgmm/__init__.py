"""fastgmm: Gaussian mixture models fitted by EM with Numba kernels.

>>> import fastgmm
>>> model = fastgmm.fit(X, n_components=3)          # doctest: +SKIP
>>> labels = model.predict(X)                        # doctest: +SKIP
"""

from ._em import IterationInfo
from ._estimator import GaussianMixture, fit
from ._io import ModelFileError, load
from ._sources import IterableSource, MemmapSource
from ._dask import DaskSource
from ._select import SelectionResult, select
from ._stats import DegenerateCovarianceError, GaussianParams, SuffStats
from ._validation import ConvergenceWarning, DegenerateDataWarning, NotFittedError

__version__ = "0.1.0"

# Cheap to import: neither pulls in matplotlib or pandas until used.
from . import datasets, plotting  # noqa: E402

__all__ = [
    "ConvergenceWarning",
    "DaskSource",
    "DegenerateCovarianceError",
    "DegenerateDataWarning",
    "GaussianMixture",
    "GaussianParams",
    "IterationInfo",
    "IterableSource",
    "MemmapSource",
    "ModelFileError",
    "NotFittedError",
    "SelectionResult",
    "SuffStats",
    "__version__",
    "datasets",
    "fit",
    "select",
    "load",
    "plotting",
]
