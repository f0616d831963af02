"""Slow, obviously correct references built on scipy/numpy only.

Nothing here imports fastgmm: these are the independent answers the kernels
and the EM loop are checked against.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp
from scipy.stats import multivariate_normal


def full_covariances(covariance_type, covariances, n_components, n_features):
    """Expand any covariance parametrisation to (k, d, d) matrices."""
    c = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return c
    if covariance_type == "tied":
        return np.broadcast_to(c, (n_components, n_features, n_features)).copy()
    if covariance_type == "diag":
        return np.stack([np.diag(v) for v in c])
    return np.stack([np.eye(n_features) * v for v in c])


def weighted_log_prob(X, weights, means, covariances, covariance_type):
    """The log joint ``log w_k + log N(x | mu_k, Sigma_k)`` with scipy, shape (n, k)."""
    k, d = means.shape
    full = full_covariances(covariance_type, covariances, k, d)
    X = np.asarray(X, dtype=np.float64)
    return np.stack([np.log(weights[j]) + multivariate_normal(means[j], full[j]).logpdf(X)
                     .reshape(-1) for j in range(k)], axis=1)


def e_step(X, weights, means, covariances, covariance_type):
    """Responsibilities and per-row log density."""
    lp = weighted_log_prob(X, weights, means, covariances, covariance_type)
    lse = logsumexp(lp, axis=1)
    return np.exp(lp - lse[:, None]), lse


def _parametrise(covs, nk, covariance_type, reg_covar):
    """Per-component covariances (k, d, d) in the shape of a covariance type, plus reg_covar."""
    d = covs.shape[-1]
    if covariance_type == "full":
        return covs + reg_covar * np.eye(d)
    if covariance_type == "tied":
        return (nk[:, None, None] * covs).sum(axis=0) / nk.sum() + reg_covar * np.eye(d)
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in covs]) + reg_covar
    return np.stack([np.diag(c).mean() for c in covs]) + reg_covar


def m_step(X, resp, covariance_type, reg_covar, sample_weight=None):
    """Weighted maximum-likelihood parameters with numpy's weighted covariance."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    rw = resp * w[:, None]
    nk = rw.sum(axis=0)
    weights = nk / nk.sum()
    means = (rw.T @ X) / nk[:, None]
    covs = np.stack([np.cov(X.T, aweights=rw[:, j], bias=True).reshape(d, d)
                     for j in range(resp.shape[1])])
    return weights, means, _parametrise(covs, nk, covariance_type, reg_covar)


def em_iterations(X, weights, means, covariances, covariance_type, n_iter, reg_covar,
                  sample_weight=None):
    """Plain EM; returns final parameters and the per-iteration lower bounds."""
    w = None if sample_weight is None else np.asarray(sample_weight, np.float64)
    bounds = []
    for _ in range(n_iter):
        resp, lse = e_step(X, weights, means, covariances, covariance_type)
        bounds.append(float(np.average(lse, weights=w)))
        weights, means, covariances = m_step(X, resp, covariance_type, reg_covar, w)
    return weights, means, covariances, bounds


def precisions(covariance_type, covariances):
    c = np.asarray(covariances, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        return np.linalg.inv(c)
    return 1.0 / c


def make_blobs(n_per, centers, scales, seed=0, dtype=np.float64):
    """``n_per`` normal rows around each centre, with one scale per centre, block by block."""
    rng = np.random.default_rng(seed)
    parts = [rng.normal(size=(n_per, len(c))) * s + np.asarray(c)
             for c, s in zip(centers, scales, strict=True)]
    return np.vstack(parts).astype(dtype)


def shuffled_blobs(n_per, centers, scales, seed=0):
    """:func:`make_blobs` with its rows in a random order (seeded by ``seed`` too)."""
    X = make_blobs(n_per, centers, scales, seed=seed)
    return X[np.random.default_rng(seed).permutation(X.shape[0])]


def make_mixture(covariance_type, k, n_per, d, seed):
    """Well-separated components (12 units apart along the first axis) of one covariance type."""
    rng = np.random.default_rng(seed)
    means = np.array([[12.0 * j] + [6.0 * ((j * (e + 2)) % 3) for e in range(d - 1)]
                      for j in range(k)])
    shared = None
    if covariance_type == "tied":
        a = rng.normal(size=(d, d))
        shared = a @ a.T / d + 0.5 * np.eye(d)
    parts = []
    for j in range(k):
        if covariance_type == "full":
            a = rng.normal(size=(d, d))
            cov = a @ a.T / d + 0.3 * np.eye(d)
        elif covariance_type == "tied":
            cov = shared
        elif covariance_type == "diag":
            cov = np.diag(rng.uniform(0.3, 2.0, size=d))
        else:
            cov = rng.uniform(0.3, 2.0) * np.eye(d)
        parts.append(rng.multivariate_normal(means[j], cov, size=n_per))
    return np.vstack(parts)


def unit_covariances(covariance_type, k, d):
    """Identity covariances (equally, unit precisions) in the layout of a covariance type."""
    return {"full": np.stack([np.eye(d)] * k), "tied": np.eye(d), "diag": np.ones((k, d)),
            "spherical": np.ones(k)}[covariance_type]


def n_parameters(covariance_type, k, d):
    """Free parameters counted by hand: k - 1 weights, k d means, covariances."""
    cov = {"full": k * d * (d + 1) / 2, "tied": d * (d + 1) / 2, "diag": k * d,
           "spherical": k}[covariance_type]
    return int(k - 1 + k * d + cov)


def suff_stats(X, resp, w, covariance_type, shift):
    """Sufficient statistics ``(nk, t, s)`` about ``shift`` with numpy (their definition).

    ``nk = sum w r``, ``t = sum w r (x - c_k)``, ``s`` the second moment about the
    shift (full: matrices, diag/spherical: their diagonals); tied: the
    responsibility-free scatter about one shift ``c`` of shape (d,).
    """
    rw = resp * w[:, None]
    nk = rw.sum(axis=0)
    if covariance_type == "tied":
        dx = X - shift
        return nk, rw.T @ dx, (dx * w[:, None]).T @ dx
    t = np.stack([rw[:, k] @ (X - shift[k]) for k in range(len(nk))])
    s = []
    for k in range(len(nk)):
        dx = X - shift[k]
        m = (dx * rw[:, k, None]).T @ dx
        s.append(m if covariance_type == "full" else np.diag(m))
    return nk, t, np.stack(s)


def nearest(X, centers):
    """Index of the nearest centre (squared Euclidean distance) of every row."""
    d2 = ((np.asarray(X, np.float64)[:, None, :] - np.asarray(centers, np.float64)[None]) ** 2)
    return d2.sum(axis=2).argmin(axis=1)


def lloyd(X, w, centers, max_iter=100):
    """Weighted Lloyd iterations from ``centers`` until the assignment stops changing.

    Returns the centres (weighted means of their rows; an empty cluster keeps
    its centre) and the final assignment.
    """
    centers = np.array(centers, dtype=np.float64)
    w = np.ones(X.shape[0]) if w is None else np.asarray(w, np.float64)
    labels = None
    for _ in range(max_iter):
        new_labels = nearest(X, centers)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for j in range(centers.shape[0]):
            mass = w[labels == j]
            if mass.sum() > 0:
                centers[j] = np.average(X[labels == j], axis=0, weights=mass)
    return centers, labels


def random_params(covariance_type, k, d, seed=0):
    """Random valid parameters (float64) for kernel tests."""
    rng = np.random.default_rng(seed)
    w = rng.random(k) + 0.2
    w /= w.sum()
    means = rng.normal(scale=2.0, size=(k, d))
    if covariance_type == "full":
        a = rng.normal(size=(k, d, d))
        cov = a @ np.swapaxes(a, 1, 2) / d + 0.5 * np.eye(d)
    elif covariance_type == "tied":
        a = rng.normal(size=(d, d))
        cov = a @ a.T / d + 0.5 * np.eye(d)
    elif covariance_type == "diag":
        cov = rng.random((k, d)) + 0.3
    else:
        cov = rng.random(k) + 0.3
    return w, means, cov


# ---------------------------------------------------------------------------
# Missing data (NaN marks a missing entry)
# ---------------------------------------------------------------------------


def missing_e_step(X, weights, means, covariances, covariance_type):
    """Row by row, with every missing pattern written out: scipy marginal densities.

    Returns responsibilities (n, k), the log density of each row's observed
    entries (n,), the completed rows (n, k, d) and the conditional
    covariances (n, k, d, d) (zero outside the missing block), all from the
    conditional formulas on ``Sigma_oo`` with ``np.linalg.solve``.
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    k = means.shape[0]
    full = full_covariances(covariance_type, covariances, k, d)
    logp = np.empty((n, k))
    completed = np.empty((n, k, d))
    cond = np.zeros((n, k, d, d))
    for i in range(n):
        m = np.isnan(X[i])
        o = ~m
        xo = X[i, o]
        for j in range(k):
            s_oo = full[j][np.ix_(o, o)]
            s_mo = full[j][np.ix_(m, o)]
            s_mm = full[j][np.ix_(m, m)]
            logp[i, j] = np.log(weights[j]) + multivariate_normal(means[j, o], s_oo).logpdf(xo)
            completed[i, j] = X[i]
            completed[i, j, m] = means[j, m] + s_mo @ np.linalg.solve(s_oo, xo - means[j, o])
            cond[i, j][np.ix_(m, m)] = s_mm - s_mo @ np.linalg.solve(s_oo, s_mo.T)
    lse = logsumexp(logp, axis=1)
    return np.exp(logp - lse[:, None]), lse, completed, cond


def missing_m_step(resp, completed, cond, covariance_type, reg_covar, sample_weight=None):
    """Maximum-likelihood parameters from the expected complete-data statistics (two passes)."""
    n, k, d = completed.shape
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    rw = resp * w[:, None]
    nk = rw.sum(axis=0)
    weights = nk / nk.sum()
    means = np.einsum("ik,ikd->kd", rw, completed) / nk[:, None]
    dev = completed - means[None]
    covs = (np.einsum("ik,ikd,ike->kde", rw, dev, dev)
            + np.einsum("ik,ikde->kde", rw, cond)) / nk[:, None, None]
    return weights, means, _parametrise(covs, nk, covariance_type, reg_covar)


def missing_em_iterations(X, weights, means, covariances, covariance_type, n_iter, reg_covar,
                          sample_weight=None):
    """Plain missing-data EM; returns the parameters after each iteration and the bounds."""
    w = None if sample_weight is None else np.asarray(sample_weight, np.float64)
    iterates, bounds = [], []
    for _ in range(n_iter):
        resp, lse, completed, cond = missing_e_step(X, weights, means, covariances,
                                                    covariance_type)
        bounds.append(float(np.average(lse, weights=w)))
        weights, means, covariances = missing_m_step(resp, completed, cond, covariance_type,
                                                     reg_covar, w)
        iterates.append((weights, means, covariances))
    return iterates, bounds
