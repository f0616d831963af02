"""
Fitting data out of memory: ``.npy`` files, chunk streams and Dask
==================================================================

The EM loop only needs, once per iteration, the sufficient statistics of
all rows under the current parameters, and statistics of separate blocks
add up.  So the same fit runs over data read block by block from a file,
over a stream of chunks, over a Dask array, or over any engine that can
map and sum (see :doc:`/guide/big_data`).  This example fits one data set
in each of these ways and checks that they agree:

1. draw 120,000 rows and write them to a ``.npy`` file in a temporary
   folder;
2. fit in memory, then from the file, read block by block, from the same
   initial parameters;
3. fit from a callable that yields chunks;
4. fit a Dask array on Dask's local threads, and predict lazily;
5. run EM by hand as map-reduce with ``suff_stats`` and ``apply_stats``.

The sizes are small so that the example runs in seconds; the point is that
nothing here needs the rows in memory at once.
"""

import tempfile
from pathlib import Path

import dask
import dask.array as da
import matplotlib.pyplot as plt
import numpy as np

import fastgmm
from fastgmm import plotting

SEED = 0

# %%
# Step 1: a data set on disk
# --------------------------
# Three components in four dimensions.  The file lives in a temporary folder
# that is removed at the end.

rng = np.random.default_rng(SEED)
centres = np.array([[0, 0, 0, 0], [4, 4, 0, 1], [-3, 5, 2, -2]], dtype=float)
n_per = 40_000
X = np.vstack([rng.normal(c, [1.0, 0.7, 1.2, 0.9], size=(n_per, 4)) for c in centres])
X = X[rng.permutation(len(X))]

folder = tempfile.TemporaryDirectory()
path = Path(folder.name) / "rows.npy"
np.save(path, X)
print(f"{path.name}: {X.shape[0]:,} x {X.shape[1]}, {path.stat().st_size / 2**20:.1f} MiB")

# %%
# Step 2: in memory and from the file, from the same start
# --------------------------------------------------------
# The initial parameters are fixed (``means_init`` and friends) so that the
# two fits must agree to round-off.  Given a path, ``fit`` reads the file as
# a memory map block by block; :class:`fastgmm.MemmapSource` sets the block
# size explicitly (here 10,000 rows, so twelve blocks per iteration).

start = {"weights_init": np.full(3, 1 / 3), "means_init": centres + 0.5,
         "precisions_init": np.tile(np.eye(4), (3, 1, 1))}
in_memory = fastgmm.GaussianMixture(3, random_state=SEED, **start).fit(X)
from_file = fastgmm.GaussianMixture(3, random_state=SEED, **start).fit(
    fastgmm.MemmapSource(str(path), block_size=10_000))


def largest_gap(a, b):
    """Largest difference of means and covariances, relative to the largest entry."""
    return max(np.abs(a.means_ - b.means_).max() / np.abs(a.means_).max(),
               np.abs(a.covariances_ - b.covariances_).max() / np.abs(a.covariances_).max())


print(f"in memory: {in_memory.n_iter_} iterations, lower bound {in_memory.lower_bound_:.6f}")
print(f"from file: {from_file.n_iter_} iterations, lower bound {from_file.lower_bound_:.6f}")
print(f"largest relative difference of the parameters: {largest_gap(in_memory, from_file):.1e}")

# %%
# Step 3: a stream of chunks
# --------------------------
# A callable that returns a *fresh* iterator on every call: one call, one
# pass over the data.  Here it reads slices of the memory-mapped file; it
# could as well read a folder of files or a database cursor.  Without given
# initial parameters, the initialisation runs on a uniform sample of at most
# 100,000 rows (``init_sample_size``).


def chunks():
    rows = np.load(path, mmap_mode="r")
    for lo in range(0, len(rows), 25_000):
        yield np.asarray(rows[lo:lo + 25_000])


streamed = fastgmm.GaussianMixture(3, random_state=SEED, **start).fit(chunks)
print(f"stream: {streamed.n_iter_} iterations, "
      f"largest relative difference {largest_gap(in_memory, streamed):.1e}")

# %%
# Step 4: a Dask array on the local threads
# -----------------------------------------
# The blocks' statistics are computed as Dask tasks and summed up a fixed
# tree.  With no ``distributed.Client`` running, Dask's threaded scheduler
# does the work; a ``Client`` for a cluster would be used the same way,
# with no change to this code.  ``predict`` on a Dask array stays lazy.

with dask.config.set(scheduler="threads"):
    Xd = da.from_array(np.load(path, mmap_mode="r"), chunks=(20_000, 4))
    on_dask = fastgmm.GaussianMixture(3, random_state=SEED, **start).fit(Xd)
    labels = on_dask.predict(Xd)                   # a lazy Dask array
    print(f"predict on Dask: {type(labels).__name__} with {labels.numblocks[0]} blocks")
    counts = np.bincount(labels.compute(), minlength=3)
print(f"Dask: {on_dask.n_iter_} iterations, "
      f"largest relative difference {largest_gap(in_memory, on_dask):.1e}; "
      f"rows per component {counts.tolist()}")

# %%
# Step 5: EM as map-reduce, by hand
# ---------------------------------
# ``suff_stats`` is the map (one E-step on one chunk), ``+`` the reduce, and
# ``apply_stats`` the M-step.  Each worker would need only the model and its
# chunk; :class:`fastgmm.SuffStats` pickles.  Here the "workers" are a plain
# loop over the chunks of Step 3.

# A rough start: three random rows as seeds, fitted on 1,000 rows with a
# loose tolerance.
model = fastgmm.GaussianMixture(3, init_params="random_from_data", tol=1.0,
                                random_state=1).fit(X[:1_000])
bounds = []
for _ in range(100):
    stats = sum(model.suff_stats(chunk) for chunk in chunks())       # map, then reduce
    bounds.append(stats.mean_log_likelihood)                         # of the current model
    model.apply_stats(stats)                                         # M-step
    if len(bounds) > 1 and abs(bounds[-1] - bounds[-2]) < 1e-3:     # the estimator's tol
        break
print(f"map-reduce: {len(bounds)} iterations, lower bound {bounds[-1]:.6f}; "
      f"statistics of one pass hold {stats.nk.size + stats.t.size + stats.s.size} numbers")

folder.cleanup()

# %%
# The lower bound of the map-reduce loop climbs as EM's must, and ends where
# the in-memory fit ends.

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
left.plot(np.arange(1, len(bounds) + 1), bounds, marker="o", label="map-reduce loop")
left.axhline(in_memory.lower_bound_, color="0.4", linestyle="--", label="in-memory fit")
left.set(xlabel="iteration", ylabel="mean log-likelihood per row",
         title="Map-reduce EM converges to the same fit")
left.legend()
sample = X[:3_000]
plotting.plot_labels(sample, in_memory.predict(sample), ax=right, s=6)
plotting.plot_ellipses(from_file, ax=right, dims=(0, 1))
right.set(xlabel="feature 0", ylabel="feature 1",
          title="3,000 rows; ellipses of the fit from the file")
