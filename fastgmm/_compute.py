"""The caller of the complete-data kernels: their inputs, workspaces and outputs.

Everything between :class:`~fastgmm._params.GaussianParams` and a call of a
driver of :mod:`fastgmm._kernels` lives here: the named tuples the drivers
read (the model in the data's dtype with the pruning bounds of the full
kernel, the dense path, the hints, the grid of chunks and groups, the
per-group statistics slots), the per-row hints kept between iterations, and
the three entry points: :func:`compute_stats` (the fused E-step),
:func:`resp_stats` (statistics of given responsibilities, for
initialisation) and :func:`point_outputs` (predict, predict_proba,
score_samples).  The kernels module, and Numba with it, is imported on the
first call.

The other compiled kernels have their own callers: those of rows with
missing entries (:mod:`fastgmm._kernels_missing`) are called from
:mod:`fastgmm._missing`, which takes its pruning bounds from here, the
k-means ones (:mod:`fastgmm._kernels_kmeans`) from :mod:`fastgmm._init`, and
:func:`fastgmm._kernels.fold` from :func:`fastgmm._parallel.fold_slots`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _config
from ._covariance import family
from ._parallel import fold_slots, run_groups
from ._params import GaussianParams
from ._stats import SuffStats, stats_shapes


def chunk_size(kind: str) -> int:
    """Rows per chunk of the E-step and per-point kernels of an evaluation kind.

    :data:`fastgmm._config.FULL_CHUNK_SIZE` for the full kernels, whose exact
    densities run over the rows of one component at a time, else
    :data:`fastgmm._config.CHUNK_SIZE`.
    """
    return _config.FULL_CHUNK_SIZE if kind == "full" else _config.CHUNK_SIZE


#: The switching thresholds ``(up, down)`` of the per-chunk choice, by
#: evaluation kind (see ``fastgmm._kernels._dense_next``): a listed chunk
#: sends the next one to the dense path when the bounds left more than the
#: fraction ``up`` of its (row, component) pairs (full: exact densities
#: computed; diag, spherical: entries kept), a dense chunk sends the next
#: one back when it kept fewer than ``down`` entries per row.  Set where the
#: two paths cost the same on the benchmark families (``bench_scripts/
#: dense_switch.py`` re-measures it).
DENSE_SWITCH = {"full": (0.25, 1.05), "diag": (0.2, 1.05), "spherical": (0.2, 1.05)}



def _kernels():
    """:mod:`fastgmm._kernels`, imported on first use (it imports Numba)."""
    from . import _kernels

    return _kernels


def kernel_inputs(params: GaussianParams, dtype) -> tuple:
    """Arrays the kernels need for ``params``, in the compute dtype.

    Returns a tuple ``(shift, model, dense)``: the shift of the statistics,
    the model the ``em_stats_*`` and ``point_*`` drivers take
    (:class:`~fastgmm._kernels.FullModel`, :class:`~fastgmm._kernels.TiedModel`
    or :class:`~fastgmm._kernels.DiagModel`; the spherical type uses the
    diagonal drivers with one precision per component) and the model of the
    dense path (:func:`dense_inputs`; None for the tied type).
    """
    shift, args = _kernel_args(params, dtype)
    dense = None if params.family.kind == "tied" else dense_inputs(params, dtype)
    return shift, args, dense


def _kernel_args(params: GaussianParams, dtype) -> tuple:
    """The ``(shift, model)`` of :func:`kernel_inputs`.

    Every field keeps one dtype and dimension whatever the parameters (the
    log norms float64, the rest in ``dtype``), so that Numba compiles one
    specialisation per covariance type and dtype.
    """
    kern = _kernels()
    ctype = params.family.kind
    log_norm = params.log_norm()
    means = np.ascontiguousarray(params.means, dtype=dtype)
    pc = params.precisions_cholesky
    if ctype == "tied":
        shift64 = params.weights @ params.means
        shift = np.ascontiguousarray(shift64, dtype=dtype)
        proj = np.ascontiguousarray((params.means - shift64) @ pc, dtype=dtype)
        return shift64, kern.TiedModel(shift, proj, np.ascontiguousarray(pc, dtype=dtype),
                                       log_norm)
    if ctype == "full":
        prec = np.ascontiguousarray(pc, dtype=dtype)
        return params.means.copy(), kern.FullModel(means, prec, log_norm, _precision_floor(pc),
                                                   *_pair_bounds(params.means, pc, dtype))
    # Diagonal and spherical share one kernel; a spherical factor is (k, 1).
    prec = np.ascontiguousarray(pc.reshape(params.n_components, -1), dtype=dtype)
    return params.means.copy(), kern.DiagModel(means, prec, log_norm, ctype == "spherical")


class DenseInputs(NamedTuple):
    """The model of the dense path of the E-step (section 7b of :mod:`fastgmm._kernels`).

    Attributes
    ----------
    shift64 : ndarray (d,) float64
        The shift ``c`` of the dense statistics: the mixture's mean.
    shift : ndarray (d,), compute dtype
    wt : ndarray (k, p), compute dtype
        Per component, the coefficients of the features ``phi(x - c)``.
    const : ndarray (k,) float64
    on : bool
        Whether the dense path may be taken (see :func:`dense_inputs`).
    """

    shift64: np.ndarray
    shift: np.ndarray
    wt: np.ndarray
    const: np.ndarray
    on: bool


#: Largest squared distance, in its own metric, of any mean from the shift
#: of the dense path, by compute dtype.  The dense products lose about
#: ``eps`` times this (relative) in each component's statistics and log
#: densities (see :func:`dense_inputs`); past it the listed path is kept.
DENSE_MAX_OFFSET = {np.dtype(np.float64): 1e6, np.dtype(np.float32): 64.0}

#: Largest number of features for which full covariances may take the dense
#: path: its features grow as ``d^2 / 2`` per row, and past this the listed
#: path, whose cost per pair grows the same way, has always been faster
#: where the bounds skip anything at all.
DENSE_MAX_FEATURES_FULL = 64


def dense_inputs(params: GaussianParams, dtype) -> DenseInputs:
    """The dense path's model for ``params`` (full, diag or spherical), in ``dtype``.

    With ``e_k = mu_k - c`` and ``P_k`` the precision, the weighted log
    density of ``x`` is ``const_k + phi(x - c) . wt_k`` (see
    :mod:`fastgmm._kernels`, section 7b).

    Rounding: the products are sums of terms as large as ``|x - c|^2_P``
    and ``|e_k|^2_P`` (squared distances in the metric of ``P_k``), so the
    log densities carry absolute errors of about ``eps`` times those, and
    the statistics, moved from ``c`` to the means afterwards, relative
    errors of about ``eps (1 + |e_k|^2_P)``.  The path is therefore enabled
    (``on``) only while ``max_k |e_k|^2_P`` stays below
    :data:`DENSE_MAX_OFFSET` of the dtype: at most ``1e6`` in float64
    (errors below ``1e-9``), ``64`` in float32 (below ``1e-5``, within the
    float32 tolerance of the listed path).  On data spread that far the
    components are well separated and the listed path is the faster one.
    """
    # Huge precisions (a collapsing component) may overflow here: the path
    # is then off (``finite``), and the listed path handles them.
    with np.errstate(over="ignore", invalid="ignore"):
        return _dense_inputs(params, dtype)


def _dense_inputs(params: GaussianParams, dtype) -> DenseInputs:
    """:func:`dense_inputs` without the floating-point error state."""
    ctype = params.family.kind
    k, d = params.n_components, params.n_features
    c = params.weights @ params.means
    e = params.means - c
    pc = params.precisions_cholesky
    if ctype == "full":
        lam = pc @ np.swapaxes(pc, 1, 2)
        b = np.einsum("kab,kb->ka", lam, e)
        iu, ju = _upper_indices(d)
        quad = lam[:, iu, ju] * np.where(iu == ju, -0.5, -1.0)
        offset = np.einsum("ka,ka->k", b, e)
        allowed = d <= DENSE_MAX_FEATURES_FULL
    else:
        lam = np.broadcast_to(pc.reshape(k, -1) ** 2, (k, d))
        b = lam * e
        # Spherical: one weight per component on the feature |z|^2.
        quad = -0.5 * (lam[:, :1] if ctype == "spherical" else lam)
        offset = np.einsum("ka,ka->k", b, e)
        allowed = True
    wt = np.concatenate([b, quad], axis=1)
    const = params.log_norm() - 0.5 * offset
    wt_c = np.ascontiguousarray(wt, dtype=dtype)
    finite = bool(np.all(np.isfinite(wt_c)) and np.all(np.isfinite(offset)))
    on = (allowed and finite and k > 1
          and float(np.max(offset)) <= DENSE_MAX_OFFSET[np.dtype(dtype)])
    return DenseInputs(c, np.ascontiguousarray(c, dtype=dtype), wt_c, const, on)


_UPPER: dict = {}


def _upper_indices(d: int) -> tuple:
    """``np.triu_indices(d)``, row by row, cached (the order of the dense features)."""
    idx = _UPPER.get(d)
    if idx is None:
        idx = _UPPER[d] = np.triu_indices(d)
    return idx


def _precision_floor(prec_chol: np.ndarray) -> np.ndarray:
    """Lower bounds of the smallest eigenvalue of each ``U U^T``, shape (k,).

    The smallest singular value of ``U`` squared, shrunk by one part in a
    thousand so that rounding can never make the pruning bound of the full
    kernel too tight.
    """
    sv = np.linalg.svd(prec_chol, compute_uv=False)
    return np.ascontiguousarray(np.maximum(sv[:, -1], 0.0) ** 2 * 0.999)


#: Pair bounds are built when ``k^2 d^2`` stays below this: they cost about
#: that many flops per iteration and ``k^2 d`` values of memory.
PAIR_BOUND_BUDGET = 2e7


def _line_geometry(means: np.ndarray, prec_chol: np.ndarray) -> tuple:
    """The lines between means: what the pair bounds here and the line bound of the
    missing-data kernel share.

    Returns
    -------
    v : ndarray (k, k, d) float64
        ``v[b, j]`` the unit vector from ``mu_j`` to ``mu_b`` (zero where the
        means coincide).
    dist : ndarray (k, k) float64
        ``||mu_b - mu_j||``.
    z : ndarray (k, d, k) float64
        ``z[j, :, b] = U_j^{-1} v[b, j]``.
    s : ndarray (k, k) float64
        ``s[b, j] = v^T Sigma_j v = |z[j, :, b]|^2``.
    live : ndarray (k, k) bool
        The pairs with distinct means.
    """
    diff = means[:, None, :] - means[None, :, :]          # mu_b - mu_j
    dist = np.sqrt(np.einsum("bjd,bjd->bj", diff, diff))
    live = dist > 0
    v = diff / np.where(live, dist, 1.0)[..., None]
    # U_j^{-1} v for every pair, one batched solve: LU of an upper-triangular
    # matrix pivots nowhere (each column's largest entry below the diagonal
    # is its diagonal), so this is the back substitution itself.
    z = np.linalg.solve(prec_chol, np.ascontiguousarray(np.transpose(v, (1, 2, 0))))
    s = np.einsum("jdb,jdb->bj", z, z)
    return v, dist, z, s, live


def _pair_bounds(means: np.ndarray, prec_chol: np.ndarray, dtype) -> tuple:
    """Bounds along the lines between means, for pruning the full kernel.

    For the unit vector ``v`` from ``mu_j`` to ``mu_b`` and ``s = v^T
    Sigma_j v``, Cauchy-Schwarz gives ``sqrt(maha_j(x)) >= v . (x - mu_j) /
    sqrt(s) = w . (x - mu_b) + c`` with ``w = v / sqrt(s)`` and ``c = ||mu_b -
    mu_j|| / sqrt(s)``.

    Returns
    -------
    w : ndarray (k, k, d) in ``dtype``; ``w[b, j]`` for the pair ``(b, j)``
        (zero where ``b == j`` or the means coincide)
    c : ndarray (2, k, k) float64
        ``c[0, b, j] = c`` and ``c[1, b, j] >= |w[b, j]|``.  Both arrays are
        empty when ``k < 2`` or the problem is over :data:`PAIR_BOUND_BUDGET`.
    """
    k, d = means.shape
    if k < 2 or float(k * d) ** 2 > PAIR_BOUND_BUDGET:
        return np.empty((0, 0, d), dtype=dtype), np.empty((2, 0, 0))
    v, dist, _, s, live = _line_geometry(means, prec_chol)
    live &= s > 0
    scale = np.where(live, 1.0 / np.sqrt(np.where(live, s, 1.0)), 0.0)
    w = v * scale[..., None]
    # |w| = scale (v is a unit vector), enlarged by one part in a thousand so
    # that rounding of w in the data's dtype cannot make the bound too tight.
    c = np.stack([dist * scale, scale * 1.001])
    return np.ascontiguousarray(w, dtype=dtype), c


def missing_line_bounds(means: np.ndarray, prec_chol: np.ndarray):
    """The inputs of the line bound of the full missing-data kernel, float64.

    Returns a :class:`fastgmm._kernels_missing.LineBounds`: the unit vectors
    ``v`` between the means (as :func:`_pair_bounds` uses them), the
    covariances ``Sigma_j = U_j^{-T} U_j^{-1}``, ``Sigma_j v`` and ``v^T
    Sigma_j v``.  Formed once per E-step, for every pair of components.
    Where a factor is singular (no bound can hold) every ``v`` is zero,
    which switches the bound off.
    """
    from . import _kernels_missing

    k, d = means.shape
    with np.errstate(all="ignore"):
        try:
            v, _, z, s, _ = _line_geometry(means, prec_chol)
            uinv = np.linalg.solve(prec_chol, np.broadcast_to(np.eye(d), (k, d, d)))
        except np.linalg.LinAlgError:
            v, z, s = np.zeros((k, k, d)), np.zeros((k, d, k)), np.zeros((k, k))
            uinv = np.zeros((k, d, d))
        sig = np.einsum("jea,jeb->jab", uinv, uinv)
        sv = np.einsum("jea,jeb->bja", uinv, z)
    return _kernels_missing.LineBounds(np.ascontiguousarray(v), np.ascontiguousarray(sig),
                                       np.ascontiguousarray(sv), np.ascontiguousarray(s))


class StatsWorkspace:
    """Per-group slot buffers, allocated once per fit and reused.

    Parameters
    ----------
    covariance_type : str
    n_components, n_features : int
    n_threads : int
        Only sizes the number of groups in flight; results do not depend on it.
    n_samples : int, optional
        The most rows one call will see: no more slots than their groups need.
    """

    def __init__(self, covariance_type: str, n_components: int, n_features: int,
                 n_threads: int = 1, n_samples: int | None = None):
        nk_shape, t_shape, s_shape = stats_shapes(covariance_type, n_components, n_features)
        kind = family(covariance_type).kind
        g_shape = (dense_terms(kind, n_features) + 1, n_components)
        per_chunk = 8 * (n_components + int(np.prod(t_shape)) + int(np.prod(s_shape))
                         + int(np.prod(g_shape)) + 3)
        g = max(4 * max(n_threads, 1), _config.SLOT_BUDGET_BYTES // per_chunk)
        self.chunk_size = chunk_size(kind)
        if n_samples is not None:
            rows = _config.chunks_per_group(n_samples, self.chunk_size) * self.chunk_size
            g = min(g, max(1, -(-int(n_samples) // rows)))
        self.n_slots = int(g)
        self.covariance_type = covariance_type
        self.shapes = (nk_shape, t_shape, s_shape)
        self.nk_slot = np.empty((self.n_slots,) + nk_shape)
        self.t_slot = np.empty((self.n_slots,) + t_shape)
        self.s_slot = np.empty((self.n_slots,) + s_shape)
        self.g_slot = np.empty((self.n_slots,) + g_shape)
        self.ll_slot = np.empty((self.n_slots, 4))
        #: Whether the next kernel call starts every group on the dense path
        #: (most groups of the last one ended wanting it); None before the
        #: first call, which then runs its first group alone to find out.
        self.dense_first: bool | None = None
        #: Fraction of the rows of the last call that took the dense path.
        self.dense_fraction = 0.0
        self._slots = None

    def slots(self):
        """The slot buffers as the drivers take them (a :class:`fastgmm._kernels.Slots`)."""
        if self._slots is None:
            self._slots = _kernels().Slots(self.nk_slot, self.t_slot, self.s_slot, self.g_slot,
                                           self.ll_slot)
        return self._slots

    def rows_per_call(self, group: int) -> int:
        """Rows one kernel call covers with ``group`` chunks per slot."""
        return self.n_slots * group * self.chunk_size


def dense_terms(kind: str, n_features: int) -> int:
    """Features per row of the dense path: ``d + d (d + 1) / 2`` (full), ``2 d`` (diag),
    ``d + 1`` (spherical: ``z`` and ``|z|^2``), 0 where there is none (tied, or
    full beyond :data:`DENSE_MAX_FEATURES_FULL`).
    """
    d = n_features
    if kind == "full":
        return d + d * (d + 1) // 2 if d <= DENSE_MAX_FEATURES_FULL else 0
    return {"tied": 0, "diag": 2 * d, "spherical": d + 1}[kind]


class RowHints:
    """Each row's most probable component at the last E-step over the same rows.

    Kept by in-memory sources between iterations: the full-covariance kernel
    then starts each row from that component instead of bounding every
    (row, component) pair.  Results do not depend on the hints.
    """

    def __init__(self, n_samples: int):
        self.best = np.zeros(n_samples, dtype=np.int32)
        self.valid = False

    def rows(self, start: int, n_rows: int) -> RowHints:
        """The hints of rows ``start .. start + n_rows - 1`` (a view, same validity)."""
        view = RowHints.__new__(RowHints)
        view.best = self.best[start:start + n_rows]
        view.valid = self.valid
        return view


_NO_HINT = np.empty(0, dtype=np.int32)
_EMPTY_W = np.empty(0, dtype=np.float64)


def weight_args(w: np.ndarray | None, lo: int = 0, hi: int | None = None) -> tuple:
    """The ``(w, weighted)`` kernel arguments for rows ``lo:hi`` (``w`` None: all ones)."""
    if w is None:
        return _EMPTY_W, False
    return w[lo:hi], True


def compute_stats(X: np.ndarray, w: np.ndarray | None, params: GaussianParams,
                  workspace: StatsWorkspace | None = None, inputs: tuple | None = None,
                  hints: RowHints | None = None) -> SuffStats:
    """Fused E-step over ``X``: statistics and log-likelihood for ``params``.

    Parameters
    ----------
    X : ndarray (n, d), float32 or float64, C-contiguous (validated by caller)
    w : ndarray (n,) float64 or None
    params : GaussianParams
    workspace : StatsWorkspace, optional
    inputs : tuple, optional
        Precomputed :func:`kernel_inputs` for ``params`` and ``X.dtype``.
    hints : RowHints, optional
        Hints for the rows of ``X`` (full covariances only; read and updated).

    Returns
    -------
    SuffStats
    """
    name = params.covariance_type
    ctype = params.family.kind
    k, d = params.n_components, params.n_features
    if workspace is None:
        workspace = StatsWorkspace(name, k, d, n_samples=X.shape[0])
    if inputs is None:
        inputs = kernel_inputs(params, X.dtype)
    shift, model, dense = inputs
    nk_shape, t_shape, s_shape = workspace.shapes
    nk = np.zeros(nk_shape)
    t = np.zeros(t_shape)
    s = np.zeros(s_shape)
    g = np.zeros(workspace.g_slot.shape[1:])
    ll = np.zeros(4)
    kernels = _kernels()
    kern = kernels.EM_STATS[ctype]
    n = X.shape[0]
    cs = workspace.chunk_size
    group = _config.chunks_per_group(n, cs)
    grid = kernels.Grid(cs, group)
    step = workspace.rows_per_call(group)
    slots = workspace.slots()
    if ctype == "tied":
        # The tied driver writes no dense sums.
        fold = (workspace.nk_slot, workspace.t_slot, workspace.s_slot, workspace.ll_slot)
        accs = (nk, t, s, ll)
    else:
        fold = tuple(slots)
        accs = (nk, t, s, g, ll)
        always = _config.DENSE_PATH == "always"
        dense_on = (dense.on and g.shape[0] == dense.wt.shape[1] + 1
                    and _config.DENSE_PATH != "never"
                    and (always or X.dtype == np.float64 or n >= _config.DENSE_MIN_ROWS_FLOAT32))
        rule = (-1.0, -1.0) if always else DENSE_SWITCH[ctype]
    if ctype == "full":
        use_hint = hints is not None and hints.valid
    # Without a choice from an earlier call, the first group runs alone and
    # its outcome starts the others (a choice made from the data alone, so
    # the same for any thread count).
    probe = ctype != "tied" and dense_on and not always and workspace.dense_first is None
    lo = 0
    while lo < n:
        hi = min(lo + (group * cs if probe else step), n)
        wb, weighted = weight_args(w, lo, hi)
        given = (model,)
        if ctype != "tied":
            given += (kernels.DensePath(dense.shift, dense.wt, dense.const, dense_on,
                                        dense_on and (always or bool(workspace.dense_first)),
                                        *rule),)
        if ctype == "full":
            given += (kernels.Hints(_NO_HINT if hints is None else hints.best[lo:hi],
                                    use_hint),)
        n_groups = _config.n_groups(hi - lo, cs, group)
        ended_dense = ll[3]
        run_groups(kern, (X[lo:hi], wb, weighted, *given, grid, slots), n_groups, hi - lo)
        if ctype != "tied" and not workspace.ll_slot[:n_groups, 2].any():
            # No dense rows: the dense slots hold zeros, nothing to add.
            fold_slots(fold[:3] + fold[4:], n_groups, accs[:3] + accs[4:])
        else:
            fold_slots(fold, n_groups, accs)
        if ctype != "tied":
            workspace.dense_first = 2 * (ll[3] - ended_dense) > n_groups
        probe = False
        lo = hi
    dense_rows = ll[2]
    if ctype == "full" and hints is not None:
        hints.valid = True
    workspace.dense_fraction = dense_rows / n if n else 0.0
    weight = float(n) if w is None else float(w.sum())
    log_lik = ll[0] if ll[1] == 0 else -np.inf
    stats = SuffStats(name, shift, nk, t, _symmetrize_upper(s, name), float(log_lik),
                      weight, n)
    if dense_rows > 0:
        stats = stats + _dense_stats(name, g, dense.shift64, shift)
    return stats


def _dense_stats(name: str, g: np.ndarray, c: np.ndarray, shift: np.ndarray) -> SuffStats:
    """The dense path's statistics ``g`` (p + 1, k), about ``c``, moved to ``shift`` (k, d)."""
    ctype = family(name).kind
    k, d = shift.shape
    nk = g[-1].copy()
    t = np.ascontiguousarray(g[:d].T)
    if ctype == "full":
        iu, ju = _upper_indices(d)
        s = np.zeros((k, d, d))
        s[:, iu, ju] = g[d:-1].T
        s[:, ju, iu] = g[d:-1].T
    elif ctype == "spherical":
        # Only the sum over features of the second moments was accumulated,
        # and the spherical M-step uses no more: it is shared out evenly.
        s = np.repeat(g[d][:, None] / d, d, axis=1)
    else:
        s = np.ascontiguousarray(g[d:-1].T)
    return SuffStats(name, np.broadcast_to(c, (k, d)).copy(), nk, t, s).recenter(shift)


def resp_stats(X: np.ndarray, w: np.ndarray | None, resp_block, n_components: int,
               shift: np.ndarray, covariance_type: str,
               labels: np.ndarray | None = None) -> SuffStats:
    """Statistics for given responsibilities (initialisation).

    Parameters
    ----------
    resp_block : callable or None
        ``resp_block(lo, hi)`` returns the ``(hi - lo, k)`` float64
        responsibilities of rows ``lo:hi``; only one block is held at a time,
        so memory stays bounded whatever ``n``.  None when ``labels`` is given.
    shift : ndarray, (k, d) or (d,) for tied, float64
    labels : ndarray (n,) int64, optional
        Hard assignments (one-hot responsibilities, never formed).
    """
    n, d = X.shape
    k = n_components
    ctype = family(covariance_type).kind
    ws = StatsWorkspace(covariance_type, k, d, n_samples=n)
    nk, t, s = (np.zeros(shape) for shape in ws.shapes)
    kernels = _kernels()
    kern = kernels.RESP_STATS[ctype]
    shift_c = np.ascontiguousarray(np.reshape(shift, (d,) if ctype == "tied" else (k, d)),
                                   dtype=X.dtype)
    cs = ws.chunk_size
    group = _config.chunks_per_group(n, cs)
    # Rows per call: also bounded so that one block of responsibilities
    # stays within the slot budget (memory independent of n).
    rows_cap = max(cs, _config.SLOT_BUDGET_BYTES // (8 * k)) if labels is None else n
    step = max(group * cs, min(ws.rows_per_call(group), rows_cap) // (group * cs) * group * cs)
    grid = kernels.Grid(cs, group)
    slots = ws.slots()
    no_resp, no_labels = np.empty((0, k)), np.empty(0, dtype=np.int64)
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        wb, weighted = weight_args(w, lo, hi)
        if labels is None:
            given = kernels.Given(np.ascontiguousarray(resp_block(lo, hi), dtype=np.float64),
                                  no_labels)
        else:
            given = kernels.Given(no_resp, np.ascontiguousarray(labels[lo:hi], dtype=np.int64))
        n_groups = _config.n_groups(hi - lo, cs, group)
        run_groups(kern, (X[lo:hi], wb, weighted, given, shift_c, grid, slots), n_groups,
                   hi - lo)
        fold_slots(slots[:3], n_groups, (nk, t, s))
    weight = float(n) if w is None else float(w.sum())
    return SuffStats(covariance_type, np.asarray(shift, dtype=np.float64).copy(), nk, t,
                     _symmetrize_upper(s, covariance_type), 0.0, weight, n)


def _symmetrize_upper(s: np.ndarray, covariance_type: str) -> np.ndarray:
    """Copy the accumulated upper triangle onto the lower one."""
    if family(covariance_type).kind not in ("full", "tied"):
        return s
    # One gather of the upper triangle, because two np.triu build a mask on
    # every call; ``+ 0.0`` keeps the bits of ``triu(s) + triu(s, 1).T``
    # (-0.0 becomes 0.0).
    d = s.shape[-1]
    out = s.reshape(-1, d * d).take(_upper_gather(d), axis=1).reshape(s.shape)
    out += 0.0
    return out


_UPPER_GATHER: dict = {}


def _upper_gather(d: int) -> np.ndarray:
    """Flat index of entry ``(min(i, j), max(i, j))`` for every ``(i, j)`` of a d x d matrix."""
    idx = _UPPER_GATHER.get(d)
    if idx is None:
        i, j = np.indices((d, d))
        idx = _UPPER_GATHER[d] = (np.minimum(i, j) * d + np.maximum(i, j)).ravel()
    return idx


def point_outputs(X: np.ndarray, params: GaussianParams, *, resp: bool = False,
                  log_prob: bool = False, score: bool = False, labels: bool = False,
                  out_dtype=None):
    """Per-point outputs for ``X`` under ``params``, chunk by chunk.

    Returns a dict with the requested entries among ``'resp'`` (n, k),
    ``'log_prob'`` (n, k) (weighted log densities), ``'score'`` (n,) and
    ``'labels'`` (n,).  Only the outputs themselves are allocated.
    """
    if resp and log_prob:
        raise ValueError("ask for resp or log_prob, not both")  # internal misuse
    n = X.shape[0]
    k = params.n_components
    out_dtype = X.dtype if out_dtype is None else out_dtype
    out_2d = np.empty((n, k) if (resp or log_prob) else (0, k), dtype=out_dtype)
    out_score = np.empty(n if score else 0, dtype=out_dtype)
    out_label = np.empty(n if labels else 0, dtype=np.int64)
    _, model = _kernel_args(params, X.dtype)
    kernels = _kernels()
    kern = kernels.POINT[params.family.kind]
    cs = chunk_size(params.family.kind)
    group = _config.chunks_per_group(n, cs)
    out = kernels.PointOut(resp, out_2d, out_score, out_label)
    run_groups(kern, (X, model, kernels.Grid(cs, group), out), _config.n_groups(n, cs, group), n)
    out = {}
    if resp:
        out["resp"] = out_2d
    if log_prob:
        out["log_prob"] = out_2d
    if score:
        out["score"] = out_score
    if labels:
        out["labels"] = out_label
    return out
