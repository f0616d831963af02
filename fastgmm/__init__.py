"""fastgmm: Gaussian mixture models fitted by EM with Numba kernels.

>>> import numpy as np, fastgmm
>>> rng = np.random.default_rng(0)
>>> X = np.r_[rng.normal(size=(500, 2)), rng.normal(size=(500, 2)) + 8.0]
>>> model = fastgmm.fit(X, n_components=2, random_state=0)
>>> labels = model.predict(X)
>>> sorted(np.bincount(labels).tolist())
[500, 500]
"""

from ._em import IterationInfo
from ._estimator import GaussianMixture, fit
from ._exceptions import DegenerateCovarianceError, DegenerateDataWarning
from ._params import GaussianParams
from ._sources import IterableSource, MemmapSource
from ._stats import SuffStats
from ._version import __version__

# Imported on first use, so that ``import fastgmm`` stays cheap (the command
# line and every new process pay for it): name -> (module, attribute or None).
_LAZY = {
    "BayesianGaussianMixture": ("._bayesian", "BayesianGaussianMixture"),
    "ConditionalMixture": ("._missing", "ConditionalMixture"),
    "ConvergenceWarning": ("._exceptions", "ConvergenceWarning"),
    "NotFittedError": ("._exceptions", "NotFittedError"),
    "DaskSource": ("._dask", "DaskSource"),
    "MCLUST_MODELS": ("._covariance", "MCLUST_MODELS"),
    "ModelFileError": ("._io", "ModelFileError"),
    "load": ("._io", "load"),
    "SelectionResult": ("._select", "SelectionResult"),
    "select": ("._select", "select"),
    "datasets": (".datasets", None),
    "plotting": (".plotting", None),
}


def __getattr__(name):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'fastgmm' has no attribute {name!r}") from None
    import importlib

    mod = importlib.import_module(module, __name__)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BayesianGaussianMixture",
    "ConditionalMixture",
    "ConvergenceWarning",
    "DaskSource",
    "DegenerateCovarianceError",
    "DegenerateDataWarning",
    "GaussianMixture",
    "GaussianParams",
    "IterationInfo",
    "IterableSource",
    "MCLUST_MODELS",
    "MemmapSource",
    "ModelFileError",
    "NotFittedError",
    "SelectionResult",
    "SuffStats",
    "__version__",
    "datasets",
    "fit",
    "load",
    "plotting",
    "select",
]
