"""Covariance families: every rule that depends on the covariance type, in one place.

A *family* is one object that knows how its covariances are stored, counted,
factorised, moved, restricted, sampled, tested and updated.  The four of
scikit-learn's types are the entries of :data:`FAMILIES`:

=============  ==========================  ==========================
family         covariances                 precision factors
=============  ==========================  ==========================
``full``       ``(k, d, d)``, one each     upper ``U`` with ``P = U U^T``
``tied``       ``(d, d)``, shared          the same, one for all
``diag``       ``(k, d)``, diagonals       ``1 / sqrt(variance)``
``spherical``  ``(k,)``, one variance      ``1 / sqrt(variance)``
=============  ==========================  ==========================

mclust's 14 parsimonious models (Celeux & Govaert 1995) follow them:
``'EII'`` ... ``'VVV'`` (:data:`MCLUST_MODELS`) evaluate as one of the four
kinds above and store their covariances in its shape (EII as spherical;
EEI, VEI, EVI as diagonal; EEE as tied; the rest as full), differing in
their M-step (:meth:`CovarianceFamily.moments`) and parameter count;
``'VII'``, ``'VVI'``, ``'EEE'`` and ``'VVV'`` are the four families above
under mclust's names.

Everything else asks :func:`family` for the object of a type name and calls
its methods; no other module (but the kernels, their caller
:mod:`fastgmm._compute` and argument validation) compares a type name to a
literal.  A family also names the kernels that evaluate it (:attr:`kind`):
the compiled kernels exist per evaluation kind, and a constrained family
evaluates as one of them and differs only in its M-step.

Adding a family means adding one subclass of :class:`CovarianceFamily` and
its entry in :data:`FAMILIES`.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ._exceptions import DegenerateCovarianceError


def _linalg():
    """``scipy.linalg``, imported on first use so that ``import fastgmm`` stays cheap."""
    from scipy import linalg

    return linalg


@functools.cache
def _lapack():
    """Double-precision LAPACK ``potrf`` and ``trtrs``."""
    return _linalg().get_lapack_funcs(("potrf", "trtrs"), (np.empty((1, 1)),))


def load_lapack() -> None:
    """Load scipy's LAPACK (and the BLAS behind it) into the process."""
    _lapack()


def upper_factor(p: np.ndarray) -> np.ndarray:
    """Upper-triangular ``U`` with ``U @ U.T == p`` (``p`` SPD)."""
    # Reverse rows and columns, take the lower Cholesky factor, reverse back:
    # J L J is upper triangular and (J L J)(J L J)^T = J (J p J) J = p.
    rev = p[::-1, ::-1]
    lower = _linalg().cholesky(rev, lower=True)
    return np.ascontiguousarray(lower[::-1, ::-1])


#: Of the two halves of a split component (a Gaussian cut through its mean),
#: the variance along the cut's axis keeps this share (``1 - 2 / pi``).
HALF_VAR = 1.0 - 2.0 / math.pi


class CovarianceFamily:
    """What a covariance family must provide (base class of the four families).

    Attributes
    ----------
    name : str
        The ``covariance_type`` value.
    kind : str
        The evaluation kind of the compiled kernels (``'full'``, ``'tied'``,
        ``'diag'``, ``'spherical'``).
    shared : bool
        One covariance for all components (its arrays have no component axis
        and its statistics one common shift).
    matrix : bool
        Covariances are matrices (else per-feature or single variances).
    pruned : bool
        Its kernels bound every (row, component) pair and skip the negligible
        ones, keeping each row's most probable component between passes
        (per-row hints); such kernels also take the rare missing patterns.
    """

    name: str = ""
    kind: str = ""
    shared: bool = False
    matrix: bool = False
    pruned: bool = False
    #: mclust's name of the model (Celeux & Govaert 1995): volume, shape and
    #: orientation of ``Sigma_k = lambda_k D_k A_k D_k^T``, each Equal,
    #: Variable or Identity.
    mclust: str = ""
    #: Whether :class:`~fastgmm.BayesianGaussianMixture` can fit it (the
    #: variational M-step exists for the four unconstrained families only).
    variational: bool = True

    def __repr__(self) -> str:
        return f"<covariance family {self.name!r}>"

    def __reduce__(self):
        # Families are singletons: a pickled one (in a Dask task) is looked up again.
        return (family, (self.name,))

    # -- shapes and counts ------------------------------------------------

    def cov_shape(self, k: int, d: int) -> tuple:
        """Shape of ``covariances_``, ``precisions_`` and ``precisions_cholesky_``."""
        raise NotImplementedError

    def n_cov_parameters(self, k: int, d: int) -> int:
        """Free parameters of the covariances (BIC, AIC)."""
        raise NotImplementedError

    def stats_shape(self, k: int, d: int) -> tuple:
        """Shape of the second moments ``s`` of :class:`~fastgmm.SuffStats`."""
        raise NotImplementedError

    def n_covariances(self, k: int) -> int:
        """Number of distinct covariances (1 when shared)."""
        return 1 if self.shared else k

    def where(self, j) -> str:
        """How a message names the covariance of component ``j``."""
        return "the tied covariance" if self.shared else f"component {j}"

    def component_index(self, j):
        """The component an error names (None when the covariance is shared)."""
        return None if self.shared else j

    def unit(self, k: int, d: int) -> np.ndarray:
        """Identity covariances for ``k`` components of ``d`` features."""
        raise NotImplementedError

    # -- factorisation ----------------------------------------------------

    def precisions_cholesky(self, cov: np.ndarray) -> np.ndarray:
        """Precision factors from covariances (scikit-learn's convention).

        Raises
        ------
        DegenerateCovarianceError
            When a covariance is not positive definite.
        """
        raise NotImplementedError

    def from_precisions(self, precisions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(precisions_cholesky, covariances)`` from precisions (``precisions_init``)."""
        raise NotImplementedError

    def precisions(self, prec_chol: np.ndarray) -> np.ndarray:
        """Precisions ``U U^T`` (or ``1 / variance``) from their factors."""
        raise NotImplementedError

    def factors_per_component(self, prec_chol: np.ndarray, k: int, d: int) -> np.ndarray:
        """One factor per component: ``(k, d, d)`` matrices, or ``(k, d)`` per feature.

        The missing-data kernels take this form: a shared factor is repeated
        for each component, a single variance's along the features.
        """
        raise NotImplementedError

    def log_det_chol(self, prec_chol: np.ndarray, k: int, d: int) -> np.ndarray:
        """``log det(prec_chol_k)`` per component, shape (k,)."""
        raise NotImplementedError

    # -- statistics -------------------------------------------------------

    def moments(self, shift, nk, t, s) -> tuple[np.ndarray, np.ndarray]:
        """Means and covariances (no ``reg_covar``) from statistics; ``nk`` already raised."""
        raise NotImplementedError

    def recenter(self, shift, new, nk, t, s) -> tuple[np.ndarray, np.ndarray]:
        """``(t, s)`` about the shift ``new`` instead of ``shift`` (exactly)."""
        raise NotImplementedError

    def second_moment_diagonal(self, s: np.ndarray) -> np.ndarray:
        """Per-component, per-feature diagonal of the second moments ``s`` (not shared)."""
        return s

    def feature_variances(self, var: np.ndarray) -> np.ndarray:
        """Per-feature variances of the data as far as the statistics define them."""
        return var

    def mahalanobis_total(self, shift, nk, t, s, means, prec) -> float:
        """``sum_k sum_i w_i r_ik (x_i - mu_k)^T P_k (x_i - mu_k)`` from statistics about ``means``.

        ``shift`` equals ``means`` (recentred by the caller) but for a shared
        covariance, whose statistics keep their common shift.
        """
        raise NotImplementedError

    # -- per-component operations -----------------------------------------

    def add_to_diagonal(self, cov: np.ndarray, amount: float) -> np.ndarray:
        """A copy of ``cov`` (all components, or one) with ``amount`` added to each diagonal."""
        return cov + amount

    def component(self, cov: np.ndarray, j: int) -> np.ndarray:
        """The covariance of component ``j`` (the shared one for a shared family)."""
        return cov if self.shared else cov[j]

    def marginal(self, cov: np.ndarray, features: np.ndarray) -> np.ndarray:
        """The covariances of the marginal mixture on ``features``, in this family."""
        raise NotImplementedError

    def to_full(self, cov: np.ndarray, k: int, d: int) -> np.ndarray:
        """Full ``(k, d, d)`` matrices (a read-only broadcast may be returned)."""
        raise NotImplementedError

    def sample_noise(self, z: np.ndarray, cov: np.ndarray, j: int) -> np.ndarray:
        """Standard normal rows ``z`` turned into draws of component ``j``'s covariance."""
        return z * np.sqrt(cov[j])

    # -- checks -----------------------------------------------------------

    def check_user_spd(self, value: np.ndarray, name: str, shape_of_one: bool = False) -> None:
        """Raise ``ValueError`` unless ``value`` (covariances or precisions) is SPD.

        ``shape_of_one``: ``value`` is one matrix or vector (a prior), not a
        value of :meth:`cov_shape`.
        """
        if not (value > 0).all():
            raise ValueError(f"{name} must be positive")

    def is_spd(self, cov_j: np.ndarray, singular_factor: float, eps: float) -> bool:
        """One component's covariance is positive definite and not singular to rounding."""
        if not np.isfinite(cov_j).all():
            return False
        return bool(np.all(cov_j > 0))

    def check_consistent(self, cov, chol, prec, tol: float, bad) -> None:
        """Call ``bad(message)`` unless covariances, factors and precisions agree (a file's).

        Symmetric positive definite covariances, factors that invert them and
        precisions that are the factors' products, to a relative ``tol``
        (times ``d`` and the condition number where rounding grows with them).
        """
        raise NotImplementedError

    def numerically_singular(self, prec_chol, cov, k: int, tol: float) -> np.ndarray:
        """Components (or the shared covariance) singular to rounding: bool (k,) or (1,).

        Diagonal and spherical covariances are never collinear.
        """
        return np.zeros(k, dtype=bool)

    # -- degenerate components ----------------------------------------------

    def pooled(self, weights, cov, healthy) -> np.ndarray:
        """Weighted average covariance of the healthy components (SPD if they are)."""
        if self.shared:
            return cov
        w = weights[healthy] / weights[healthy].sum()
        return np.tensordot(w, cov[healthy], axes=1)

    def split(self, c: np.ndarray, d: int) -> tuple[float, np.ndarray, np.ndarray]:
        """Principal variance ``lam``, axis ``v`` and the covariance of each half of a split.

        The halves keep the parent's moments: the variance along ``v``
        shrinks to :data:`HALF_VAR` of ``lam``.
        """
        raise NotImplementedError

    # -- variational Bayes ----------------------------------------------------

    def prior_shape(self, d: int) -> tuple:
        """Shape of ``covariance_prior``."""
        raise NotImplementedError

    def prior_from_scatter(self, cov: np.ndarray):
        """The default ``covariance_prior`` from the data covariance (full or diagonal)."""
        return cov

    #: Whether the default prior needs the full scatter of the data (else its diagonal).
    data_scatter_full: bool = False

    def wishart_update(self, prior_cov, sk, nk, diff, mean_precision, beta, dof):
        """Posterior ``(covariances, degrees of freedom)`` of the variational M-step.

        Bishop (2006), eqs. 10.60-10.63, as scikit-learn computes them, with
        ``sk`` the regularised per-component covariances, ``diff = x_k - m_0``.
        """
        raise NotImplementedError

    def dof_shape(self, k: int) -> tuple:
        """Shape of the posterior degrees of freedom."""
        return () if self.shared else (k,)

    # -- missing data -----------------------------------------------------

    def lift_pattern(self, st, params, o: np.ndarray, m: np.ndarray, marg_pc: np.ndarray):
        """Statistics of all features from those of the observed ones ``o`` of a pattern.

        ``st`` are the statistics of the rows' observed columns under the
        marginal mixture (about its means; ``marg_pc`` its precision
        factors).  The conditional mean is affine in ``x_o`` (``x*_m - mu_m
        = B_k (x_o - mu_o)``, ``B_k = Sigma_mo Sigma_oo^{-1}``), so ``t_m =
        B t_o``, ``s_mo = B s_oo`` and ``s_mm = B s_oo B^T + n_k C_k`` with
        ``C_k = Sigma_mm - B_k Sigma_om``.

        Returns
        -------
        shift, t, s : the statistics about the family's shift
        """
        raise NotImplementedError


# ---------------------------------------------------------------------------
# Matrices: full and tied
# ---------------------------------------------------------------------------


class _MatrixFamily(CovarianceFamily):
    """Families whose covariances are matrices, factorised by Cholesky."""

    matrix = True
    data_scatter_full = True

    def _stack(self, a: np.ndarray) -> np.ndarray:
        """The covariances (or factors) as a stack of matrices."""
        return a[None] if self.shared else a

    def _unstack(self, a: np.ndarray) -> np.ndarray:
        return a[0] if self.shared else a

    def precisions_cholesky(self, cov: np.ndarray) -> np.ndarray:
        mats = self._stack(np.asarray(cov, dtype=np.float64))
        d = mats.shape[-1]
        out = np.empty_like(mats)
        eye = np.eye(d)
        # The LAPACK routines behind scipy.linalg.cholesky and solve_triangular,
        # called directly with the same arguments (same bits), because their
        # Python wrappers cost more than the factorisations at small d and
        # this runs at every M-step.
        finite = np.isfinite(mats).all(axis=(1, 2))
        potrf, trtrs = _lapack()
        for j, c in enumerate(mats):
            info = 1
            if finite[j]:
                lower, info = potrf(c, lower=1, overwrite_a=0, clean=1)
            if info != 0:
                raise DegenerateCovarianceError(
                    f"ill-defined empirical covariance for {self.where(j)}: the matrix is "
                    "not positive definite (collapsed component or too few distinct "
                    "points). Increase reg_covar, decrease n_components, or scale the data.",
                    self.component_index(j))
            inv, info = trtrs(lower, eye, overwrite_b=0, lower=1, trans=0, unitdiag=0)
            if info != 0:  # unreachable after a successful potrf; kept as a guard
                raise _linalg().LinAlgError(f"triangular solve failed (info={info})")
            out[j] = inv.T
        return self._unstack(out)

    def from_precisions(self, precisions):
        mats = self._stack(np.asarray(precisions, dtype=np.float64))
        prec_chol = np.empty_like(mats)
        cov = np.empty_like(mats)
        for j, p in enumerate(mats):
            try:
                prec_chol[j] = upper_factor(p)
            except (_linalg().LinAlgError, ValueError):
                where = "" if self.shared else f" (component {j})"
                raise DegenerateCovarianceError(
                    f"precisions_init is not symmetric positive definite{where}",
                    self.component_index(j)) from None
            inv_u = _linalg().solve_triangular(prec_chol[j], np.eye(p.shape[0]), lower=False)
            cov[j] = inv_u.T @ inv_u
        return self._unstack(prec_chol), self._unstack(cov)

    def factors_per_component(self, prec_chol, k, d):
        return np.broadcast_to(prec_chol, (k, d, d))

    def add_to_diagonal(self, cov, amount):
        out = cov.copy()
        d = out.shape[-1]
        out.reshape(-1, d * d)[:, :: d + 1] += amount
        return out

    def sample_noise(self, z, cov, j):
        return z @ np.linalg.cholesky(self.component(cov, j)).T

    def check_user_spd(self, value, name, shape_of_one=False):
        mats = value[None] if (self.shared or shape_of_one) else value
        for j, p in enumerate(mats):
            where = "" if (self.shared or shape_of_one) else f" (component {j})"
            if not np.allclose(p, p.T, rtol=1e-10, atol=1e-12 * np.abs(p).max()):
                raise ValueError(f"{name} is not symmetric{where}")
            if not np.linalg.eigvalsh(p).min() > 0:
                raise ValueError(f"{name} is not positive definite{where}")

    def is_spd(self, cov_j, singular_factor, eps):
        if not np.isfinite(cov_j).all():
            return False
        try:
            lower = np.linalg.cholesky(cov_j)
        except np.linalg.LinAlgError:
            return False
        share = np.diag(lower) ** 2 / np.diag(cov_j)
        return bool(share.min() > singular_factor * cov_j.shape[0] * eps)

    def numerically_singular(self, prec_chol, cov, k, tol):
        pc, cov = self._stack(prec_chol), self._stack(cov)
        # The precision factor is L^-T: its diagonal is 1 / diag(L).
        with np.errstate(all="ignore"):
            share = 1.0 / (np.diagonal(pc, axis1=1, axis2=2) ** 2
                           * np.diagonal(cov, axis1=1, axis2=2))
        return ~(share.min(axis=1) > tol)

    def check_consistent(self, cov, chol, prec, tol, bad) -> None:
        d = cov.shape[-1]
        for j, (c, u, p) in enumerate(zip(self._stack(cov), self._stack(chol),
                                          self._stack(prec), strict=True)):
            where = "" if self.shared else f" (component {j})"
            scale = np.abs(c).max()
            if not np.abs(c - c.T).max() <= d * tol * scale:
                bad(f"covariances_ is not symmetric{where}")
            eig = np.linalg.eigvalsh(c)
            if not eig[0] > 0:
                bad(f"covariances_ is not positive definite{where}")
            if np.tril(u, -1).any() or not (np.diag(u) > 0).all():
                bad(f"precisions_cholesky_ is not upper triangular with a positive "
                    f"diagonal{where}")
            cond = eig[-1] / eig[0]
            residual = np.abs(u.T @ c @ u - np.eye(d)).max()
            if not residual <= d * tol * cond:
                bad(f"precisions_cholesky_ does not match covariances_{where}: U^T Sigma U "
                    f"differs from the identity by {residual:.3g}, more than "
                    f"{d * tol * cond:.3g}")
            uut = u @ u.T
            if not np.abs(p - uut).max() <= d * tol * np.abs(uut).max():
                bad(f"precisions_ is not precisions_cholesky_ times its transpose{where}")

    def split(self, c, d):
        vals, vecs = np.linalg.eigh(c)
        lam, v = float(vals[-1]), vecs[:, -1]
        half = c - (1.0 - HALF_VAR) * lam * np.outer(v, v)
        return lam, v, 0.5 * (half + half.T)

    def prior_shape(self, d):
        return (d, d)


class FullFamily(_MatrixFamily):
    """Each component has its own covariance matrix (mclust's VVV)."""

    name = kind = "full"
    mclust = "VVV"
    pruned = True

    def cov_shape(self, k, d):
        return (k, d, d)

    def n_cov_parameters(self, k, d):
        return k * d * (d + 1) // 2

    def stats_shape(self, k, d):
        return (k, d, d)

    def unit(self, k, d):
        return np.repeat(np.eye(d)[None], k, axis=0)

    def precisions(self, prec_chol):
        return np.einsum("kij,klj->kil", prec_chol, prec_chol)

    def log_det_chol(self, prec_chol, k, d):
        return np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)

    def moments(self, shift, nk, t, s):
        off = t / nk[:, None]
        means = shift + off
        cov = s / nk[:, None, None] - off[:, :, None] * off[:, None, :]
        return means, 0.5 * (cov + np.swapaxes(cov, 1, 2))

    def recenter(self, shift, new, nk, t, s):
        delta = new - shift
        cross = t[:, :, None] * delta[:, None, :]
        s = (s - cross - np.swapaxes(cross, 1, 2)
             + nk[:, None, None] * delta[:, :, None] * delta[:, None, :])
        return t - nk[:, None] * delta, s

    def second_moment_diagonal(self, s):
        return np.diagonal(s, axis1=1, axis2=2)

    def mahalanobis_total(self, shift, nk, t, s, means, prec):
        return float(np.einsum("kij,kij->", prec, s))

    def marginal(self, cov, features):
        return cov[:, features][:, :, features]

    def to_full(self, cov, k, d):
        return cov

    def wishart_update(self, prior_cov, sk, nk, diff, mean_precision, beta, dof):
        nu = dof + nk
        outer = diff[:, :, None] * diff[:, None, :]
        cov = (prior_cov + nk[:, None, None] * sk
               + (nk * mean_precision / beta)[:, None, None] * outer)
        cov /= nu[:, None, None]
        return cov, nu

    def lift_pattern(self, st, params, o, m, marg_pc):
        k, d = params.n_components, params.n_features
        nk = st.nk
        cov = params.covariances
        t = np.zeros((k, d))
        t[:, o] = st.t
        prec_oo = np.einsum("kij,klj->kil", marg_pc, marg_pc)
        s_mo_cov = cov[:, m][:, :, o]
        gain = s_mo_cov @ prec_oo                                    # (k, m, o)
        cond = cov[:, m][:, :, m] - gain @ np.swapaxes(s_mo_cov, 1, 2)
        t[:, m] = np.einsum("kmo,ko->km", gain, st.t)
        s = np.zeros((k, d, d))
        s_mo = gain @ st.s
        s[:, o[:, None], o[None, :]] = st.s
        s[:, m[:, None], o[None, :]] = s_mo
        s[:, o[:, None], m[None, :]] = np.swapaxes(s_mo, 1, 2)
        s_mm = s_mo @ np.swapaxes(gain, 1, 2) + nk[:, None, None] * cond
        s[:, m[:, None], m[None, :]] = 0.5 * (s_mm + np.swapaxes(s_mm, 1, 2))
        return params.means.copy(), t, s


class TiedFamily(_MatrixFamily):
    """One covariance matrix shared by all components (mclust's EEE).

    Its statistics carry the responsibility-free scatter ``sum_i w_i (x_i -
    c)(x_i - c)^T`` about one common shift ``c`` (the weighted mean of the
    means), which is enough because ``sum_k r_ik = 1``.
    """

    name = kind = "tied"
    mclust = "EEE"
    shared = True

    def cov_shape(self, k, d):
        return (d, d)

    def n_cov_parameters(self, k, d):
        return d * (d + 1) // 2

    def stats_shape(self, k, d):
        return (d, d)

    def unit(self, k, d):
        return np.eye(d)

    def precisions(self, prec_chol):
        return prec_chol @ prec_chol.T

    def log_det_chol(self, prec_chol, k, d):
        return np.full(k, np.log(np.diag(prec_chol)).sum())

    def moments(self, shift, nk, t, s):
        means = shift[None, :] + t / nk[:, None]
        cov = (s - (t.T / nk) @ t) / nk.sum()
        return means, 0.5 * (cov + cov.T)

    def recenter(self, shift, new, nk, t, s):
        delta = new - shift
        t_sum = t.sum(axis=0)
        cross = np.outer(t_sum, delta)
        s = s - cross - cross.T + nk.sum() * np.outer(delta, delta)
        return t - nk[:, None] * delta[None, :], s

    def second_moment_diagonal(self, s):
        return np.diag(s)

    def mahalanobis_total(self, shift, nk, t, s, means, prec):
        delta = means - shift[None, :]
        pd = delta @ prec
        return float(np.sum(prec * s) - 2.0 * np.sum(t * pd)
                     + np.sum(nk * np.einsum("kd,kd->k", pd, delta)))

    def marginal(self, cov, features):
        return cov[np.ix_(features, features)]

    def to_full(self, cov, k, d):
        return np.broadcast_to(cov, (k, d, d))

    def wishart_update(self, prior_cov, sk, nk, diff, mean_precision, beta, dof):
        k = nk.shape[0]
        nu = np.float64(dof + nk.sum() / k)
        cov = (prior_cov + sk * nk.sum() / k
               + mean_precision / k * ((nk / beta) * diff.T) @ diff)
        cov /= nu
        return cov, nu

    def lift_pattern(self, st, params, o, m, marg_pc):
        # About the common shift c, with x*_m - c_m = a_k + B (x_o - c_o)
        # (see fastgmm._missing, "Tied covariances").
        k, d = params.n_components, params.n_features
        nk = st.nk
        cov = params.covariances
        shift = params.weights @ params.means
        st = st.recenter(shift[o])
        t = np.zeros((k, d))
        t[:, o] = st.t
        s_mo_cov = cov[np.ix_(m, o)]
        gain = s_mo_cov @ (marg_pc @ marg_pc.T)                      # (m, o)
        cond = cov[np.ix_(m, m)] - gain @ s_mo_cov.T
        a = (params.means[:, m] - shift[m]) - (params.means[:, o] - shift[o]) @ gain.T
        t[:, m] = nk[:, None] * a + st.t @ gain.T
        s = np.zeros((d, d))
        s_mo = a.T @ st.t + gain @ st.s
        s[np.ix_(o, o)] = st.s
        s[np.ix_(m, o)] = s_mo
        s[np.ix_(o, m)] = s_mo.T
        cross = a.T @ (st.t @ gain.T)
        s_mm = ((nk[:, None] * a).T @ a + cross + cross.T + gain @ st.s @ gain.T
                + st.weight * cond)
        s[np.ix_(m, m)] = 0.5 * (s_mm + s_mm.T)
        return shift, t, s


# ---------------------------------------------------------------------------
# Variances: diagonal and spherical
# ---------------------------------------------------------------------------


class _VarianceFamily(CovarianceFamily):
    """Families whose covariances are variances (diagonal matrices)."""

    def stats_shape(self, k, d):
        # Per feature for both: the spherical M-step uses only the sum.
        return (k, d)

    def precisions_cholesky(self, cov):
        cov = np.asarray(cov, dtype=np.float64)
        bad = ~(cov > 0) | ~np.isfinite(cov)
        if np.any(bad):
            j = int(np.argwhere(bad)[0][0])
            raise DegenerateCovarianceError(
                f"ill-defined empirical covariance for component {j}: a variance is zero, "
                "negative or not finite. Increase reg_covar, decrease n_components, or "
                "scale the data.", j)
        return 1.0 / np.sqrt(cov)

    def from_precisions(self, precisions):
        precisions = np.asarray(precisions, dtype=np.float64)
        if np.any(precisions <= 0):
            raise DegenerateCovarianceError("precisions_init must be positive")
        return np.sqrt(precisions), 1.0 / precisions

    def precisions(self, prec_chol):
        return prec_chol ** 2

    def factors_per_component(self, prec_chol, k, d):
        return np.broadcast_to(prec_chol.reshape(k, -1), (k, d))

    def check_consistent(self, cov, chol, prec, tol, bad) -> None:
        if not (cov > 0).all():
            bad("covariances_ has a variance that is not positive")
        if not (chol > 0).all():
            bad("precisions_cholesky_ has an entry that is not positive")
        if not np.abs(chol * chol * cov - 1.0).max() <= tol:
            bad(f"precisions_cholesky_ does not match covariances_ (1 / sqrt(variance) "
                f"within a relative {tol:.1e})")
        if not (np.abs(prec - chol * chol) <= tol * chol * chol).all():
            bad(f"precisions_ is not precisions_cholesky_ squared (within a relative "
                f"{tol:.1e})")

    def recenter(self, shift, new, nk, t, s):
        delta = new - shift
        s = s - 2.0 * delta * t + nk[:, None] * delta ** 2
        return t - nk[:, None] * delta, s


class DiagFamily(_VarianceFamily):
    """Diagonal covariances, one per component (mclust's VVI)."""

    name = kind = "diag"
    mclust = "VVI"

    def cov_shape(self, k, d):
        return (k, d)

    def n_cov_parameters(self, k, d):
        return k * d

    def unit(self, k, d):
        return np.ones((k, d))

    def log_det_chol(self, prec_chol, k, d):
        return np.log(prec_chol).sum(axis=1)

    def moments(self, shift, nk, t, s):
        off = t / nk[:, None]
        return shift + off, s / nk[:, None] - off ** 2

    def mahalanobis_total(self, shift, nk, t, s, means, prec):
        return float(np.sum(prec * s))

    def marginal(self, cov, features):
        return cov[:, features]

    def to_full(self, cov, k, d):
        return np.einsum("kd,de->kde", cov, np.eye(d))

    def split(self, c, d):
        f = int(np.argmax(c))
        lam = float(c[f])
        half = c.copy()
        half[f] = HALF_VAR * lam
        return lam, np.eye(d)[f], half

    def prior_shape(self, d):
        return (d,)

    def wishart_update(self, prior_cov, sk, nk, diff, mean_precision, beta, dof):
        nu = dof + nk
        cov = prior_cov + nk[:, None] * (sk + (mean_precision / beta)[:, None] * diff ** 2)
        cov /= nu[:, None]
        return cov, nu

    def lift_pattern(self, st, params, o, m, marg_pc):
        return _lift_variances(st, params, o, m, params.covariances[:, m])


class SphericalFamily(_VarianceFamily):
    """One variance per component (mclust's VII)."""

    name = kind = "spherical"
    mclust = "VII"

    def cov_shape(self, k, d):
        return (k,)

    def n_cov_parameters(self, k, d):
        return k

    def unit(self, k, d):
        return np.ones(k)

    def log_det_chol(self, prec_chol, k, d):
        return d * np.log(prec_chol)

    def moments(self, shift, nk, t, s):
        off = t / nk[:, None]
        return shift + off, (s / nk[:, None] - off ** 2).mean(axis=1)

    def feature_variances(self, var):
        # Its statistics define only the sum over features.
        return np.full_like(var, var.mean())

    def mahalanobis_total(self, shift, nk, t, s, means, prec):
        return float(np.sum(prec[:, None] * s))

    def marginal(self, cov, features):
        return cov

    def to_full(self, cov, k, d):
        return cov[:, None, None] * np.eye(d)[None]

    def split(self, c, d):
        return float(c), np.eye(d)[0], c

    def prior_shape(self, d):
        return ()

    def prior_from_scatter(self, cov):
        return float(np.mean(cov))

    def wishart_update(self, prior_cov, sk, nk, diff, mean_precision, beta, dof):
        nu = dof + nk
        cov = prior_cov + nk * (sk + mean_precision / beta * np.mean(diff ** 2, 1))
        cov /= nu
        return cov, nu

    def lift_pattern(self, st, params, o, m, marg_pc):
        return _lift_variances(st, params, o, m,
                               np.repeat(params.covariances[:, None], m.size, axis=1))


def _lift_variances(st, params, o, m, var_m):
    """:meth:`CovarianceFamily.lift_pattern` of the variance families (no gain)."""
    k, d = params.n_components, params.n_features
    t = np.zeros((k, d))
    t[:, o] = st.t
    s = np.zeros((k, d))
    s[:, o] = st.s
    s[:, m] = st.nk[:, None] * var_m
    return params.means.copy(), t, s


# ---------------------------------------------------------------------------
# Parsimonious families: mclust's models (Celeux & Govaert 1995)
# ---------------------------------------------------------------------------
#
# ``Sigma_k = lambda_k D_k A_k D_k^T`` with volume ``lambda_k``, shape ``A_k``
# (diagonal, determinant 1) and orientation ``D_k`` (orthogonal), each Equal
# across components, Variable, or the Identity.  A constrained family
# evaluates with the kernels of its kind and stores its covariances in that
# kind's shape; it differs from the kind only in its M-step (the constrained
# maximum-likelihood covariances from every component's scatter
# ``W_k = n_k S_k``) and its parameter count.  The M-steps minimise
# ``sum_k n_k log det Sigma_k + tr(W_k Sigma_k^{-1})``.

#: Relative change (of the scales, shapes or orientation) below which an
#: iterative M-step (VEI, VEE, VEV, EVE, VVE) stops.
MSTEP_TOL = 1e-11

#: Most rounds of an iterative M-step.
MSTEP_MAX_ITER = 2000


def _geomean(v: np.ndarray) -> np.ndarray:
    """Geometric mean along the last axis (0 where an entry is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp(np.mean(np.log(v), axis=-1))


def _usable(x: np.ndarray) -> np.ndarray:
    """Entries that are finite and positive."""
    return np.isfinite(x) & (x > 0)


def _rel_change(new: np.ndarray, old: np.ndarray) -> float:
    scale = np.abs(new).max()
    if not scale > 0:
        return 0.0
    return float(np.abs(new - old).max() / scale)


def _volumes(w_total: np.ndarray, nk: np.ndarray, d: int) -> np.ndarray:
    """``tr(W_k A^{-1}) / (n_k d)`` given the traces; unusable volumes marked 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = w_total / (nk * d)
    return np.where(_usable(lam), lam, 0.0)


def _common_shape(parts: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``sum_k parts_k / lambda_k`` over usable volumes, normalised to determinant 1.

    ``parts`` are per-component diagonals ``(k, d)``.
    """
    ok = lam > 0
    m = (parts[ok] / lam[ok, None]).sum(axis=0)
    return m / _geomean(m)


def _diagonal_objective(parts: np.ndarray, nk: np.ndarray, d: int):
    """``objective(lam)`` of VEI and VEV with the common shape profiled out.

    With ``Sigma_k = lambda_k A`` and ``A`` optimal for ``lam`` (``M = sum_k
    parts_k / lambda_k`` scaled to determinant 1), ``sum_k n_k log det
    Sigma_k + tr(W_k Sigma_k^{-1}) = d (sum_k n_k log lambda_k + g(M))`` with
    ``g`` the geometric mean.
    """
    def objective(lam):
        ok = lam > 0
        m = (parts[ok] / lam[ok, None]).sum(axis=0)
        return d * (nk[ok] @ np.log(lam[ok]) + float(_geomean(m)))

    return objective


def _plain_volumes(step, lam: np.ndarray) -> np.ndarray:
    """``lam <- step(lam)`` until the relative change is below :data:`MSTEP_TOL`."""
    for _ in range(MSTEP_MAX_ITER):
        new = step(lam)
        if not np.isfinite(new).all():
            return np.where(np.isfinite(new), new, 0.0)
        done = _rel_change(new, lam) < MSTEP_TOL
        lam = new
        if done:
            break
    return lam


def _solve_volumes(step, objective, lam: np.ndarray) -> np.ndarray:
    """Fixed point of the alternating volume update ``lam <- step(lam)`` (VEI, VEE, VEV).

    ``step`` profiles the common shape out (the shape optimal for ``lam``,
    then the volumes optimal for that shape); each step lowers ``objective``.
    The iteration is accelerated by SQUAREM (Varadhan & Roland 2008, scheme
    S3) on ``log lam``, keeping an extrapolated point only where it lowers the
    objective at least as much as two plain steps, so the objective still
    decreases at every round.  Stops when the relative change of the volumes
    is below :data:`MSTEP_TOL`.  Zero volumes (components without usable
    scatter) stay zero and out of the shared shape.
    """
    ok = lam > 0
    if not ok.any():
        return lam

    def full(x):
        out = np.zeros_like(lam)
        out[ok] = np.exp(x)
        return out

    def plain(x):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(step(full(x))[ok])

    x = np.log(lam[ok])
    for _ in range(MSTEP_MAX_ITER):
        x1 = plain(x)
        x2 = plain(x1)
        if not (np.isfinite(x1).all() and np.isfinite(x2).all()):
            return _plain_volumes(step, full(x))
        r = x1 - x
        v = x2 - x1 - r
        nv = float(np.sqrt(v @ v))
        nxt = x2
        if nv > 0.0:
            alpha = min(-1.0, -float(np.sqrt(r @ r)) / nv)
            cand = plain(x - 2.0 * alpha * r + alpha * alpha * v)
            if np.isfinite(cand).all() and objective(full(cand)) <= objective(full(x2)):
                nxt = cand
        done = float(np.abs(nxt - x).max()) < MSTEP_TOL
        x = nxt
        if done:
            break
    return full(x)


class _Constrained:
    """Shared behaviour of the constrained (non-scikit-learn) families."""

    variational = False

    def wishart_update(self, prior_cov, sk, nk, diff, mean_precision, beta, dof):
        raise ValueError(f"covariance_type={self.name!r} has no variational M-step; "
                         "BayesianGaussianMixture takes 'full', 'tied', 'diag' or "
                         "'spherical'")


class EIIFamily(_Constrained, SphericalFamily):
    """EII: ``lambda I``, one variance for all components (stored ``(k,)``, equal)."""

    name = mclust = "EII"

    def n_cov_parameters(self, k, d):
        return 1

    def moments(self, shift, nk, t, s):
        means, var = super().moments(shift, nk, t, s)
        lam = (nk * var).sum() / nk.sum()
        return means, np.full_like(var, lam)


class EEIFamily(_Constrained, DiagFamily):
    """EEI: ``lambda A``, one diagonal covariance for all (stored ``(k, d)``, equal rows)."""

    name = mclust = "EEI"

    def n_cov_parameters(self, k, d):
        return d

    def moments(self, shift, nk, t, s):
        means, var = super().moments(shift, nk, t, s)
        pooled = (nk[:, None] * var).sum(axis=0) / nk.sum()
        return means, np.repeat(pooled[None], var.shape[0], axis=0)


class VEIFamily(_Constrained, DiagFamily):
    """VEI: ``lambda_k A``, diagonal, one shape, a volume each (iterative M-step)."""

    name = mclust = "VEI"

    def n_cov_parameters(self, k, d):
        return k + d - 1

    def moments(self, shift, nk, t, s):
        means, var = super().moments(shift, nk, t, s)
        d = var.shape[1]
        w = nk[:, None] * var

        def step(lam):
            return _volumes((w / _common_shape(w, lam)).sum(axis=1), nk, d)

        lam = _solve_volumes(step, _diagonal_objective(w, nk, d),
                             _volumes(w.sum(axis=1), nk, d))
        shape = _common_shape(w, lam)
        lam = _volumes((w / shape).sum(axis=1), nk, d)
        cov = lam[:, None] * shape
        # A component without usable scatter keeps its own (degenerate)
        # variances, for the degenerate-component repair to see.
        bad = ~(lam > 0)
        cov[bad] = var[bad]
        return means, cov


class EVIFamily(_Constrained, DiagFamily):
    """EVI: ``lambda A_k``, diagonal, one volume, a shape each (closed form)."""

    name = mclust = "EVI"

    def n_cov_parameters(self, k, d):
        return 1 + k * (d - 1)

    def moments(self, shift, nk, t, s):
        means, var = super().moments(shift, nk, t, s)
        w = nk[:, None] * var
        g = _geomean(w)
        ok = _usable(g)
        lam = g[ok].sum() / nk.sum()
        cov = var.copy()
        cov[ok] = lam * w[ok] / g[ok, None]
        return means, cov


class _FullConstrained(_Constrained, FullFamily):
    """Constrained families evaluated as full covariances ``(k, d, d)``."""

    def _scatter(self, shift, nk, t, s):
        means, cov = FullFamily.moments(self, shift, nk, t, s)
        return means, cov, nk[:, None, None] * cov


class VEEFamily(_FullConstrained):
    """VEE: ``lambda_k C``, one shape and orientation, a volume each (iterative)."""

    name = mclust = "VEE"

    def n_cov_parameters(self, k, d):
        return k + (d - 1) + d * (d - 1) // 2

    def moments(self, shift, nk, t, s):
        means, cov, w = self._scatter(shift, nk, t, s)
        d = w.shape[-1]

        def common(lam):
            """``C``: ``sum_k W_k / lambda_k`` scaled to determinant 1 (None if singular)."""
            ok = lam > 0
            m = (w[ok] / lam[ok, None, None]).sum(axis=0)
            sign, logdet = np.linalg.slogdet(m)
            if not sign > 0:
                return None, np.inf
            root = np.exp(logdet / d)
            return 0.5 * (m + m.T) / root, root

        def step(lam):
            c, _ = common(lam)
            if c is None:
                return np.full_like(lam, np.nan)
            return _volumes(np.einsum("kij,ji->k", w, np.linalg.inv(c)), nk, d)

        def objective(lam):
            ok = lam > 0
            return d * (nk[ok] @ np.log(lam[ok]) + common(lam)[1])

        lam = _solve_volumes(step, objective,
                             _volumes(np.trace(w, axis1=1, axis2=2), nk, d))
        c, _ = common(lam)
        if c is None:
            lam = np.zeros_like(lam)
            c = np.eye(d)
        else:
            lam = _volumes(np.einsum("kij,ji->k", w, np.linalg.inv(c)), nk, d)
        out = lam[:, None, None] * c
        bad = ~(lam > 0)
        out[bad] = cov[bad]
        return means, out


class EEVFamily(_FullConstrained):
    """EEV: ``lambda D_k A D_k^T``, one volume and shape, an orientation each (closed form)."""

    name = mclust = "EEV"

    def n_cov_parameters(self, k, d):
        return 1 + (d - 1) + k * d * (d - 1) // 2

    def moments(self, shift, nk, t, s):
        means, cov, w = self._scatter(shift, nk, t, s)
        vals, vecs = np.linalg.eigh(w)            # ascending, matched across k
        common = vals.sum(axis=0) / nk.sum()
        out = np.einsum("kij,j,klj->kil", vecs, common, vecs)
        return means, 0.5 * (out + np.swapaxes(out, 1, 2))


class VEVFamily(_FullConstrained):
    """VEV: ``lambda_k D_k A D_k^T``, one shape, a volume and an orientation each (iterative)."""

    name = mclust = "VEV"

    def n_cov_parameters(self, k, d):
        return k + (d - 1) + k * d * (d - 1) // 2

    def moments(self, shift, nk, t, s):
        means, cov, w = self._scatter(shift, nk, t, s)
        d = w.shape[-1]
        vals, vecs = np.linalg.eigh(w)
        vals = np.maximum(vals, 0.0)

        def step(lam):
            return _volumes((vals / _common_shape(vals, lam)).sum(axis=1), nk, d)

        lam = _solve_volumes(step, _diagonal_objective(vals, nk, d),
                             _volumes(vals.sum(axis=1), nk, d))
        shape = _common_shape(vals, lam)
        lam = _volumes((vals / shape).sum(axis=1), nk, d)
        out = np.einsum("kij,kj,klj->kil", vecs, lam[:, None] * shape, vecs)
        out = 0.5 * (out + np.swapaxes(out, 1, 2))
        bad = ~(lam > 0)
        out[bad] = cov[bad]
        return means, out


class EVVFamily(_FullConstrained):
    """EVV: ``lambda C_k``, one volume, a shape and orientation each (closed form)."""

    name = mclust = "EVV"

    def n_cov_parameters(self, k, d):
        return 1 + k * (d * (d + 1) // 2 - 1)

    def moments(self, shift, nk, t, s):
        means, cov, w = self._scatter(shift, nk, t, s)
        d = w.shape[-1]
        sign, logdet = np.linalg.slogdet(w)
        ok = (sign > 0) & np.isfinite(logdet)
        g = np.exp(logdet[ok] / d)
        lam = g.sum() / nk.sum()
        out = cov.copy()
        out[ok] = w[ok] * (lam / g)[:, None, None]
        return means, out


def _orientation_step():
    """The compiled orientation M-step (imported on first use: it imports Numba)."""
    from ._orientation import jacobi_orientation

    return jacobi_orientation


class _CommonOrientation(_FullConstrained):
    """EVE and VVE: one orientation ``D``, a shape each.

    The orientation comes from :func:`fastgmm._orientation.jacobi_orientation`
    (plane rotations, each a majorise-minimise step, from the identity, until
    the largest angle of a sweep is below :data:`MSTEP_TOL`); the shapes and
    volumes then have closed forms: ``A_k = diag(D^T W_k D) / g_k`` with
    ``g_k`` its geometric mean and ``lambda = sum_k g_k / n`` (EVE), or
    ``lambda_k A_k = diag(D^T W_k D) / n_k`` (VVE).
    """

    #: Whether the volume is common (EVE) or per component (VVE).
    equal_volume = True

    def moments(self, shift, nk, t, s):
        means, cov, w = self._scatter(shift, nk, t, s)
        top = np.linalg.eigvalsh(w)[:, -1]
        ok = _usable(top) & _usable(np.trace(w, axis1=1, axis2=2))
        n = nk.sum()
        # From the identity, as mclust starts (the orientation problem can
        # have several local optima; this start finds mclust's on its data).
        orient = np.eye(w.shape[-1])
        b = np.array(w, dtype=np.float64, order="C")          # D^T W_k D, D = I
        _orientation_step()(b, np.where(ok, nk, 0.0), self.equal_volume, MSTEP_TOL,
                            MSTEP_MAX_ITER, orient)
        diag = np.einsum("ji,kjl,li->ki", orient, w, orient)
        if self.equal_volume:
            g = _geomean(diag)
            lam = g[ok].sum() / n
            with np.errstate(divide="ignore", invalid="ignore"):
                variances = lam * diag / g[:, None]
        else:
            variances = diag / nk[:, None]
        out = np.einsum("ij,kj,lj->kil", orient, variances, orient)
        out = 0.5 * (out + np.swapaxes(out, 1, 2))
        bad = ~(ok & np.isfinite(variances).all(axis=1) & (variances > 0).all(axis=1))
        out[bad] = cov[bad]
        return means, out


class EVEFamily(_CommonOrientation):
    """EVE: ``lambda D A_k D^T``, one volume and orientation, a shape each (iterative)."""

    name = mclust = "EVE"
    equal_volume = True

    def n_cov_parameters(self, k, d):
        return 1 + k * (d - 1) + d * (d - 1) // 2


class VVEFamily(_CommonOrientation):
    """VVE: ``lambda_k D A_k D^T``, one orientation, a volume and shape each (iterative)."""

    name = mclust = "VVE"
    equal_volume = False

    def n_cov_parameters(self, k, d):
        return k + k * (d - 1) + d * (d - 1) // 2


class VIIFamily(SphericalFamily):
    """VII, mclust's name of ``'spherical'``."""

    name = "VII"


class VVIFamily(DiagFamily):
    """VVI, mclust's name of ``'diag'``."""

    name = "VVI"


class EEEFamily(TiedFamily):
    """EEE, mclust's name of ``'tied'`` (stored ``(d, d)``, shared)."""

    name = "EEE"


class VVVFamily(FullFamily):
    """VVV, mclust's name of ``'full'``."""

    name = "VVV"


#: mclust's 14 models, in mclust's order.
MCLUST_MODELS = ("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE",
                 "EEV", "VEV", "EVV", "VVV")

#: scikit-learn's four covariance types.
SKLEARN_TYPES = ("full", "tied", "diag", "spherical")


#: The families by ``covariance_type``, in the order of the public listing:
#: scikit-learn's four, then mclust's fourteen (four of them aliases).
FAMILIES: dict[str, CovarianceFamily] = {
    f.name: f for f in (FullFamily(), TiedFamily(), DiagFamily(), SphericalFamily(),
                        EIIFamily(), VIIFamily(), EEIFamily(), VEIFamily(), EVIFamily(),
                        VVIFamily(), EEEFamily(), VEEFamily(), EVEFamily(), VVEFamily(),
                        EEVFamily(), VEVFamily(), EVVFamily(), VVVFamily())}

#: The accepted ``covariance_type`` values.
COVARIANCE_TYPES = tuple(FAMILIES)


def check_covariance_type(covariance_type, name: str = "covariance_type") -> str:
    """Return ``covariance_type`` if it names a family of :data:`FAMILIES`, else raise."""
    if not isinstance(covariance_type, str) or covariance_type not in FAMILIES:
        raise ValueError(f"{name} must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    return covariance_type


def family(covariance_type: str) -> CovarianceFamily:
    """The family object of a ``covariance_type`` (validated)."""
    fam = FAMILIES.get(covariance_type) if isinstance(covariance_type, str) else None
    if fam is None:
        check_covariance_type(covariance_type)
    return fam
