"""Variational Bayesian Gaussian mixtures on the EM kernels and loop.

The variational E-step of a Bayesian Gaussian mixture (Bishop 2006,
section 10.2; Blei & Jordan 2006 for the Dirichlet process) is the ordinary
E-step with other per-component constants::

    log rho_ik = E[log pi_k] + 1/2 E[log |Lambda_k|] - d/2 log(2 pi)
                 - d / (2 beta_k) - nu_k / 2 (x_i - m_k)^T W_k (x_i - m_k)

With the covariances stored as scikit-learn stores them,
``Sigma_k = W_k^{-1} / nu_k``, the kernels' Mahalanobis term of
``precisions_cholesky`` is exactly ``nu_k (x - m_k)^T W_k (x - m_k)``; so
:class:`VariationalParams` only overrides
:meth:`~fastgmm._params.GaussianParams.log_norm`, and the same kernels, the
same chunked statistics (:class:`~fastgmm._stats.SuffStats`) and the same
loop (:func:`fastgmm._em.run_em`, with :class:`VariationalModel` as its
model) fit the variational posterior.  Every data source works unchanged.

The variational M-step reads ``n_k``, the means and the scatter of the
responsibilities off the statistics (``SuffStats.moments``, as
scikit-learn's ``_estimate_gaussian_parameters``), and the lower bound needs
``sum_i w_i sum_k r_ik log r_ik``, which :meth:`VariationalModel.lower_bound`
rebuilds from the same statistics (no ``n x k`` array).  Formulas follow
Bishop (2006), eqs. 10.58-10.63 and 10.71-10.77, normalised as scikit-learn's
``BayesianGaussianMixture`` does, so that from the same start both give the
same iterates to round-off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._covariance import family
from ._estimator import FitStart, _MixtureBase
from ._init import Initializer, weighted_mean_var
from ._params import (
    _LOG_2PI,
    GaussianParams,
    precisions_cholesky_from_covariances,
)
from ._schema import (
    CONSISTENCY_ULPS,
    FIT_ATTRIBUTES,
    FLOAT64,
    GAUSSIAN_ARRAYS,
    ArrayField,
    AttributeField,
    Layout,
    ModelSchema,
    ParamArrayField,
    check_gaussian_values,
    is_int,
    is_positive,
    short_repr,
)
from ._stats import NK_EPS, SuffStats, add_to_diagonal
from ._validation import (
    check_finite_array,
    check_float,
    check_positive_rows,
    check_random_state,
)

#: Accepted values of ``weight_concentration_prior_type``.
PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")

#: Weight above which a component counts as effective
#: (``n_effective_components_``).
EFFECTIVE_WEIGHT_THRESHOLD = 1e-2

_LOG_2 = math.log(2.0)


def _special():
    """:mod:`scipy.special`, imported on first use so that ``import fastgmm`` stays cheap."""
    from scipy import special

    return special


def mixture_weights(weight_concentration: np.ndarray, prior_type: str) -> np.ndarray:
    """Expected mixture weights of the variational posterior, normalised.

    ``weight_concentration`` is ``(2, k)`` (Beta parameters of the
    stick-breaking proportions) for the Dirichlet process, ``(k,)``
    (Dirichlet parameters) otherwise.
    """
    if prior_type == "dirichlet_process":
        a, b = weight_concentration
        total = a + b
        # E[v_k] prod_{j<k} (1 - E[v_j]): the stick-breaking weights.
        w = a / total * np.hstack((1.0, np.cumprod(b / total)[:-1]))
        return w / w.sum()
    return weight_concentration / weight_concentration.sum()


@dataclass
class VariationalParams(GaussianParams):
    """Variational posterior of a Bayesian Gaussian mixture.

    A :class:`~fastgmm._params.GaussianParams` (``weights`` the expected
    weights, ``means`` the posterior means ``m_k``, ``covariances`` ``W_k^{-1}
    / nu_k``) whose :meth:`log_norm` gives the constants of the variational
    E-step, so that the kernels compute ``log rho_ik``.

    Attributes
    ----------
    weight_concentration : ndarray
        ``(2, k)`` Beta parameters (Dirichlet process) or ``(k,)`` Dirichlet
        parameters.
    mean_precision : ndarray (k,)
        ``beta_k``.
    degrees_of_freedom : ndarray
        ``nu_k``, shape ``(k,)``, or ``()`` for the tied type.
    prior_type : {'dirichlet_process', 'dirichlet_distribution'}
    """

    weight_concentration: np.ndarray
    mean_precision: np.ndarray
    degrees_of_freedom: np.ndarray
    prior_type: str

    def expected_log_weights(self) -> np.ndarray:
        """``E[log pi_k]`` under the variational posterior, shape (k,)."""
        digamma = _special().digamma
        conc = self.weight_concentration
        if self.prior_type == "dirichlet_process":
            a, b = conc
            dg_sum = digamma(a + b)
            # E[log v_k] + sum_{j<k} E[log(1 - v_j)] (Blei & Jordan 2006).
            return digamma(a) - dg_sum + np.hstack((0.0, np.cumsum(digamma(b) - dg_sum)[:-1]))
        return digamma(conc) - digamma(conc.sum())

    def log_norm(self) -> np.ndarray:
        """Per-component constants of ``log rho_ik``, shape (k,).

        ``E[log pi_k] + 1/2 E[log |Lambda_k|] - d/2 log(2 pi) - d / (2 beta_k)``
        with ``E[log |Lambda_k|] = sum_i digamma((nu_k - i) / 2) + d log 2 +
        log |W_k|`` (Bishop 2006, eq. 10.65), and ``log |W_k| = 2 log det
        U_k - d log nu_k`` for the factor ``U_k`` of ``nu_k W_k``.
        """
        d = self.n_features
        nu = np.broadcast_to(np.asarray(self.degrees_of_freedom, dtype=np.float64),
                             (self.n_components,))
        digamma_sum = _special().digamma(0.5 * (nu - np.arange(d)[:, None])).sum(axis=0)
        half_log_det = self.log_det_chol() - 0.5 * d * np.log(nu)
        return (self.expected_log_weights() + half_log_det + 0.5 * (d * _LOG_2 + digamma_sum)
                - 0.5 * d / self.mean_precision - 0.5 * d * _LOG_2PI)

    def copy(self) -> VariationalParams:
        return VariationalParams(
            self.covariance_type, self.weights.copy(), self.means.copy(),
            self.covariances.copy(), self.precisions_cholesky.copy(),
            self.weight_concentration.copy(), self.mean_precision.copy(),
            np.array(self.degrees_of_freedom, copy=True), self.prior_type)


@dataclass
class Priors:
    """Resolved priors of a Bayesian Gaussian mixture (float64).

    Attributes
    ----------
    covariance_type, prior_type : str
    weight_concentration : float
        ``gamma`` (Dirichlet process) or ``alpha_0`` (Dirichlet).
    mean_precision : float
        ``beta_0``.
    mean : ndarray (d,)
        ``m_0``.
    degrees_of_freedom : float
        ``nu_0``.
    covariance : ndarray or float
        ``W_0^{-1}``: ``(d, d)`` full and tied, ``(d,)`` diag, a float spherical.
    """

    covariance_type: str
    prior_type: str
    weight_concentration: float
    mean_precision: float
    mean: np.ndarray
    degrees_of_freedom: float
    covariance: np.ndarray | float


class VariationalModel:
    """The model of :class:`BayesianGaussianMixture` for :func:`fastgmm._em.run_em`.

    Parameters
    ----------
    priors : Priors
    total_weight : float, optional
        Total sample weight of the data; the initial M-step (:meth:`initial_m_step`)
        scales the statistics of an initialisation sample up to it.
    """

    #: What the verbose messages call the lower bound.
    bound_name = "lower bound"

    def __init__(self, priors: Priors, total_weight: float | None = None):
        self.priors = priors
        self.total_weight = total_weight

    def m_step(self, stats: SuffStats, reg_covar: float,
               iteration: int = 0) -> VariationalParams:
        """Variational M-step (Bishop 2006, eqs. 10.58, 10.60-10.63; scikit-learn's).

        ``n_k`` is raised by :data:`~fastgmm._stats.NK_EPS` and ``reg_covar``
        added to the diagonal of each scatter ``S_k``, as scikit-learn's
        ``_estimate_gaussian_parameters`` does.
        """
        p = self.priors
        ctype = stats.covariance_type
        nk = stats.nk + NK_EPS
        _, xk, sk = stats.moments()
        sk = add_to_diagonal(sk, ctype, reg_covar)
        if p.prior_type == "dirichlet_process":
            # Beta(1 + n_k, gamma + sum_{j > k} n_j) for each stick proportion.
            tail = np.hstack((np.cumsum(nk[::-1])[-2::-1], 0.0))
            conc = np.stack((1.0 + nk, p.weight_concentration + tail))
        else:
            conc = p.weight_concentration + nk
        beta = p.mean_precision + nk
        means = (p.mean_precision * p.mean + nk[:, None] * xk) / beta[:, None]
        diff = xk - p.mean
        cov, nu = family(ctype).wishart_update(p.covariance, sk, nk, diff, p.mean_precision,
                                               beta, p.degrees_of_freedom)
        prec_chol = precisions_cholesky_from_covariances(cov, ctype)
        return VariationalParams(ctype, mixture_weights(conc, p.prior_type), means, cov,
                                 prec_chol, conc, beta, nu, p.prior_type)

    def initial_m_step(self, stats: SuffStats, reg_covar: float,
                       iteration: int = 0) -> VariationalParams:
        """The M-step of the initial responsibilities.

        Statistics of an initialisation sample are scaled to the total weight
        of the data first, so that the initial posterior is as concentrated
        as one fitted on all rows (a factor of exactly 1 when the sample is
        all rows).
        """
        if self.total_weight is not None and stats.weight > 0 \
                and stats.weight != self.total_weight:
            stats = stats.scale(self.total_weight / stats.weight)
        return self.m_step(stats, reg_covar, iteration)

    def lower_bound(self, stats: SuffStats, old: VariationalParams,
                    new: VariationalParams) -> float:
        """Variational lower bound (up to constants) after an iteration, as scikit-learn's.

        scikit-learn's ``_compute_lower_bound``: ``-sum_i w_i sum_k r_ik log
        r_ik`` of the E-step under ``old``, minus the log normalisers of the
        Wishart and weight distributions and ``d/2 sum_k log beta_k`` under
        ``new``.  A total, not a per-sample mean.

        The entropy term comes from the statistics: with ``log r_ik = log
        rho_ik - log Z_i`` and ``log rho_ik = c_k - maha_ik / 2``,
        ``sum_i w_i sum_k r_ik log r_ik = sum_k (n_k c_k - M_k / 2) -
        sum_i w_i log Z_i``, where ``sum_i w_i log Z_i`` is the statistics'
        ``log_likelihood`` and ``M_k = sum_i w_i r_ik maha_ik`` follows from
        the second moments (:func:`mahalanobis_total`).  The kernels store
        responsibilities below ``exp(-50)`` of a row's largest as zeros; each
        such entry changes ``r log r`` by under ``50 exp(-50) ~ 1e-20``, and
        ``sum_k r_ik`` (used for the tied type) by as little, far below the
        float64 rounding of the total.
        """
        c = old.log_norm()
        entropy_part = float(stats.nk @ c - 0.5 * mahalanobis_total(stats, old)
                             - stats.log_likelihood)
        special = _special()
        d = new.n_features
        k = new.n_components
        nu = np.broadcast_to(np.asarray(new.degrees_of_freedom, dtype=np.float64), (k,))
        # scikit-learn's log det of the factor of W_k (its ``_log_wishart_norm``
        # drops the constant log(pi) term, and so does this).
        log_det_w = new.log_det_chol() - 0.5 * d * np.log(nu)
        log_wishart = -np.sum(
            nu * log_det_w + nu * d * 0.5 * _LOG_2
            + special.gammaln(0.5 * (nu - np.arange(d)[:, None])).sum(axis=0))
        conc = new.weight_concentration
        if new.prior_type == "dirichlet_process":
            log_norm_weight = -np.sum(special.betaln(conc[0], conc[1]))
        else:
            log_norm_weight = special.gammaln(conc.sum()) - special.gammaln(conc).sum()
        return float(-entropy_part - log_wishart - log_norm_weight
                     - 0.5 * d * np.sum(np.log(new.mean_precision)))


def mahalanobis_total(stats: SuffStats, params: GaussianParams) -> float:
    """``sum_k sum_i w_i r_ik (x_i - mu_k)^T P_k (x_i - mu_k)`` from the statistics.

    ``params`` are the parameters the statistics were computed with.  About
    a shift ``c_k``, ``sum_i w_i r_ik (x_i - mu_k)(x_i - mu_k)^T = s_k -
    t_k delta_k^T - delta_k t_k^T + n_k delta_k delta_k^T`` with ``delta_k =
    mu_k - c_k`` (zero but for the tied type, whose statistics are about one
    common shift); its trace against ``P_k`` is the sum.  For the tied type
    the scatter ``s`` carries no responsibilities, which is enough because
    ``sum_k r_ik = 1`` and the precision is shared.
    """
    fam = family(stats.covariance_type)
    if not fam.shared and not np.array_equal(stats.shift, params.means):
        stats = stats.recenter(params.means)
    return fam.mahalanobis_total(stats.shift, stats.nk, stats.t, stats.s, params.means,
                                 params.precisions)


def data_moments(source, X_sample: np.ndarray, w_sample: np.ndarray | None,
                 full: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """Total weight, mean and scatter of all rows of ``source``, in one pass.

    One E-step with a single component gives ``n = sum_i w_i``, ``t = sum_i
    w_i (x_i - c)`` and ``s = sum_i w_i (x_i - c)(x_i - c)^T`` (its diagonal
    unless ``full``) about a shift ``c``: the mean of the initialisation
    sample, so that ``t`` is small and the scatter keeps its digits.  Works
    for every source (in memory, out of core, Dask).

    Returns
    -------
    total_weight : float
    mean : ndarray (d,)
    scatter : ndarray
        ``sum_i w_i (x_i - mean)(x_i - mean)^T``, ``(d, d)`` when ``full``,
        else its diagonal ``(d,)``.
    """
    centre, var = weighted_mean_var(X_sample, w_sample)
    scale = np.where(var > 0, var, 1.0)
    ctype = "full" if full else "diag"
    cov = np.diag(scale)[None] if full else scale[None]
    one = GaussianParams.from_covariances(ctype, np.ones(1), centre[None], cov)
    stats = source.stats(one)
    n, t = stats.nk[0], stats.t[0]
    mean = stats.shift[0] + t / n
    if full:
        scatter = stats.s[0] - np.outer(t, t) / n
        scatter = 0.5 * (scatter + scatter.T)
    else:
        scatter = stats.s[0] - t * t / n
    return float(stats.weight), mean, scatter


class BayesianGaussianMixture(_MixtureBase):
    """Variational Bayesian Gaussian mixture, on fastgmm's EM kernels.

    Follows scikit-learn's ``BayesianGaussianMixture`` (same parameters,
    defaults, methods and fitted attributes; from the same start, the same
    iterates to round-off) and adds sample weights, data out of memory and
    on Dask, thread control and per-iteration callbacks.  Components the data
    do not need get weights near zero; ``n_effective_components_`` counts the
    others.

    Parameters
    ----------
    n_components : int, default=1
        Most components; the fit may leave some (nearly) unused.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    tol : float, default=1e-3
        Convergence threshold on the change of the lower bound (a total over
        the samples, as in scikit-learn) between iterations.
    reg_covar : float, default=1e-6
        Added to the diagonal of every scatter matrix at every M-step.
    max_iter : int, default=100
    n_init : int, default=1
        Initialisations; the one with the highest lower bound is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        How the initial responsibilities are chosen (as in
        :class:`fastgmm.GaussianMixture`); the variational M-step then
        estimates the initial posterior.
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}, \
default='dirichlet_process'
        Stick-breaking (truncated Dirichlet process) or finite Dirichlet
        prior on the weights.
    weight_concentration_prior : float, optional
        ``gamma`` (Dirichlet process) or ``alpha_0`` (Dirichlet); default
        ``1 / n_components``.  Smaller values favour fewer components.
    mean_precision_prior : float, optional
        ``beta_0``; default 1.
    mean_prior : array-like of shape (n_features,), optional
        ``m_0``; default the (weighted) mean of ``X``.
    degrees_of_freedom_prior : float, optional
        ``nu_0 > n_features - 1``; default ``n_features``.
    covariance_prior : float or array-like, optional
        ``W_0^{-1}``: ``(d, d)`` full and tied, ``(d,)`` diag, a float
        spherical.  Default: the (weighted) covariance of ``X`` (its diagonal
        for diag, the mean variance for spherical), with ``ddof=1``.
    random_state : int, RandomState or Generator, optional
    warm_start : bool, default=False
        Start from the previous fit's posterior (one initialisation).
    verbose : int, default=0
    verbose_interval : int, default=10
    n_threads : int, optional
        Numba threads for each call; results do not depend on it.
    callback : callable, optional
        ``callback(info)`` after each iteration with a
        :class:`fastgmm.IterationInfo` (``lower_bound`` is the variational
        bound); returning ``True`` stops that run.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Expected weights under the posterior.
    means_ : ndarray of shape (n_components, n_features)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        ``W_k^{-1} / nu_k``, its inverse and the factor of the inverse.
    weight_concentration_ : tuple of two ndarrays or ndarray
        Beta parameters (Dirichlet process) or Dirichlet parameters.
    mean_precision_ : ndarray of shape (n_components,)
    degrees_of_freedom_ : ndarray of shape (n_components,), or float (tied)
    weight_concentration_prior_ : float
    mean_precision_prior_ : float
    mean_prior_ : ndarray of shape (n_features,)
    degrees_of_freedom_prior_ : float
    covariance_prior_ : ndarray or float
        The priors used, float64 (defaults resolved from the data).
    n_effective_components_ : int
        Components of weight above 0.01 (see :meth:`effective_components`).
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Variational lower bound (a total, up to constants) of the best run.
    lower_bounds_ : list of float
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    Notes
    -----
    ``fit(X, sample_weight=w)`` weighs every sample in every statistic, in
    the default priors and in the lower bound, so that an integer weight
    ``m`` counts a row ``m`` times (scikit-learn's estimator takes no
    weights).  The default ``covariance_prior`` then divides by the total
    weight minus one.  ``predict``, ``predict_proba``, ``score_samples`` and
    ``score`` use the variational log-densities ``log rho_ik``, as
    scikit-learn's do.  Fitted parameters keep the dtype of float32 data.

    Examples
    --------
    >>> import numpy as np, fastgmm
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(size=(400, 2)), rng.normal(size=(400, 2)) + 10.0]
    >>> model = fastgmm.BayesianGaussianMixture(n_components=5, random_state=0,
    ...                                         max_iter=500).fit(X)
    >>> model.n_effective_components_
    2
    >>> sorted(np.bincount(model.predict(X)).tolist())[-2:]
    [400, 400]
    """

    def __init__(self, n_components: int = 1, *, covariance_type: str = "full",
                 tol: float = 1e-3, reg_covar: float = 1e-6, max_iter: int = 100,
                 n_init: int = 1, init_params: str = "kmeans",
                 weight_concentration_prior_type: str = "dirichlet_process",
                 weight_concentration_prior=None, mean_precision_prior=None,
                 mean_prior=None, degrees_of_freedom_prior=None, covariance_prior=None,
                 random_state=None, warm_start: bool = False, verbose: int = 0,
                 verbose_interval: int = 10, n_threads: int | None = None,
                 callback: Callable | None = None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_threads = n_threads
        self.callback = callback

    # ------------------------------------------------------------------
    # validation and priors
    # ------------------------------------------------------------------

    def _check_params(self) -> None:
        self._check_common_params()
        if not family(self.covariance_type).variational:
            raise ValueError(f"covariance_type={self.covariance_type!r} has no variational "
                             "M-step; BayesianGaussianMixture takes 'full', 'tied', 'diag' or "
                             "'spherical' (or their mclust names VVV, EEE, VVI, VII)")
        if self.weight_concentration_prior_type not in PRIOR_TYPES:
            raise ValueError(f"weight_concentration_prior_type must be one of {PRIOR_TYPES}, "
                             f"got {self.weight_concentration_prior_type!r}")
        for name in ("weight_concentration_prior", "mean_precision_prior",
                     "degrees_of_freedom_prior"):
            value = getattr(self, name)
            if value is not None:
                check_float(value, name, 0.0, strict=True)

    def _resolve_priors(self, n_features: int, moments: Callable) -> Priors:
        """Priors with their defaults; ``moments()`` gives the data's (one pass, once)."""
        d, ctype = n_features, self.covariance_type
        k = self.n_components
        if self.degrees_of_freedom_prior is None:
            dof = float(d)
        else:
            dof = float(self.degrees_of_freedom_prior)
            if not dof > d - 1.0:
                raise ValueError(f"degrees_of_freedom_prior must be greater than {d - 1} "
                                 f"(n_features - 1), got {dof}")
        if self.mean_prior is not None:
            mean = check_finite_array(self.mean_prior, "mean_prior", (d,))
        else:
            mean = moments()[1]
        if self.covariance_prior is not None:
            cov = self._check_covariance_prior(d)
        else:
            weight, _, scatter = moments()
            if not weight > 1.0:
                raise ValueError(
                    "the default covariance_prior (the covariance of X, ddof=1) cannot be "
                    f"estimated from one sample (total sample weight {weight:g}); give "
                    "covariance_prior")
            cov = family(ctype).prior_from_scatter(scatter / (weight - 1.0))
            cov = _proper_prior(ctype, cov, float(self.reg_covar))
        wcp = self.weight_concentration_prior
        return Priors(ctype, self.weight_concentration_prior_type,
                      1.0 / k if wcp is None else float(wcp),
                      1.0 if self.mean_precision_prior is None
                      else float(self.mean_precision_prior), mean, dof, cov)

    def _check_prior_params(self, d: int) -> None:
        """Check the prior parameters that need ``n_features`` (those the data do not give)."""
        if self.degrees_of_freedom_prior is not None:
            dof = float(self.degrees_of_freedom_prior)
            if not dof > d - 1.0:
                raise ValueError(f"degrees_of_freedom_prior must be greater than {d - 1} "
                                 f"(n_features - 1), got {dof}")
        if self.mean_prior is not None:
            check_finite_array(self.mean_prior, "mean_prior", (d,))
        if self.covariance_prior is not None:
            self._check_covariance_prior(d)

    def _check_covariance_prior(self, d: int):
        fam, value = family(self.covariance_type), self.covariance_prior
        shape = fam.prior_shape(d)
        if not shape:
            return check_float(value, "covariance_prior", 0.0, strict=True)
        cov = check_finite_array(value, "covariance_prior", shape)
        fam.check_user_spd(cov, "covariance_prior", shape_of_one=True)
        return cov

    # ------------------------------------------------------------------
    # parameters
    # ------------------------------------------------------------------

    def _fitted_prior_type(self) -> str:
        """The weight prior type of the fitted posterior (as :meth:`_fitted_covariance_type`)."""
        return getattr(self, "_fit_prior_type", None) or self.weight_concentration_prior_type

    def _params(self) -> VariationalParams:
        """The fitted posterior as float64 :class:`VariationalParams`, shapes checked.

        As :meth:`fastgmm.GaussianMixture._params`: every path to a kernel
        goes through here, so fitted attributes of inconsistent shapes are
        refused with a ``ValueError`` before any kernel reads them.
        """
        ctype, arrays = self._checked_arrays()
        k = arrays["means_"].shape[0]
        prior_type = self._fitted_prior_type()
        if prior_type not in PRIOR_TYPES:
            raise ValueError(f"weight_concentration_prior_type must be one of {PRIOR_TYPES}, "
                             f"got {prior_type!r}")
        conc_shape = (2, k) if prior_type == "dirichlet_process" else (k,)
        expected = {"weight_concentration_": conc_shape, "mean_precision_": (k,),
                    "degrees_of_freedom_": family(ctype).dof_shape(k)}
        for name, shape in expected.items():
            arrays[name] = self._fitted_array(name)
            if arrays[name].shape != shape:
                raise ValueError(f"the fitted attributes are inconsistent: {name} has shape "
                                 f"{arrays[name].shape}, but {k} components with "
                                 f"{ctype} covariances and a {prior_type} prior need {shape}")
        return VariationalParams(
            ctype, arrays["weights_"], arrays["means_"], arrays["covariances_"],
            arrays["precisions_cholesky_"], np.array(arrays["weight_concentration_"]),
            np.array(arrays["mean_precision_"]), np.array(arrays["degrees_of_freedom_"]),
            prior_type)

    def _check_continues(self, params: VariationalParams, what: str, remedy: str) -> None:
        """As the base class, and the weight prior type must match the fit too."""
        super()._check_continues(params, what, remedy)
        if self.weight_concentration_prior_type != params.prior_type:
            raise ValueError(f"{what}: weight_concentration_prior_type is "
                             f"{self.weight_concentration_prior_type!r} but the model was "
                             f"fitted with {params.prior_type!r}; {remedy}, or set "
                             f"weight_concentration_prior_type={params.prior_type!r} again")

    def _set_fitted(self, params: VariationalParams, dtype) -> None:
        self._fit_covariance_type = params.covariance_type
        self._fit_prior_type = params.prior_type
        self.weights_ = params.weights.astype(dtype)
        self.means_ = params.means.astype(dtype)
        self.covariances_ = params.covariances.astype(dtype)
        self.precisions_cholesky_ = params.precisions_cholesky.astype(dtype)
        self.precisions_ = params.precisions.astype(dtype)
        conc = params.weight_concentration.astype(dtype)
        self.weight_concentration_ = (conc[0], conc[1]) if conc.ndim == 2 else conc
        self.mean_precision_ = params.mean_precision.astype(dtype)
        nu = np.asarray(params.degrees_of_freedom)
        self.degrees_of_freedom_ = nu.astype(dtype) if nu.ndim else np.dtype(dtype).type(nu)
        self.n_effective_components_ = int(
            np.count_nonzero(params.weights > EFFECTIVE_WEIGHT_THRESHOLD))

    def _store_fit_state(self, priors: Priors) -> None:
        self.weight_concentration_prior_ = priors.weight_concentration
        self.mean_precision_prior_ = priors.mean_precision
        self.mean_prior_ = priors.mean
        self.degrees_of_freedom_prior_ = priors.degrees_of_freedom
        self.covariance_prior_ = priors.covariance

    # ------------------------------------------------------------------
    # model files
    # ------------------------------------------------------------------

    @classmethod
    def model_schema(cls) -> ModelSchema:
        """The declaration of this estimator's model files (see ``fastgmm._schema``)."""
        return BAYESIAN_MIXTURE_SCHEMA

    def _file_state(self):
        """As the base class, and the weight prior type must still be that of the fit."""
        state = super()._file_state()
        if state is not None:
            prior_type = state[0].prior_type
            if self.weight_concentration_prior_type != prior_type:
                raise ValueError(
                    f"cannot save: the model was fitted with a {prior_type!r} weight prior, "
                    f"but its parameters now say weight_concentration_prior_type="
                    f"{self.weight_concentration_prior_type!r}; fit it again, or set it "
                    "back first")
        return state

    def _restore_fitted(self, layout: Layout, arrays: dict, attributes: dict) -> None:
        """As the base class, then the estimator's own forms of the posterior and priors."""
        super()._restore_fitted(layout, arrays, attributes)
        # The estimator's own forms: a tuple of the two Beta parameter arrays,
        # scalars for the tied degrees of freedom and the spherical prior.
        self._fit_prior_type = self.weight_concentration_prior_type
        conc = self.weight_concentration_
        if conc.ndim == 2:
            self.weight_concentration_ = (conc[0], conc[1])
        if self.degrees_of_freedom_.ndim == 0:
            self.degrees_of_freedom_ = self.degrees_of_freedom_[()]
        if self.covariance_prior_.ndim == 0:
            self.covariance_prior_ = float(self.covariance_prior_)

    def save(self, path) -> None:
        """Write the fitted model to a file that :func:`fastgmm.load` reads.

        The format of :meth:`fastgmm.GaussianMixture.save`, with the
        ``format`` ``"fastgmm.BayesianGaussianMixture"``.

        Parameters
        ----------
        path : str or path-like
        """
        from ._io import save

        save(self, path)

    def effective_components(self, threshold: float = EFFECTIVE_WEIGHT_THRESHOLD) -> np.ndarray:
        """Indices of the components of weight above ``threshold``, heaviest first.

        Parameters
        ----------
        threshold : float, default=0.01

        Returns
        -------
        ndarray of int
        """
        w = self._params().weights
        threshold = check_float(threshold, "threshold", 0.0)
        order = np.argsort(-w, kind="stable")
        return order[w[order] > threshold]

    # ------------------------------------------------------------------
    # fitting (the hooks of the base class's template)
    # ------------------------------------------------------------------

    def _fit_start(self, source, estep, warm: bool, init_args) -> FitStart:
        """The variational model of the resolved priors; initial posteriors from the data."""
        k, d = self.n_components, source.n_features
        rng = check_random_state(self.random_state)
        # The sample drawn for the initialisation also centres the pass
        # that gives the data's moments (the sample leaves rng untouched).
        xs, ws = source.sample(rng, estep)
        if not warm:
            check_positive_rows(xs, ws, k, whole=xs.shape[0] == source.n_samples)
        cache = []

        def moments():
            if not cache:
                cache.append(data_moments(source, xs, ws,
                                          family(self.covariance_type).data_scatter_full))
            return cache[0]

        priors = self._resolve_priors(d, moments)
        model = VariationalModel(priors, moments()[0])
        if warm:
            return FitStart(model, state=priors)
        initializer = Initializer(xs, ws, k, self.covariance_type, self.init_params,
                                  float(self.reg_covar), repair=model.initial_m_step)
        return FitStart(model, initializer, rng, state=priors)


def _proper_prior(ctype: str, cov, reg_covar: float):
    """The data's covariance as a Wishart prior: ``reg_covar`` added where it is singular.

    Data on a subspace (duplicated points, a constant feature) have a
    singular covariance, which is no proper Wishart scale: an empty
    component's posterior covariance would be singular too.  Then, and only
    then, ``reg_covar`` (or ``1e-6`` times the mean variance when it is 0)
    is added to its diagonal, which keeps every posterior covariance
    positive definite; a positive definite one is used as it is (as
    scikit-learn does).
    """
    from ._degenerate import SINGULAR_FACTOR

    arr = np.asarray(cov, dtype=np.float64)
    if family(ctype).is_spd(arr, SINGULAR_FACTOR, np.finfo(np.float64).eps):
        return cov
    diagonal = np.diagonal(arr) if arr.ndim == 2 else arr
    amount = reg_covar if reg_covar > 0 else 1e-6 * max(float(np.mean(diagonal)), 1e-300)
    if arr.ndim == 2:
        return arr + amount * np.eye(arr.shape[0])
    return type(cov)(arr + amount) if arr.ndim == 0 else arr + amount


def _layout_options(params: dict, bad) -> dict:
    """The weight prior type a file's stored parameters name (it shapes the concentrations)."""
    value = params.get("weight_concentration_prior_type", PRIOR_TYPES[0])
    if value not in PRIOR_TYPES:
        bad(f"weight_concentration_prior_type must be one of {PRIOR_TYPES}, got "
            f"{short_repr(value)}")
    return {"prior_type": value}


def _prior_covariance_shape(layout: Layout) -> tuple:
    """``covariance_prior_``: ``(d, d)`` full and tied, ``(d,)`` diag, ``()`` spherical."""
    return family(layout.covariance_type).prior_shape(layout.n_features)


def _check_file_values(layout: Layout, arrays: dict, attributes: dict, bad) -> None:
    """The posterior and the priors of a BayesianGaussianMixture file (all finite already).

    Concentrations and mean precisions positive, degrees of freedom (of the
    posterior and of the prior) greater than ``n_features - 1``, the
    covariance prior symmetric and positive definite (positive for diag and
    spherical), at most ``n_components`` effective components.
    """
    d, k = layout.n_features, layout.n_components
    for name in ("weight_concentration_", "mean_precision_"):
        if not (arrays[name] > 0).all():
            bad(f"{name} has an entry that is not positive")
    if not (arrays["degrees_of_freedom_"].astype(np.float64) > d - 1).all():
        bad(f"degrees_of_freedom_ has an entry not greater than {d - 1} (n_features - 1)")
    dof_prior = attributes.get("degrees_of_freedom_prior_")
    if dof_prior is not None and not dof_prior > d - 1:
        bad(f"degrees_of_freedom_prior_={dof_prior!r} is not greater than {d - 1} "
            "(n_features - 1)")
    cov = arrays["covariance_prior_"]
    if cov.ndim == 2:
        if not np.abs(cov - cov.T).max() <= d * CONSISTENCY_ULPS * np.finfo(np.float64).eps \
                * np.abs(cov).max():
            bad("covariance_prior_ is not symmetric")
        if not np.linalg.eigvalsh(cov)[0] > 0:
            bad("covariance_prior_ is not positive definite")
    elif not (cov > 0).all():
        bad("covariance_prior_ is not positive")
    n_effective = attributes.get("n_effective_components_", 0)
    if not n_effective <= k:
        bad(f"n_effective_components_={n_effective} is more than the {k} components")
    _check_posterior_usable(layout, arrays, bad)


def _check_posterior_usable(layout: Layout, arrays: dict, bad) -> None:
    """The posterior must give finite scores, and ``weights_`` must be its weights.

    Finite but extreme values (a concentration of 1e308, a mean precision of
    5e-324) pass the sign checks yet make the expected log-weights or the
    per-component constants of the E-step infinite or NaN, so that every row
    would score ``-inf``; they are refused.  ``weights_`` is what the file
    says the expected weights are: it must equal those the concentrations
    give (which ``predict`` uses) within ``CONSISTENCY_ULPS * k * eps`` of
    the model's dtype.
    """
    k = layout.n_components
    prior_type = layout.options["prior_type"]
    conc = arrays["weight_concentration_"].astype(np.float64)
    with np.errstate(all="ignore"):
        expected = mixture_weights(conc, prior_type)
        if not (np.isfinite(expected).all() and (expected > 0).all()):
            bad("weight_concentration_ gives weights that are not finite and positive")
        params = VariationalParams(
            layout.covariance_type, expected, arrays["means_"].astype(np.float64),
            arrays["covariances_"].astype(np.float64),
            arrays["precisions_cholesky_"].astype(np.float64), conc,
            arrays["mean_precision_"].astype(np.float64),
            np.asarray(arrays["degrees_of_freedom_"], dtype=np.float64), prior_type)
        log_weights = params.expected_log_weights()
        log_norm = params.log_norm()
    if not np.isfinite(log_weights).all():
        bad("weight_concentration_ holds values too extreme for the expected log-weights "
            "to be finite")
    if not np.isfinite(log_norm).all():
        bad("the posterior (mean_precision_, degrees_of_freedom_, weight_concentration_) "
            "holds values too extreme for the scores to be finite")
    eps = np.finfo(np.dtype(layout.dtype)).eps
    weights = arrays["weights_"].astype(np.float64)
    gap = float(np.abs(weights - expected).max())
    if not gap <= CONSISTENCY_ULPS * k * eps:
        bad(f"weights_ differs from the weights that weight_concentration_ gives by {gap:.3g} "
            f"(at most {CONSISTENCY_ULPS * k * eps:.3g} allowed)")


#: What the model files of :class:`BayesianGaussianMixture` hold: the Gaussian
#: arrays and the posterior in the model's dtype (the Dirichlet process's Beta
#: parameters stacked as (2, k), the tied degrees of freedom as a 0-d array),
#: the resolved priors in float64 (the spherical covariance prior as a 0-d
#: array), the scalar priors and the count of effective components as
#: attributes (no n_steps_: there is no online EM).
BAYESIAN_MIXTURE_SCHEMA = ModelSchema(
    format="fastgmm.BayesianGaussianMixture",
    arrays=GAUSSIAN_ARRAYS + (
        ArrayField("weight_concentration_", lambda lay: (
            (2, lay.n_components) if lay.options["prior_type"] == "dirichlet_process"
            else (lay.n_components,))),
        ArrayField("mean_precision_", lambda lay: (lay.n_components,)),
        ArrayField("degrees_of_freedom_", lambda lay: (
            family(lay.covariance_type).dof_shape(lay.n_components))),
        ArrayField("mean_prior_", lambda lay: (lay.n_features,), FLOAT64),
        ArrayField("covariance_prior_", _prior_covariance_shape, FLOAT64),
    ),
    attributes=FIT_ATTRIBUTES + (
        AttributeField("weight_concentration_prior_", is_positive, "a positive finite number"),
        AttributeField("mean_precision_prior_", is_positive, "a positive finite number"),
        AttributeField("degrees_of_freedom_prior_", is_positive, "a positive finite number"),
        AttributeField("n_effective_components_", lambda v: is_int(v) and v >= 0,
                       "a non-negative integer"),
    ),
    param_arrays=(
        ParamArrayField("mean_prior", lambda lay: (lay.n_features,)),
        # A spherical covariance prior is a number, stored with the JSON parameters.
        ParamArrayField("covariance_prior", lambda lay: (
            _prior_covariance_shape(lay) or None)),
    ),
    value_checks=(_check_file_values, check_gaussian_values),
    layout_options=_layout_options,
    fitted=lambda model: model._file_state(),
    check_params=lambda model: model._check_file_params(),
    check_array_params=lambda model, n_features: model._check_prior_params(n_features),
    restore=lambda model, layout, arrays, attributes: model._restore_fitted(
        layout, arrays, attributes),
)
