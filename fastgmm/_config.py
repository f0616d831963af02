"""The one place where compilation choices and environment switches live.

Every Numba dispatcher in fastgmm is created through :func:`jit`, so the disk
cache, the fastmath flags and the error model are decided here once.
"""

from __future__ import annotations

# Conservative fastmath: reassociation lets LLVM vectorise reductions and
# contraction forms FMAs, but ``nnan``/``ninf`` are left out on purpose so that
# ``-inf`` keeps its meaning inside log-sum-exp.
FASTMATH = {"reassoc", "contract", "arcp", "nsz"}

#: Rows per chunk: the unit of the per-chunk kernels (their scratch fits L2).
CHUNK_SIZE = 256

#: Rows per chunk of the full-covariance E-step: its exact densities run over
#: the rows of one component at a time, longer runs amortise the loop set-up,
#: and its scratch does not grow with ``k`` as the dense types' does.
FULL_CHUNK_SIZE = 1024


#: When the E-step takes the dense path (``fastgmm._kernels``, section 7b):
#: ``"auto"`` chooses per chunk from what the bounds skipped, ``"never"`` and
#: ``"always"`` force one path (for tests and benchmarks; results agree to
#: rounding either way).
DENSE_PATH = "auto"

#: float32 data takes the dense path only in calls over at least this many
#: rows.  Its float32 products add rounding noise of about ``eps32`` times
#: the squared distances from the mixture's mean to each row's log density;
#: averaged over ``n`` rows that noise in the mean log-likelihood falls as
#: ``1 / sqrt(n)``, and from here on it stays below what the listed path
#: shows on small data, so convergence tests behave alike (small problems
#: are fast on either path).
DENSE_MIN_ROWS_FLOAT32 = 65_536

#: At most this many consecutive chunks share one statistics slot.
MAX_CHUNKS_PER_GROUP = 16


def chunks_per_group(n_samples: int, chunk_rows: int = CHUNK_SIZE) -> int:
    """Chunks per statistics slot for a kernel call over ``n_samples`` rows.

    A group of consecutive chunks runs on one thread and adds into one slot;
    slots are folded in order.  Together with the chunk size ``chunk_rows``
    this (a function of ``n_samples`` and the covariance type only, never of
    the thread count) fixes the floating-point summation order.  Groups of
    up to 16 chunks cut the slot traffic (a full-covariance slot is ``k d^2``
    values) while leaving at least 32 groups to share between threads.
    """
    n_chunks = -(-int(n_samples) // chunk_rows)
    return max(1, min(MAX_CHUNKS_PER_GROUP, n_chunks // 32))


def n_groups(n_rows: int, chunk_rows: int, group: int) -> int:
    """Groups of ``group`` chunks of ``chunk_rows`` rows that cover ``n_rows`` rows."""
    return -(-int(n_rows) // (chunk_rows * group))


#: Below this many rows a kernel call runs on the calling thread alone:
#: waking a helper thread would cost more than it saves.
SERIAL_THRESHOLD = 16 * CHUNK_SIZE

#: k-means initialisation runs on a uniform sample of at most this many rows.
INIT_MAX_SAMPLES = 100_000

#: k-means++ seeding (inside k-means) uses at most this many of those rows.
SEED_MAX_SAMPLES = 16_384

#: Out-of-core sources keep per-row hints of the full-covariance E-step (one
#: int32 per row) up to this many bytes (32M rows), so memory stays bounded.
HINT_BUDGET_BYTES = 2**27

#: Bytes of per-chunk statistics slots kept in flight during one kernel call.
SLOT_BUDGET_BYTES = 8 * 2**20


def jit(inline: bool = False):
    """Return the decorator used for every compiled kernel.

    Kernels are serial and release the GIL; :mod:`fastgmm._parallel` runs
    them on several threads.  They are cached on disk; where Numba finds no
    writable cache folder (a read-only install and no writable home or
    ``NUMBA_CACHE_DIR``), they are compiled in memory instead, once per
    process, and one :class:`RuntimeWarning` says so.

    Parameters
    ----------
    inline : bool
        Inline the function into its callers at the Numba IR level (tiny
        scalar helpers used inside loops that must vectorise).
    """
    import numba

    options = dict(nogil=True, fastmath=FASTMATH, error_model="numpy",
                   inline="always" if inline else "never")

    def decorate(func):
        if not _cache_unavailable:
            try:
                # Numba looks for a cache folder when the dispatcher is made.
                return numba.njit(cache=True, **options)(func)
            except RuntimeError as exc:
                if "cannot cache" not in str(exc):
                    raise
                _no_disk_cache(exc)
        return numba.njit(cache=False, **options)(func)

    return decorate


#: Set once Numba has found no cache folder: later kernels skip the search.
_cache_unavailable = False


def _no_disk_cache(exc: Exception) -> None:
    """Remember that kernels cannot be cached on disk, and warn once."""
    global _cache_unavailable
    _cache_unavailable = True
    import warnings

    warnings.warn("fastgmm: Numba cannot cache compiled kernels on disk (no writable cache "
                  "folder: set NUMBA_CACHE_DIR to a writable folder to keep them); compiling "
                  "them in memory for this process", RuntimeWarning, stacklevel=3)
