"""The estimator class behind each model-file format.

:mod:`fastgmm._io` builds the estimator a file names, but must not import
the estimator modules: they import :mod:`fastgmm._io` to save, which would
close an import cycle.  It asks here instead.  The table names each class by
its module, imported on first use (as :mod:`fastgmm` imports its lazy
attributes), so that reading a ``GaussianMixture`` file does not import
:mod:`fastgmm._bayesian`; each class declares its files itself (its
``model_schema()``, a :class:`fastgmm._schema.ModelSchema` whose ``format``
is its key here; the suite checks that they agree).
"""

from __future__ import annotations

import importlib

#: ``format`` of a model file -> (module, class name) of its estimator.
MODEL_FORMATS = {
    "fastgmm.GaussianMixture": ("fastgmm._estimator", "GaussianMixture"),
    "fastgmm.BayesianGaussianMixture": ("fastgmm._bayesian", "BayesianGaussianMixture"),
}


def model_class(fmt: str) -> type:
    """The estimator class of the files of format ``fmt`` (a key of :data:`MODEL_FORMATS`)."""
    module, name = MODEL_FORMATS[fmt]
    return getattr(importlib.import_module(module), name)


def registered_class(model) -> type | None:
    """The registered estimator class ``model`` is an instance of (nearest first), or None.

    Found on the type's method resolution order by module and name, so that
    nothing is imported (a subclass saves as the estimator it derives from).
    """
    registered = set(MODEL_FORMATS.values())
    for cls in type(model).__mro__:
        if (cls.__module__, cls.__qualname__) in registered:
            return cls
    return None
