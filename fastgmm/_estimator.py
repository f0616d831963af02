"""The scikit-learn-style estimator and the one-call :func:`fit`.

Thin by design: it validates parameters, turns what it is given into a data
source (:mod:`fastgmm._sources`), and hands the work to :mod:`fastgmm._init`,
:mod:`fastgmm._em` and :mod:`fastgmm._compute`.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _em, _exceptions, _missing, _sources
from ._covariance import family
from ._degenerate import ON_DEGENERATE, DegenerateRepair
from ._estep import COMPLETE, EStep, block_stats
from ._init import INIT_METHODS, Initializer
from ._missing import check_missing_option, estep_for
from ._parallel import thread_limit
from ._params import GaussianParams, check_covariance_type, covariance_shape
from ._schema import (
    FIT_ATTRIBUTES,
    GAUSSIAN_ARRAYS,
    AttributeField,
    Layout,
    ModelSchema,
    ParamArrayField,
    check_gaussian_values,
    is_int,
    no_layout_options,
)
from ._stats import SuffStats
from ._validation import (
    NaNError,
    check_array,
    check_finite_array,
    check_float,
    check_int,
    check_positive_rows,
    check_random_state,
    check_sample_weight,
    feature_names,
)

_FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_")


#: The default of ``set_fit_request``'s arguments: leave the request as it is
#: (the value of scikit-learn's ``metadata_routing.UNCHANGED``).
_UNCHANGED = "$UNCHANGED$"



class _Requests(dict):
    """``{method: request}`` of ``set_fit_request`` and the like.

    Held as ``_metadata_request``, the attribute scikit-learn's ``clone``
    carries over to a clone, through this ``__sklearn_clone__``.
    """

    def __sklearn_clone__(self) -> _Requests:
        return _Requests(self)


@dataclass
class FitStart:
    """How one fit starts: what a mixture's :meth:`_MixtureBase._fit_start` hook returns.

    Attributes
    ----------
    model : object
        The EM model for :func:`fastgmm._em.run_em` (``m_step``,
        ``lower_bound``, ``bound_name``), such as
        :class:`fastgmm._em.MaximumLikelihood`.
    initializer : callable, optional
        ``initializer(rng) -> params``, the start of each restart (see
        :class:`fastgmm._init.Initializer`); None for a warm start.
    rng : RandomState, optional
        Draws the seeds of the restarts; None for a warm start.
    state : object, optional
        What the estimator keeps of this fit besides the EM result, handed
        to its :meth:`_MixtureBase._store_fit_state` hook once the fit succeeds.
    """

    model: Any
    initializer: Callable | None = None
    rng: np.random.RandomState | None = None
    state: Any = None


class _MixtureBase:
    """What the mixture estimators share: the estimator protocol, validation,
    the fit, the per-point outputs and the model files.

    :meth:`fit` is one template (:meth:`_fit`): check the parameters, make the
    data source, check there are enough rows, decide on a warm start, run EM
    (or its restarts) and store the result.  Subclasses define ``__init__``,
    ``_check_params``, ``_params`` (the fitted parameters as
    :class:`GaussianParams`, whose ``log_norm`` gives the per-component
    constants of the per-point outputs), ``_set_fitted`` and the hooks of the
    template:

    ``_fit_estep()``
        The E-step of the fit (:mod:`fastgmm._estep`); default complete data.
    ``_fit_init_args(n_features)``
        The user-given initial arguments, checked (before the warm start is
        decided); default None.
    ``_fit_start(source, estep, warm, init_args)``
        A :class:`FitStart`: the EM model and, unless ``warm``, the
        initializer of the restarts and the generator of their seeds.
    ``_store_fit_state(state)``
        Keep ``FitStart.state`` once the fit succeeded; default nothing.

    Each subclass also declares its model files: ``model_schema()`` returns
    its :class:`~fastgmm._schema.ModelSchema`, whose callables use
    :meth:`_file_state`, :meth:`_check_file_params` and
    :meth:`_restore_fitted`.
    """

    # ------------------------------------------------------------------
    # scikit-learn estimator protocol
    # ------------------------------------------------------------------

    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as scikit-learn's ``get_params``."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params) -> _MixtureBase:
        """Set constructor parameters; returns ``self``."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}; "
                                 f"valid parameters are {valid}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in
                    inspect.signature(type(self).__init__).parameters.values()}
        changed = []
        for name in self._get_param_names():
            value = getattr(self, name)
            if not _same_value(value, defaults.get(name)):
                changed.append(f"{name}={_short_repr(value)}")
        return f"{type(self).__name__}({', '.join(changed)})"

    #: scikit-learn estimator checks that cannot pass by design, each with the
    #: reason; a test suite passes them to scikit-learn's
    #: ``parametrize_with_checks(expected_failed_checks=...)`` (see
    #: :meth:`_sklearn_expected_failed_checks`), which still runs them and
    #: fails if one starts to pass.
    _SKLEARN_EXPECTED_FAILURES = {
        "check_sample_weight_equivalence_on_dense_data": (
            "an integer weight counts a row that many times in every EM statistic, but "
            "the random initialisation cannot see the same rows: the check shuffles the "
            "weighted rows, so k-means++ draws (and hence the local optimum EM reaches) "
            "differ from those on the repeated rows. From the same initial parameters "
            "weighted and repeated rows give the same fit (tested in the suite)."),
    }

    @classmethod
    def _sklearn_expected_failed_checks(cls) -> dict[str, str]:
        """``{check name: reason}`` for scikit-learn's checks that fail by design."""
        return dict(cls._SKLEARN_EXPECTED_FAILURES)

    def __sklearn_tags__(self):
        # Only called by scikit-learn itself, so importing it here costs
        # nothing to users without it.
        from sklearn.base import BaseEstimator, DensityMixin

        class _Probe(DensityMixin, BaseEstimator):
            pass

        tags = _Probe().__sklearn_tags__()
        tags.non_deterministic = False
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return all(hasattr(self, a) for a in _FITTED)

    # ------------------------------------------------------------------
    # scikit-learn's metadata routing
    # ------------------------------------------------------------------

    #: The methods whose ``sample_weight`` scikit-learn's meta-estimators may
    #: route here, under ``sklearn.set_config(enable_metadata_routing=True)``.
    _ROUTED_METHODS = ("fit", "partial_fit", "score")

    def set_fit_request(self, *, sample_weight=_UNCHANGED):
        """Request ``sample_weight`` for ``fit`` under scikit-learn's metadata routing.

        As scikit-learn's own estimators: ``True`` passes the meta-estimator's
        ``sample_weight`` to :meth:`fit`, ``False`` does not, ``None`` (the
        default) raises if one is given, a string routes the metadata of
        that name.  Needs no scikit-learn until a meta-estimator asks.

        Parameters
        ----------
        sample_weight : bool, None or str

        Returns
        -------
        self
        """
        return self._set_request("fit", sample_weight)

    def set_partial_fit_request(self, *, sample_weight=_UNCHANGED):
        """As :meth:`set_fit_request`, for ``partial_fit``."""
        return self._set_request("partial_fit", sample_weight)

    def set_score_request(self, *, sample_weight=_UNCHANGED):
        """As :meth:`set_fit_request`, for ``score``."""
        return self._set_request("score", sample_weight)

    def _set_request(self, method: str, value):
        if isinstance(value, str) and value == _UNCHANGED:
            return self
        if not (value is None or isinstance(value, (bool, str))):
            raise TypeError(f"set_{method}_request: sample_weight must be True, False, None "
                            f"or a string alias, got {value!r}")
        # scikit-learn's clone copies this attribute to the clone.
        requests = _Requests(getattr(self, "_metadata_request", None) or {})
        requests[method] = value
        self._metadata_request = requests
        return self

    def get_metadata_routing(self):
        """The metadata this estimator requests (a scikit-learn ``MetadataRequest``).

        Called by scikit-learn's meta-estimators under metadata routing;
        imports scikit-learn then, never before.
        """
        from sklearn.utils.metadata_routing import MetadataRequest

        requests = MetadataRequest(owner=self)
        asked = getattr(self, "_metadata_request", None) or {}
        for method in self._ROUTED_METHODS:
            getattr(requests, method).add_request(param="sample_weight",
                                                  alias=asked.get(method))
        return requests

    # ------------------------------------------------------------------
    # validation helpers
    # ------------------------------------------------------------------

    def _check_common_params(self) -> None:
        """Check the parameters every mixture shares (in this order)."""
        check_int(self.n_components, "n_components", 1)
        check_covariance_type(self.covariance_type)
        check_float(self.tol, "tol", 0.0)
        check_float(self.reg_covar, "reg_covar", 0.0)
        check_int(self.max_iter, "max_iter", 0)
        check_int(self.n_init, "n_init", 1)
        if self.init_params not in INIT_METHODS:
            raise ValueError(f"init_params must be one of {INIT_METHODS}, "
                             f"got {self.init_params!r}")
        check_int(self.verbose, "verbose", 0)
        check_int(self.verbose_interval, "verbose_interval", 1)
        check_int(self.n_threads, "n_threads", 1, allow_none=True)
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise TypeError(f"warm_start must be a bool, got {self.warm_start!r}")
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be callable, got {self.callback!r}")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            # scikit-learn's own text, which its tests and users' code match.
            raise _exceptions.NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator.")

    def _validate_predict_X(self, X, n_features: int, allow_nan: bool = False,
                            call: str = "predict") -> np.ndarray:
        """``X`` checked against the fitted model (``n_features`` from :meth:`_params`)."""
        names = feature_names(X)
        fitted_names = getattr(self, "feature_names_in_", None)
        if names is not None and fitted_names is not None and (
                len(names) != len(fitted_names) or not (names == fitted_names).all()):
            raise ValueError("X has feature names that differ from those seen in fit: "
                             f"{list(names)} vs {list(fitted_names)}")
        return check_array(X, n_features=n_features, estimator=type(self).__name__,
                           allow_nan=allow_nan, nan_hint=self._nan_hint(call))

    def _fitted_covariance_type(self) -> str:
        """The covariance type of the fitted arrays.

        Scikit-learn's convention is that fitted attributes describe the last
        fit whatever ``set_params`` changed since, so predictions, scores and
        samples use the type the arrays were fitted with rather than the
        ``covariance_type`` parameter (which only the next fit reads).
        """
        return getattr(self, "_fit_covariance_type", None) or self.covariance_type

    def _fitted_dtype(self) -> np.dtype:
        """float32 for a model fitted on float32 data, else float64."""
        is_f32 = np.asarray(self.means_).dtype == np.float32
        return np.dtype(np.float32 if is_f32 else np.float64)

    def _checked_arrays(self) -> tuple[str, dict[str, np.ndarray]]:
        """The fitted covariance type and the Gaussian fitted arrays (float64), shapes checked.

        Every path to a kernel goes through here (by way of :meth:`_params`):
        kernels index the arrays by the shape of the means, so fitted
        attributes that disagree in shape (set by hand, or restored by other
        means than :func:`fastgmm.load`) must be refused before a kernel could
        read outside them.

        Raises
        ------
        NotFittedError
            Not fitted.
        ValueError
            The fitted attributes are not real arrays of mutually consistent
            shapes for ``n_features_in_`` and the fitted covariance type.
        """
        self._check_fitted()
        ctype = self._fitted_covariance_type()
        check_covariance_type(ctype)
        arrays = {}
        for name in _FITTED:
            arrays[name] = self._fitted_array(name)
        means = arrays["means_"]
        if means.ndim != 2 or 0 in means.shape:
            raise ValueError(f"the fitted attributes are inconsistent: means_ has shape "
                             f"{means.shape}, expected (n_components, n_features)")
        k, d = means.shape
        n_in = getattr(self, "n_features_in_", d)
        if (isinstance(n_in, (bool, np.bool_)) or not isinstance(n_in, numbers.Integral)
                or n_in != d):
            raise ValueError(f"the fitted attributes are inconsistent: n_features_in_ is "
                             f"{n_in!r} but means_ has {d} features")
        cov_shape = covariance_shape(ctype, k, d)
        for name, shape in (("weights_", (k,)), ("covariances_", cov_shape),
                            ("precisions_cholesky_", cov_shape)):
            if arrays[name].shape != shape:
                raise ValueError(f"the fitted attributes are inconsistent: {name} has shape "
                                 f"{arrays[name].shape}, but {ctype} covariances with means_ "
                                 f"of shape {means.shape} need {shape}")
        return ctype, arrays

    def _fitted_array(self, name: str) -> np.ndarray:
        """The fitted attribute ``name`` as a float64 array, refused unless real numbers."""
        try:
            arr = np.asarray(getattr(self, name))
        except Exception:  # ragged lists, odd objects
            arr = np.empty(0, dtype=object)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"the fitted attribute {name} is not a real array")
        return arr.astype(np.float64, copy=False)

    def _check_continues(self, params: GaussianParams, what: str, remedy: str) -> None:
        """Raise unless ``n_components`` and ``covariance_type`` still match the fit.

        Continuing a fit (``warm_start``, ``partial_fit``) starts from the
        fitted arrays, which cannot serve another number of components or
        covariance type; an error says so instead of a silent cold start.
        """
        if self.covariance_type != params.covariance_type:
            raise ValueError(f"{what}: covariance_type is {self.covariance_type!r} but the "
                             f"model was fitted with {params.covariance_type!r} covariances; "
                             f"{remedy}, or set covariance_type={params.covariance_type!r} "
                             "again")
        if self.n_components != params.n_components:
            raise ValueError(f"{what}: n_components is {self.n_components!r} but the model "
                             f"was fitted with {params.n_components} components; {remedy}, "
                             f"or set n_components={params.n_components} again")

    # ------------------------------------------------------------------
    # fitting
    # ------------------------------------------------------------------

    def fit(self, X, y=None, sample_weight=None) -> _MixtureBase:
        """Estimate the model parameters with EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or data out of memory
            float32 data stays float32 in the fitted parameters.  Also
            accepted, read block by block with the same EM loop: a ``.npy``
            path or :class:`numpy.memmap` (:class:`fastgmm.MemmapSource`), a
            callable returning a fresh iterator of chunks per pass
            (:class:`fastgmm.IterableSource`), a Dask array, or such a source
            built explicitly to set its block and sample sizes.  These
            initialise on a uniform sample of at most 100,000 rows.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights; an integer weight ``m`` counts a row ``m``
            times.

        Returns
        -------
        self
        """
        self._fit_advised(X, sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """Fit, then return the most probable component of each row of ``X``."""
        self._fit_advised(X, sample_weight)
        return self.predict(X)

    def _warm(self, n_features: int) -> bool:
        """Whether this fit continues the previous one (``warm_start``)."""
        warm = bool(self.warm_start) and self.__sklearn_is_fitted__()
        if warm:
            params = self._params()
            if params.n_features != n_features:
                raise ValueError(f"warm_start: X has {n_features} features, but the model "
                                 f"was fitted with {params.n_features}")
            self._check_continues(params, "warm_start",
                                  "set warm_start=False to fit afresh")
        return warm

    def _nan_hint(self, call: str) -> str:
        """The advice of the NaN error of ``call`` (``'fit'``, ``'predict'``).

        A mixture without a missing-data option advises imputing; the
        Gaussian mixture names the option that applies to the call.
        """
        return (f" ({type(self).__name__} has no missing-data option: impute the "
                "missing values, or drop the rows that hold them)")

    def _fit_advised(self, X, sample_weight) -> None:
        """:meth:`_fit`, with NaN errors advising what applies to this estimator."""
        try:
            self._fit(X, sample_weight)
        except NaNError as exc:
            raise exc.advise(self._nan_hint("fit")) from None

    def _fit(self, X, sample_weight) -> None:
        """Validate, initialise (or warm-start), run EM, store the result.

        The one fit of every mixture (``fit``, ``fit_predict``, the first
        ``partial_fit``); the subclass supplies its hooks (see the class
        docstring).
        """
        # Nothing is changed before the fit succeeds: a rejected fit leaves
        # the fitted and the online-EM state as they were.
        self._check_params()
        estep = self._fit_estep()
        source = _sources.make_source(X, sample_weight, estep)
        source.validate(estep)
        k, d = self.n_components, source.n_features
        _check_enough_rows(source.n_samples, k)
        init_args = self._fit_init_args(d)
        warm = self._warm(d)
        with thread_limit(self.n_threads):
            start = self._fit_start(source, estep, warm, init_args)
            em_kwargs = dict(tol=float(self.tol), max_iter=int(self.max_iter),
                             reg_covar=float(self.reg_covar), verbose=int(self.verbose),
                             verbose_interval=int(self.verbose_interval),
                             callback=self.callback, model=start.model, estep=estep)
            if warm:
                result = _em.run_em(source, self._params(),
                                    prev_lower_bound=self.lower_bound_, **em_kwargs)
            else:
                result = _em.fit_restarts(source, start.initializer, int(self.n_init),
                                          start.rng, **em_kwargs)
        # Chunk iterators learn their row count on the first pass.
        _check_enough_rows(source.n_samples, k)
        self._store_result(result, source)
        self._store_fit_state(start.state)

    def _fit_estep(self) -> EStep:
        """Hook: the E-step of the fit (:mod:`fastgmm._estep`); complete data by default."""
        return COMPLETE

    def _fit_init_args(self, n_features: int) -> Any:
        """Hook: the user-given initial arguments, checked against ``n_features``."""
        return None

    def _fit_start(self, source, estep: EStep, warm: bool, init_args) -> FitStart:
        """Hook: the EM model and, unless ``warm``, how each restart starts."""
        raise NotImplementedError

    def _store_fit_state(self, state) -> None:
        """Hook: keep what :meth:`_fit_start` put in ``FitStart.state``, after a fit."""

    def _store_result(self, result: _em.EMResult, source) -> None:
        """Set the fitted attributes from the kept EM run (a fit starts online EM afresh)."""
        self.__dict__.pop("_online_stats", None)
        self.__dict__.pop("n_steps_", None)
        self._set_fitted(result.params, source.dtype)
        self.converged_ = bool(result.converged)
        self.n_iter_ = int(result.n_iter)
        self.lower_bound_ = float(result.lower_bound)
        self.lower_bounds_ = [float(v) for v in result.lower_bounds]
        self.n_features_in_ = source.n_features
        if source.feature_names is not None:
            self.feature_names_in_ = source.feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        _em.warn_not_converged(result, int(self.max_iter))

    # ------------------------------------------------------------------
    # model files (see model_schema)
    # ------------------------------------------------------------------

    def _file_state(self) -> tuple[GaussianParams, np.dtype] | None:
        """The fitted parameters and dtype a model file stores; None if not fitted.

        (``ModelSchema.fitted``.)  Raises ``ValueError`` when the fitted
        arrays are inconsistent or the constructor parameters no longer
        describe them (the file would contradict itself).
        """
        if not self.__sklearn_is_fitted__():
            return None
        fitted = self._params()  # shapes checked
        if (self.covariance_type != fitted.covariance_type
                or self.n_components != fitted.n_components):
            raise ValueError(
                f"cannot save: the model was fitted with {fitted.n_components} components "
                f"and {fitted.covariance_type!r} covariances, but its parameters now say "
                f"n_components={self.n_components!r}, "
                f"covariance_type={self.covariance_type!r}; fit it again, or set them "
                "back first")
        return fitted, self._fitted_dtype()

    def _check_file_params(self) -> None:
        """Check the constructor parameters a model file holds (``ModelSchema.check_params``)."""
        self._check_params()
        check_random_state(self.random_state)

    @classmethod
    def model_schema(cls) -> ModelSchema:
        """The declaration of this estimator's model files (see ``fastgmm._schema``)."""
        raise NotImplementedError

    def _restore_fitted(self, layout: Layout, arrays: dict, attributes: dict) -> None:
        """Set the fitted state read from a model file (``ModelSchema.restore``)."""
        for name, value in attributes.items():
            setattr(self, name, value)
        for name, value in arrays.items():
            setattr(self, name, value)
        self._fit_covariance_type = layout.covariance_type

    # ------------------------------------------------------------------
    # per-point outputs
    # ------------------------------------------------------------------

    def _marginalize(self, missing) -> bool:
        """Whether per-point outputs treat NaN as missing (``missing`` None: as fitted).

        A model fitted with ``missing='marginalize'`` does by default (as does
        one loaded from a file saved with it); ``missing='marginalize'`` or
        ``'error'`` given to the method decides for that call.
        """
        if missing is None:
            if hasattr(self, "_fit_missing"):
                return bool(self._fit_missing)
            return getattr(self, "missing", "error") == "marginalize"
        marginalize = check_missing_option(missing) == "marginalize"
        if marginalize and not isinstance(self, GaussianMixture):
            # The variational E-step's constants depend on the number of
            # features, so the marginal of a row is not the plug-in one.
            raise ValueError(f"missing='marginalize' is available for GaussianMixture, not "
                             f"{type(self).__name__}; impute the missing values first")
        return marginalize

    def _estep(self, missing=None):
        """The E-step of per-point outputs and statistics (``missing`` as in :meth:`predict`)."""
        return estep_for("marginalize" if self._marginalize(missing) else "error")

    def _point(self, X, missing=None, **what) -> dict:
        """Per-point outputs for ``X`` (lazy Dask arrays for a Dask array)."""
        params = self._params()
        estep = self._estep(missing)
        with thread_limit(self.n_threads):
            return _sources.per_point(
                X, params, params.n_features,
                lambda Xv: self._validate_predict_X(Xv, params.n_features,
                                                    allow_nan=estep.allow_nan),
                estep, **what)

    def predict(self, X, missing: str | None = None) -> np.ndarray:
        """Most probable component of each row, shape (n_samples,).

        A Dask array gives a lazy Dask array, computed block by block.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        missing : {None, 'error', 'marginalize'}, default=None
            ``'marginalize'``: NaN marks a missing entry and a row with NaN
            is scored by the marginal density of its observed entries;
            ``'error'``: NaN raises ``ValueError``; None: as the model was
            fitted (the ``missing`` parameter of the fit).  ``'marginalize'``
            is for :class:`GaussianMixture` only.
        """
        return self._point(X, missing, labels=True)["labels"]

    def predict_proba(self, X, missing: str | None = None) -> np.ndarray:
        """Posterior probability of each component, shape (n_samples, n_components).

        A Dask array gives a lazy Dask array, computed block by block.
        ``missing`` as in :meth:`predict`.
        """
        return self._point(X, missing, resp=True)["resp"]

    def score_samples(self, X, missing: str | None = None) -> np.ndarray:
        """Log density of each row under the model, shape (n_samples,).

        A Dask array gives a lazy Dask array, computed block by block.  With
        ``missing='marginalize'`` (see :meth:`predict`) a row with NaN gets
        the log density of its observed entries.
        """
        return self._point(X, missing, score=True)["score"]

    def score(self, X, y=None, sample_weight=None, missing: str | None = None) -> float:
        """(Weighted) mean log density of the rows of ``X`` (``missing`` as in :meth:`predict`)."""
        scores = self.score_samples(X, missing)
        w = check_sample_weight(sample_weight, scores.shape[0])
        return float(np.average(scores.astype(np.float64), weights=w))

    def sample(self, n_samples: int = 1, random_state=None):
        """Draw samples from the fitted mixture.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, RandomState or Generator, optional
            Defaults to the estimator's ``random_state`` (as scikit-learn).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            Component of each sample, grouped by component.
        """
        p = self._params()
        n_samples = check_int(n_samples, "n_samples", 1)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        k, d = p.n_components, p.n_features
        counts = rng.multinomial(n_samples, p.weights / p.weights.sum())
        parts = []
        for j in range(k):
            z = rng.standard_normal((counts[j], d))
            parts.append(p.means[j] + p.family.sample_noise(z, p.covariances, j))
        X = np.vstack(parts).astype(self._fitted_dtype())
        y = np.repeat(np.arange(k), counts)
        return X, y


class GaussianMixture(_MixtureBase):
    """Gaussian mixture model fitted by EM, with Numba kernels.

    Follows scikit-learn's ``GaussianMixture`` (same parameters, defaults,
    methods and fitted attributes) and adds sample weights, thread control and
    per-iteration callbacks.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : str, default='full'
        One of ``'full'``, ``'tied'``, ``'diag'``, ``'spherical'`` (scikit-learn's)
        or mclust's 14 models. ``'full'``: each component has its own covariance matrix;
        ``'tied'``: one matrix shared by all; ``'diag'``: diagonal matrices;
        ``'spherical'``: one variance per component.  mclust's parsimonious
        models ``'EII'``, ``'VII'``, ``'EEI'``, ``'VEI'``, ``'EVI'``, ``'VVI'``,
        ``'EEE'``, ``'VEE'``, ``'EVE'``, ``'VVE'``, ``'EEV'``, ``'VEV'``,
        ``'EVV'``, ``'VVV'`` constrain the volume, shape and orientation of
        ``Sigma_k = lambda_k D_k A_k D_k^T`` (Equal, Variable or Identity, in
        that order); ``'VII'``, ``'VVI'``, ``'EEE'`` and ``'VVV'`` are
        ``'spherical'``, ``'diag'``, ``'tied'`` and ``'full'`` under mclust's
        names.  Their covariances are stored as those of their evaluation
        kind: ``(k,)`` for EII, ``(k, d)`` for EEI, VEI, EVI, ``(k, d, d)`` for
        the others but EEE (``(d, d)``).  See the guide page
        "Parsimonious covariance models"; with them ``reg_covar`` is added to
        the constrained covariances, so use ``reg_covar=0`` for exact mclust
        estimates, and ``missing='marginalize'`` is not available yet.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean (weighted)
        per-sample log-likelihood between iterations.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance at every M-step.
    max_iter : int, default=100
        EM iterations per initialisation.
    n_init : int, default=1
        Number of initialisations; the one with the highest final lower bound
        is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        How the initial responsibilities are chosen (see Notes).
    weights_init : array-like of shape (n_components,), optional
    means_init : array-like of shape (n_components, n_features), optional
    precisions_init : array-like, optional
        User-given initial parameters; shape ``(k, d, d)`` full, ``(d, d)``
        tied, ``(k, d)`` diag, ``(k,)`` spherical.
    random_state : int, RandomState or Generator, optional
        Seeds initialisation; an int makes every fit reproducible, bit for bit,
        whatever the number of threads.
    warm_start : bool, default=False
        Start from the previous fit's parameters (one initialisation).
        ``n_components`` and ``covariance_type`` must still be those of that
        fit: a ``ValueError`` says so otherwise (set ``warm_start=False`` to
        fit the new structure afresh).
    verbose : int, default=0
        1 prints progress on stderr every ``verbose_interval`` iterations;
        2 prints every iteration.
    verbose_interval : int, default=10
    n_threads : int, optional
        Numba threads for each call (fit, predict, ...); the previous setting
        is restored afterwards.  Default: Numba's current setting.
    callback : callable, optional
        ``callback(info)`` after each EM iteration with a
        :class:`fastgmm.IterationInfo`; returning ``True`` stops that run.
    learning_offset : float, default=10.0
        Online EM (:meth:`partial_fit`): the step size of update ``t`` is
        ``(t + learning_offset) ** (-learning_decay)``; a larger offset damps
        the early updates.
    learning_decay : float, default=0.6
        Online EM: in ``(0.5, 1]`` the updates converge on a stationary
        stream; smaller values (down to 0, a constant step) forget the past
        faster and follow a drifting stream more closely.
    on_degenerate : {'warn', 'raise', 'ignore'}, default='warn'
        What to do when a component becomes degenerate during initialisation
        or EM: empty (no sample explained by it) or collapsed (covariance not
        positive definite, e.g. fewer distinct points than features, or
        rounding on badly scaled data).  ``'warn'`` repairs it and emits a
        :class:`fastgmm.DegenerateDataWarning` naming the component, the
        iteration and the repair: a collapsed component gets a larger
        diagonal regularisation, an empty one is re-seeded at the
        worst-explained sample (split off the heaviest component when the data
        are not in memory).  ``'ignore'`` repairs silently; ``'raise'`` raises
        :class:`fastgmm.DegenerateCovarianceError` instead.
    missing : {'error', 'marginalize'}, default='error'
        ``'error'``: NaN in the data raises ``ValueError``.
        ``'marginalize'``: NaN marks a missing entry, assumed missing at
        random, and EM maximises the likelihood of the observed entries
        exactly: each row's responsibilities come from the marginal density
        of its observed entries, and the M-step uses the conditional means
        and covariances of the missing ones.  The initialisation runs on the
        data with each missing entry replaced by its column's mean.  The
        fitted model then scores rows with NaN by their marginal densities
        (``predict``, ``predict_proba``, ``score_samples``, ``score``).  A
        row with every entry missing, or a feature never observed, raises
        ``ValueError``.  See also :meth:`impute` and :meth:`condition`.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
    precisions_ : ndarray
    precisions_cholesky_ : ndarray
        Upper-triangular factors ``U`` with ``precision = U U^T`` (full,
        tied), or ``1 / sqrt(variance)`` (diag, spherical).
    converged_ : bool
    n_iter_ : int
        Iterations of the best initialisation.
    lower_bound_ : float
        Mean log-likelihood per sample at the last iteration of the best run.
    lower_bounds_ : list of float
        Its history, one value per iteration.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame with string column names.

    Notes
    -----
    Fitted parameters keep the dtype of the training data when it is float32
    (statistics are accumulated in float64 regardless); any other numeric
    input is converted to float64.

    As in scikit-learn, the fitted attributes describe the last fit whatever
    ``set_params`` changed since: ``predict``, ``score``, ``sample`` and the
    criteria keep using the fitted components and covariance type until the
    next ``fit``.  Continuing a fit (``warm_start``, :meth:`partial_fit`)
    after ``n_components`` or ``covariance_type`` changed raises
    ``ValueError``, and so does :meth:`save`.  Every call is validated
    before any state changes, so a rejected call leaves the fitted model and
    the running statistics of online EM as they were.

    ``init_params``: ``'kmeans'`` runs k-means (k-means++ seeding, Lloyd
    iterations) and starts from its hard labels; ``'k-means++'`` and
    ``'random_from_data'`` pick seeds (k-means++ or uniformly among rows) and
    assign every row to the nearest seed; ``'random'`` draws responsibilities
    uniformly.  The first M-step then estimates all parameters.
    """

    def __init__(self, n_components: int = 1, *, covariance_type: str = "full",
                 tol: float = 1e-3, reg_covar: float = 1e-6, max_iter: int = 100,
                 n_init: int = 1, init_params: str = "kmeans", weights_init=None,
                 means_init=None, precisions_init=None, random_state=None,
                 warm_start: bool = False, verbose: int = 0, verbose_interval: int = 10,
                 n_threads: int | None = None, callback: Callable | None = None,
                 learning_offset: float = 10.0, learning_decay: float = 0.6,
                 on_degenerate: str = "warn", missing: str = "error"):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_threads = n_threads
        self.callback = callback
        self.learning_offset = learning_offset
        self.learning_decay = learning_decay
        self.on_degenerate = on_degenerate
        self.missing = missing

    # ------------------------------------------------------------------
    # validation helpers
    # ------------------------------------------------------------------

    def _check_params(self) -> None:
        self._check_common_params()
        if not isinstance(self.on_degenerate, str):
            raise TypeError(f"on_degenerate must be a string, got {self.on_degenerate!r}")
        if self.on_degenerate not in ON_DEGENERATE:
            raise ValueError(f"on_degenerate must be one of {ON_DEGENERATE}, "
                             f"got {self.on_degenerate!r}")
        check_missing_option(self.missing)

    def _check_online_params(self) -> float:
        """Check ``learning_offset`` and ``learning_decay``; returns the decay."""
        check_float(self.learning_offset, "learning_offset", 0.0)
        decay = check_float(self.learning_decay, "learning_decay", 0.0)
        if decay > 1.0:
            raise ValueError(f"learning_decay must be <= 1, got {decay}")
        return decay

    def _check_init_arrays(self, n_features: int):
        k, d, ctype = self.n_components, n_features, self.covariance_type
        weights = means = precisions = None
        if self.weights_init is not None:
            weights = check_finite_array(self.weights_init, "weights_init", (k,))
            if (weights < 0).any() or (weights > 1).any():
                raise ValueError("weights_init must lie in [0, 1]")
            if not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-6):
                raise ValueError(f"weights_init must sum to 1, got {weights.sum():.8g}")
        if self.means_init is not None:
            means = check_finite_array(self.means_init, "means_init", (k, d))
        if self.precisions_init is not None:
            precisions = check_finite_array(self.precisions_init, "precisions_init",
                                            covariance_shape(ctype, k, d))
            family(ctype).check_user_spd(precisions, "precisions_init")
        return weights, means, precisions

    def impute(self, X, random_state=None) -> np.ndarray:
        """Fill the missing (NaN) entries of ``X`` under the fitted mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NaN marks a missing entry; a row may not be entirely missing.
        random_state : int, RandomState or Generator, optional
            None: each missing entry becomes its conditional expectation given
            the row's observed entries, ``sum_k p(k | x_o) E[x_m | x_o, k]``.
            Given: one draw from the conditional distribution of the missing
            entries (a Gaussian mixture), for multiple imputation: call again
            with other seeds for more draws.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            A new array (the dtype of the fitted model); observed entries are
            kept as they are.

        Examples
        --------
        >>> import numpy as np, fastgmm
        >>> rng = np.random.default_rng(0)
        >>> X = rng.multivariate_normal([0, 0], [[1, 0.9], [0.9, 1]], size=2000)
        >>> model = fastgmm.fit(X, 1, random_state=0)
        >>> filled = model.impute([[1.0, np.nan]])
        >>> bool(abs(filled[0, 1] - 0.9) < 0.1)
        True
        """
        params = self._params()
        Xa = self._validate_predict_X(X, params.n_features, allow_nan=True)
        rng = None
        if random_state is not None:
            rng = np.random.default_rng(
                check_random_state(random_state).randint(np.iinfo(np.int32).max))
        with thread_limit(self.n_threads):
            return _missing.impute(Xa, params, rng, out_dtype=self._fitted_dtype())

    def condition(self, X_given, given_features) -> _missing.ConditionalMixture:
        """The conditional distribution of the other features given ``given_features``.

        For each row of ``X_given`` the features not given follow a Gaussian
        mixture again: its weights come from the marginal densities of the
        given values, its means are the components' conditional means and its
        covariances their conditional covariances.

        Parameters
        ----------
        X_given : array-like of shape (n_samples, n_given)
            Values of the given features, in the order of ``given_features``;
            finite.
        given_features : sequence of int or str
            Indices of the given features (or their names, for a model fitted
            on a DataFrame); at least one, and not all.

        Returns
        -------
        ConditionalMixture
            ``weights`` (n_samples, n_components), ``means`` (n_samples,
            n_components, n_targets), ``covariances`` (n_components,
            n_targets, n_targets), ``target_features`` (the other features,
            ascending) and ``predict(return_cov=False)``, the conditional mean
            per row (a regression of the targets on the given features) and
            optionally its covariance.

        Examples
        --------
        >>> import numpy as np, fastgmm
        >>> rng = np.random.default_rng(0)
        >>> X = rng.multivariate_normal([0, 0], [[1, 0.9], [0.9, 1]], size=2000)
        >>> cond = fastgmm.fit(X, 1, random_state=0).condition([[1.0]], [0])
        >>> bool(abs(cond.predict()[0, 0] - 0.9) < 0.1)
        True
        """
        params = self._params()
        d = params.n_features
        given = self._feature_indices(given_features, d)
        Xg = check_array(X_given, name="X_given", n_features=given.size,
                         estimator=type(self).__name__,
                         nan_hint=" (conditioning needs the given values: list only "
                                  "the observed features of such rows in given_features)")
        with thread_limit(self.n_threads):
            return _missing.condition(params, Xg, given)

    def _feature_indices(self, features, n_features: int) -> np.ndarray:
        """Feature indices from indices or names: distinct, at least one, not all."""
        names = getattr(self, "feature_names_in_", None)
        items = [features] if isinstance(features, (str, numbers.Integral)) else list(features)
        idx = []
        for f in items:
            if isinstance(f, str):
                if names is None or f not in list(names):
                    raise ValueError(f"given_features: unknown feature name {f!r}")
                idx.append(list(names).index(f))
            elif isinstance(f, numbers.Integral) and not isinstance(f, (bool, np.bool_)):
                if not 0 <= f < n_features:
                    raise ValueError(f"given_features: feature index {f} is out of range "
                                     f"for {n_features} features")
                idx.append(int(f))
            else:
                raise TypeError(f"given_features must hold ints or names, got {f!r}")
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size == 0 or idx.size >= n_features:
            raise ValueError(f"given_features must name at least one and at most "
                             f"{n_features - 1} of the {n_features} features, got {idx.size}")
        if np.unique(idx).size != idx.size:
            raise ValueError("given_features names a feature twice")
        return idx

    def _params(self) -> GaussianParams:
        """The fitted parameters as float64 :class:`GaussianParams`, shapes checked.

        See :meth:`_checked_arrays`.
        """
        ctype, arrays = self._checked_arrays()
        return GaussianParams(ctype, arrays["weights_"], arrays["means_"],
                              arrays["covariances_"], arrays["precisions_cholesky_"])

    def _set_fitted(self, params: GaussianParams, dtype) -> None:
        self._fit_covariance_type = params.covariance_type
        self.weights_ = params.weights.astype(dtype)
        self.means_ = params.means.astype(dtype)
        self.covariances_ = params.covariances.astype(dtype)
        self.precisions_cholesky_ = params.precisions_cholesky.astype(dtype)
        self.precisions_ = params.precisions.astype(dtype)

    # ------------------------------------------------------------------
    # fitting
    # ------------------------------------------------------------------

    def _fit_estep(self) -> EStep:
        return estep_for(self.missing)

    def _fit_init_args(self, n_features: int):
        return self._check_init_arrays(n_features)

    def _fit_start(self, source, estep: EStep, warm: bool, init_args) -> FitStart:
        """Maximum likelihood with degenerate-component repair.

        The user's initial arrays, the rest from the data (column means for
        missing entries).
        """
        k = self.n_components
        weights_init, means_init, precisions_init = init_args
        repair = DegenerateRepair(self.on_degenerate, source, estep)
        model = _em.MaximumLikelihood(repair)
        if warm:
            return FitStart(model, state=estep.allow_nan)
        rng = check_random_state(self.random_state)
        xs = ws = None
        if any(v is None for v in (weights_init, means_init, precisions_init)):
            xs, ws = source.sample(rng, estep)
            whole = xs.shape[0] == source.n_samples
            check_positive_rows(xs, ws, k, whole=whole)
            if estep.allow_nan:
                # k-means cannot take NaN: start from column means.
                xs = _missing.mean_impute(
                    xs, ws, "X" if whole else "the initialisation sample")
        initializer = Initializer(xs, ws, k, self.covariance_type, self.init_params,
                                  float(self.reg_covar), weights_init, means_init,
                                  precisions_init, repair)
        return FitStart(model, initializer, rng, state=estep.allow_nan)

    def _store_fit_state(self, marginalize: bool) -> None:
        self._fit_missing = marginalize

    @classmethod
    def model_schema(cls) -> ModelSchema:
        """The declaration of this estimator's model files (see ``fastgmm._schema``)."""
        return GAUSSIAN_MIXTURE_SCHEMA

    def _check_file_params(self) -> None:
        self._check_params()
        self._check_online_params()
        check_random_state(self.random_state)

    def _nan_hint(self, call: str) -> str:
        """The missing-data option that applies to ``call``, as NaN-error advice."""
        if call == "fit":
            return " (or fit with missing='marginalize' to treat NaN as missing)"
        if call == "partial_fit":
            return " (or set_params(missing='marginalize') to treat NaN as missing)"
        return " (or pass missing='marginalize' to this call to treat NaN as missing)"

    def _file_attributes(self) -> dict:
        """The fitted missing-data option a model file stores (``ModelSchema.fit_attributes``).

        Per-point outputs follow the option of the fit, not the ``missing``
        parameter as ``set_params`` may have left it, so the file stores it.
        """
        return {"fit_missing_": "marginalize" if self._marginalize(None) else "error"}

    def _restore_fitted(self, layout: Layout, arrays: dict, attributes: dict) -> None:
        """As the base class, and the fitted missing-data option (``missing`` in old files)."""
        attributes = dict(attributes)
        fit_missing = attributes.pop("fit_missing_", self.missing)
        super()._restore_fitted(layout, arrays, attributes)
        self._fit_missing = fit_missing == "marginalize"

    # ------------------------------------------------------------------
    # sufficient statistics and online EM
    # ------------------------------------------------------------------

    def suff_stats(self, X, sample_weight=None) -> SuffStats:
        """Sufficient statistics of ``X`` under the current parameters (an E-step).

        Statistics of different chunks add up (``a + b``, ``sum(...)``); the
        M-step :meth:`apply_stats` turns the total into new parameters.  That
        is one EM iteration, map-reduced on any engine.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NaN marks missing entries when the model was fitted with
            ``missing='marginalize'`` (the exact missing-data E-step).
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        SuffStats

        Examples
        --------
        >>> import numpy as np, fastgmm
        >>> rng = np.random.default_rng(0)
        >>> chunks = [rng.normal(size=(5000, 2)) + 6 * (i % 2) for i in range(8)]
        >>> model = fastgmm.GaussianMixture(2, random_state=0).fit(chunks[0][:500])
        >>> for _ in range(10):
        ...     stats = sum(model.suff_stats(c) for c in chunks)   # map, then reduce
        ...     model = model.apply_stats(stats)                    # M-step
        >>> np.sort(np.round(model.means_[:, 0])).tolist()
        [0.0, 6.0]
        """
        params = self._params()
        estep = self._estep()
        Xa = self._validate_predict_X(X, params.n_features, allow_nan=estep.allow_nan)
        w = check_sample_weight(sample_weight, Xa.shape[0])
        with thread_limit(self.n_threads):
            return block_stats(estep, Xa, w, params)

    def apply_stats(self, stats: SuffStats) -> GaussianMixture:
        """M-step: set the parameters from (merged) sufficient statistics.

        Parameters
        ----------
        stats : SuffStats
            From :meth:`suff_stats` (added up over chunks), or built by any
            other engine with the same layout.

        Returns
        -------
        self
            With ``weights_``, ``means_``, ``covariances_``, ``precisions_``,
            ``precisions_cholesky_`` from ``stats.m_step(reg_covar)`` and
            ``lower_bound_`` the mean log-likelihood the statistics carry
            (that of the parameters they were computed with).
        """
        if not isinstance(stats, SuffStats):
            raise TypeError(f"stats must be a fastgmm.SuffStats, got {type(stats).__name__}")
        if stats.covariance_type != self.covariance_type:
            raise ValueError(f"stats are for covariance_type={stats.covariance_type!r}, the "
                             f"model has {self.covariance_type!r}")
        if stats.nk.shape != (self.n_components,):
            raise ValueError(f"stats have {stats.nk.shape[0]} components, the model has "
                             f"n_components={self.n_components}")
        d = stats.t.shape[1]
        dtype = np.dtype(np.float64)
        if self.__sklearn_is_fitted__():
            fitted = self._params()
            if d != fitted.n_features:
                raise ValueError(f"stats have {d} features, but the model was fitted with "
                                 f"{fitted.n_features} features")
            dtype = self._fitted_dtype()
        check_float(self.reg_covar, "reg_covar", 0.0)
        self._set_fitted(stats.m_step(float(self.reg_covar)), dtype)
        self.lower_bound_ = float(stats.mean_log_likelihood)
        self.n_features_in_ = d
        return self

    def partial_fit(self, X, y=None, sample_weight=None) -> GaussianMixture:
        """One step of online (stepwise) EM on a batch of rows.

        The first call fits the batch with ordinary EM (``init_params``,
        ``n_init``, ``max_iter``, ...) and keeps its per-sample statistics.
        Each later call computes the batch's statistics under the current
        parameters, blends them into the running ones with step size
        ``rho_t = (t + learning_offset) ** (-learning_decay)`` (``t = 1, 2,
        ...``) and takes an M-step (Cappe & Moulines 2009).  Each batch counts
        by its average, whatever its size.  ``fit`` starts afresh; calling
        ``partial_fit`` on a model fitted by ``fit`` continues from its
        parameters, the first batch providing the running statistics.
        Batches are in-memory arrays; changing ``n_components`` or
        ``covariance_type`` between calls raises ``ValueError`` (call ``fit``
        to start afresh).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
            ``n_steps_`` counts the batches seen; ``lower_bound_`` is the
            batch's mean log-likelihood under the parameters before the update.
        """
        from ._online import per_sample, step_size, stepwise_update

        # Everything is validated before any state changes, so a rejected
        # batch leaves the model and its running statistics as they were.
        self._check_params()
        decay = self._check_online_params()
        running = getattr(self, "_online_stats", None)
        estep = estep_for(self.missing)
        if self.__sklearn_is_fitted__() and self._marginalize(None):
            # A batch predict accepts (rows with gaps, as fitted) is accepted
            # too, whatever set_params did to ``missing`` since the fit.
            estep = estep_for("marginalize")

        def batch_stats(Xb, wb, params):
            return block_stats(estep, Xb, wb, params)

        if running is None and not self.__sklearn_is_fitted__():
            # In-memory batches only: the running statistics are computed
            # from the very rows the first fit saw.
            Xa = check_array(X, allow_nan=estep.allow_nan, nan_hint=self._nan_hint("fit"))
            w = check_sample_weight(sample_weight, Xa.shape[0])
            self._fit(_sources.ArraySource(Xa, w, feature_names(X)), None)
            with thread_limit(self.n_threads):
                stats = batch_stats(Xa, w, self._params())
            self._online_stats = per_sample(stats)
            self.n_steps_ = 1
            return self
        params = self._params()
        self._check_continues(params, "partial_fit",
                              "call fit to start afresh")
        Xa = self._validate_predict_X(X, params.n_features, allow_nan=estep.allow_nan,
                                      call="partial_fit")
        w = check_sample_weight(sample_weight, Xa.shape[0])
        step = getattr(self, "n_steps_", 0) if running is not None else 0
        repair = DegenerateRepair(self.on_degenerate, _sources.ArraySource(Xa, w), estep)

        def m_step(stats):
            return repair(stats, float(self.reg_covar), step + 1)

        with thread_limit(self.n_threads):
            if running is None:
                stats = batch_stats(Xa, w, params)
                running, mean_ll = per_sample(stats), stats.mean_log_likelihood
                new = m_step(running)
            else:
                rho = step_size(step, float(self.learning_offset), decay)
                running, new, mean_ll = stepwise_update(
                    running, Xa, w, params, rho, m_step, batch_stats)
        self.n_steps_ = step + 1
        self._online_stats = running
        self._fit_missing = estep.allow_nan
        self._set_fitted(new, self._fitted_dtype())
        self.lower_bound_ = float(mean_ll)
        return self

    # ------------------------------------------------------------------
    # information criteria and model files
    # ------------------------------------------------------------------

    def _total_log_likelihood(self, X, sample_weight):
        scores = self.score_samples(X).astype(np.float64)
        w = check_sample_weight(sample_weight, scores.shape[0])
        if w is None:
            return float(scores.sum()), float(scores.shape[0])
        return float(w @ scores), float(w.sum())

    def _n_parameters(self) -> int:
        self._check_fitted()
        return self._params().n_parameters()

    def bic(self, X, sample_weight=None) -> float:
        """Bayesian information criterion, ``-2 log L + p log n`` (lower is better).

        With ``sample_weight``, ``log L`` is weighted and ``n`` is the total weight.
        """
        ll, n = self._total_log_likelihood(X, sample_weight)
        return -2.0 * ll + self._n_parameters() * np.log(n)

    def aic(self, X, sample_weight=None) -> float:
        """Akaike information criterion, ``-2 log L + 2 p`` (lower is better)."""
        ll, _ = self._total_log_likelihood(X, sample_weight)
        return -2.0 * ll + 2.0 * self._n_parameters()

    def save(self, path) -> None:
        """Write the fitted model to a file that :func:`fastgmm.load` reads.

        The format is an ``.npz`` archive with JSON metadata that needs no
        pickle to load (the user guide's "Model files" page describes it); the
        file appears atomically.

        Parameters
        ----------
        path : str or path-like
            Destination, used as given (``.npz`` is the customary suffix).
        """
        from ._io import save

        save(self, path)


#: What the model files of :class:`GaussianMixture` hold (the user guide's
#: "Model files" page describes the format).
GAUSSIAN_MIXTURE_SCHEMA = ModelSchema(
    format="fastgmm.GaussianMixture",
    arrays=GAUSSIAN_ARRAYS,
    # n_steps_: the batches online EM (partial_fit) has seen.
    attributes=FIT_ATTRIBUTES + (
        AttributeField("n_steps_", lambda v: is_int(v) and v >= 1, "a positive integer"),
        # How the fitted model treats rows with gaps (absent from older files).
        AttributeField("fit_missing_", lambda v: v in ("error", "marginalize"),
                       "'error' or 'marginalize'"),),
    param_arrays=(
        ParamArrayField("weights_init", lambda lay: (lay.n_components,)),
        ParamArrayField("means_init", lambda lay: (lay.n_components, lay.n_features)),
        ParamArrayField("precisions_init", lambda lay: covariance_shape(
            lay.covariance_type, lay.n_components, lay.n_features)),
    ),
    value_checks=(check_gaussian_values,),
    layout_options=no_layout_options,
    fitted=lambda model: model._file_state(),
    check_params=lambda model: model._check_file_params(),
    check_array_params=lambda model, n_features: model._check_init_arrays(n_features),
    restore=lambda model, layout, arrays, attributes: model._restore_fitted(
        layout, arrays, attributes),
    fit_attributes=lambda model: model._file_attributes(),
)


def _check_enough_rows(n_samples: int | None, n_components: int) -> None:
    """At least one row per component (``n_samples`` None: not known yet)."""
    if n_samples is not None and n_samples < n_components:
        raise ValueError(f"X has {n_samples} samples but n_components={n_components}; need "
                         "n_samples >= n_components")


def _same_value(value, default) -> bool:
    """Whether a parameter equals its default, for any value (arrays, frames, objects)."""
    if value is default:
        return True
    if _shape(value) or _shape(default):
        return False  # array-likes compare elementwise; they are never a default
    try:
        return bool(value == default)
    except Exception:  # a value whose == does not give a truth value
        return False


def _shape(value) -> tuple:
    """The shape of an array-like with at least one dimension, else ``()``."""
    shape = getattr(value, "shape", None)
    return shape if isinstance(shape, tuple) else ()


def _short_repr(value) -> str:
    """``repr`` of a parameter, arrays and frames as their type and shape."""
    shape = _shape(value)
    if shape:  # not numpy scalars, whose shape is ()
        name = "array" if isinstance(value, np.ndarray) else type(value).__name__
        return f"{name}(shape={shape})"
    return repr(value)


def fit(X, n_components: int = 1, *, sample_weight=None, **params) -> GaussianMixture:
    """Fit a Gaussian mixture in one call and return the fitted estimator.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int, default=1
    sample_weight : array-like of shape (n_samples,), optional
    **params
        Any :class:`GaussianMixture` parameter (``covariance_type``,
        ``n_init``, ``random_state``, ...).

    Returns
    -------
    GaussianMixture
        Fitted.

    Examples
    --------
    >>> import numpy as np, fastgmm
    >>> X = np.random.default_rng(0).normal(size=(1000, 2))
    >>> model = fastgmm.fit(X, n_components=2, random_state=0)
    >>> model.predict(X).shape
    (1000,)
    """
    return GaussianMixture(n_components=n_components, **params).fit(
        X, sample_weight=sample_weight)
