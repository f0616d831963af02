"""Compiled M-step of the common orientation of the EVE and VVE families.

See :func:`fastgmm._covariance._CommonOrientation` for the problem and
:func:`jacobi_orientation` for the algorithm.  Kept apart from the E-step
kernels: it runs once per M-step on ``(k, d, d)`` arrays, never on the rows.
"""

from __future__ import annotations

import math

import numpy as np

from ._config import jit


@jit()
def jacobi_orientation(b, weight, equal_volume, tol, max_sweeps, orient):
    """Rotate ``orient`` (and ``b = D^T W_k D``) plane by plane to the common orientation.

    With the shapes profiled out the M-step minimises ``sum_k g_k(D)`` (EVE,
    ``g_k`` the geometric mean of ``diag(D^T W_k D)``) or ``sum_k n_k sum_j
    log (D^T W_k D)_jj`` (VVE).  Both are concave in that diagonal, hence
    majorised at the current ``D`` by ``sum_k sum_j c_kj (D^T W_k D)_jj``
    with ``c_kj = g_k / b_kjj`` (EVE) or ``n_k / b_kjj`` (VVE): ``tr(W_k D
    A_k^{-1} D^T)`` with the shapes of the current ``D``.  Rotating columns
    ``i, j`` by ``theta`` changes the majoriser by ``P cos 2 theta + Q sin 2
    theta`` (constants aside), which has a closed-form minimiser; the weights
    are refreshed after every rotation, so each one lowers the objective (a
    majorise-minimise step on one plane, in the manner of the Jacobi-type
    algorithms for common principal components, Flury & Gautschi 1986).

    Parameters
    ----------
    b : ndarray (k, d, d) float64
        ``D^T W_k D`` for the starting ``orient``; updated in place.
    weight : ndarray (k,) float64
        ``n_k`` (VVE) or any positive value (EVE) for components that count,
        0 for those that do not (no usable scatter).
    equal_volume : bool
        EVE (True) or VVE (False).
    tol : float
        Stop after a sweep whose largest angle is below ``tol``.
    max_sweeps : int
    orient : ndarray (d, d) float64
        The starting orientation; updated in place.

    Returns
    -------
    int
        The number of sweeps run.
    """
    k, d = b.shape[0], b.shape[1]
    scale = np.empty(k)
    sweeps = 0
    while sweeps < max_sweeps:
        sweeps += 1
        largest = 0.0
        for i in range(d):
            for j in range(i + 1, d):
                for m in range(k):
                    if weight[m] > 0.0:
                        if equal_volume:
                            acc = 0.0
                            for q in range(d):
                                acc += math.log(b[m, q, q])
                            scale[m] = math.exp(acc / d)
                        else:
                            scale[m] = weight[m]
                p = 0.0
                q2 = 0.0
                for m in range(k):
                    if weight[m] > 0.0:
                        diff = scale[m] / b[m, i, i] - scale[m] / b[m, j, j]
                        if math.isfinite(diff):
                            p += 0.5 * diff * (b[m, i, i] - b[m, j, j])
                            q2 += diff * b[m, i, j]
                if p == 0.0 and q2 == 0.0:
                    continue
                theta = 0.5 * math.atan2(-q2, -p)
                largest = max(largest, abs(theta))
                c = math.cos(theta)
                s = math.sin(theta)
                for r in range(d):
                    oi = orient[r, i]
                    oj = orient[r, j]
                    orient[r, i] = c * oi + s * oj
                    orient[r, j] = c * oj - s * oi
                for m in range(k):
                    for r in range(d):          # columns i, j
                        bi = b[m, r, i]
                        bj = b[m, r, j]
                        b[m, r, i] = c * bi + s * bj
                        b[m, r, j] = c * bj - s * bi
                    for r in range(d):          # rows i, j
                        bi = b[m, i, r]
                        bj = b[m, j, r]
                        b[m, i, r] = c * bi + s * bj
                        b[m, j, r] = c * bj - s * bi
        if largest < tol:
            break
    return sweeps
