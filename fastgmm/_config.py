"""The one place where compilation choices and environment switches live.

Every Numba dispatcher in fastgmm is created through :func:`jit`, so the disk
cache, the fastmath flags and the error model are decided here once.
"""

from __future__ import annotations

import ctypes
import os

import numba

# Conservative fastmath: reassociation lets LLVM vectorise reductions and
# contraction forms FMAs, but ``nnan``/``ninf`` are left out on purpose so that
# ``-inf`` keeps its meaning inside log-sum-exp.
FASTMATH = {"reassoc", "contract", "arcp", "nsz"}

#: Rows per chunk: the unit of the per-chunk kernels (their scratch fits L2).
CHUNK_SIZE = 256

#: Rows per chunk of the full-covariance E-step.  Its exact densities run
#: over the rows of one component at a time; longer runs amortise the loop
#: set-up, and its scratch does not grow with ``k`` like the dense types'.
#: Measured (n = 4e5, d = k = 16, one thread): 1024 rows 1.16-1.30x faster
#: than 256; the diagonal type is indifferent and the tied one 12 % slower.
FULL_CHUNK_SIZE = 1024


def chunk_size(covariance_type: str) -> int:
    """Rows per chunk of the E-step and per-point kernels of a covariance type."""
    return FULL_CHUNK_SIZE if covariance_type == "full" else CHUNK_SIZE

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

#: Below this many rows the serial kernels are used: no thread start-up, and
#: fits may then run concurrently from several Python threads.
SERIAL_THRESHOLD = 4 * CHUNK_SIZE

#: k-means initialisation runs on a uniform sample of at most this many rows.
INIT_MAX_SAMPLES = 100_000

#: k-means++ seeding (inside k-means) uses at most this many of those rows.
SEED_MAX_SAMPLES = 16_384

#: Bytes of per-chunk statistics slots kept in flight during one kernel call.
SLOT_BUDGET_BYTES = 8 * 2**20


def jit(parallel: bool = False, inline: bool = False):
    """Return the decorator used for every compiled kernel.

    Parameters
    ----------
    parallel : bool
        Compile ``prange`` loops as parallel loops.
    inline : bool
        Inline the function into its callers at the Numba IR level (tiny
        scalar helpers used inside loops that must vectorise).
    """
    return numba.njit(
        cache=True,
        nogil=True,
        fastmath=FASTMATH,
        error_model="numpy",
        parallel=parallel,
        inline="always" if inline else "never",
    )


#: Whether parallel kernels may be launched from several Python threads at once
#: (set by :func:`_choose_threading_layer`).
THREADSAFE_LAYER = False


def _choose_threading_layer() -> None:
    """Prefer a thread-safe Numba threading layer (TBB, else OpenMP).

    Numba's default ``workqueue`` layer aborts the process when two Python
    threads launch parallel kernels at once (Dask workers, thread pools).  The
    user's own ``NUMBA_THREADING_LAYER`` always wins.
    """
    global THREADSAFE_LAYER
    chosen = os.environ.get("NUMBA_THREADING_LAYER") or numba.config.THREADING_LAYER
    if chosen not in ("default", ""):
        THREADSAFE_LAYER = chosen in ("tbb", "omp", "threadsafe", "safe")
        return
    if _loadable("libtbb.so.12") or _loadable("libgomp.so.1"):
        numba.config.THREADING_LAYER = "threadsafe"
        THREADSAFE_LAYER = True


def _loadable(library: str) -> bool:
    """Whether the shared library can be opened (cheap ``dlopen``)."""
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


_choose_threading_layer()
