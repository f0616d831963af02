"""The E-step seam: a new E-step plugs into every source without touching one.

The test-only E-step below multiplies each row's weight by a fixed factor of
its global row index.  Its fits must be the same whatever source delivers
the rows (in memory, a ``.npy`` file read in blocks, a chunk iterator, a
Dask array), and equal to a plain fit whose sample weights are those factors:
an independent reference, since that fit goes through the default E-step and
``sample_weight``.
"""

import pickle

import numpy as np
import pytest

from fastgmm._compute import compute_stats, point_outputs
from fastgmm._covariance import family
from fastgmm._em import run_em
from fastgmm._estep import COMPLETE, BlockCache, EStep, block_stats
from fastgmm._missing import MARGINALIZE, estep_for
from fastgmm._params import GaussianParams
from fastgmm._sources import ArraySource, IterableSource, MemmapSource


def _factor(rows: np.ndarray) -> np.ndarray:
    return 0.5 + (rows % 3) * 0.75


class RowFactor(EStep):
    """Weights each row by ``_factor(its index)``; otherwise the complete-data E-step."""

    def check_block(self, X, start=0, name="X"):
        COMPLETE.check_block(X, start, name)

    def prepare(self, X, w, start=0):
        f = _factor(np.arange(start, start + X.shape[0]))
        return X, f if w is None else w * f

    def stats(self, block, params, cache):
        X, w = block
        return compute_stats(X, w, params, cache.workspace(params, max(X.shape[0], 1)))

    def point(self, X, params, **what):
        return point_outputs(X, params, **what)


def _data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [3.0, 1.0, -1.0], [-2.0, 4.0, 1.0]])
    X = centres[rng.integers(0, 3, n)] + rng.normal(size=(n, 3))
    return np.ascontiguousarray(X)


def _start(X, ctype):
    k, d = 3, X.shape[1]
    return GaussianParams.from_covariances(ctype, np.full(k, 1.0 / k), X[[0, 1000, 2000]],
                                           family(ctype).unit(k, d))


def _run(source, p0, estep):
    return run_em(source, p0, tol=0.0, max_iter=8, reg_covar=1e-6, estep=estep).params


@pytest.mark.parametrize("ctype", ["full", "tied", "diag", "spherical"])
def test_a_new_estep_gives_one_fit_from_every_source(tmp_path, ctype):
    X = _data()
    p0 = _start(X, ctype)
    path = tmp_path / "x.npy"
    np.save(path, X)
    step = RowFactor()
    fits = {
        "memory": _run(ArraySource(X), p0, step),
        "npy": _run(MemmapSource(str(path), block_size=512), p0, step),
        "chunks": _run(IterableSource(lambda: (X[i:i + 700] for i in range(0, 3000, 700))),
                       p0, step),
    }
    import dask.array as da

    from fastgmm._dask import DaskSource

    fits["dask"] = _run(DaskSource(da.from_array(X, chunks=(800, 3))), p0, step)
    # The reference: the default E-step with the factors as sample weights.
    ref = _run(ArraySource(X, _factor(np.arange(X.shape[0]))), p0, COMPLETE)
    for name, got in fits.items():
        for attr in ("weights", "means", "covariances"):
            np.testing.assert_allclose(getattr(got, attr), getattr(ref, attr), rtol=1e-9,
                                       atol=1e-12, err_msg=f"{name}: {attr}")


def test_the_estep_differs_from_the_default():
    # Guards the test above against a factor that changes nothing.
    X = _data()
    p0 = _start(X, "full")
    a = _run(ArraySource(X), p0, RowFactor())
    b = _run(ArraySource(X), p0, COMPLETE)
    assert np.abs(a.means - b.means).max() > 1e-3


def test_estep_objects_pickle_to_themselves_and_compare_by_kind():
    for step in (COMPLETE, MARGINALIZE, RowFactor()):
        again = pickle.loads(pickle.dumps(step))
        assert again == step and type(again) is type(step)
    assert COMPLETE != MARGINALIZE
    assert estep_for("error") is COMPLETE and estep_for("marginalize") is MARGINALIZE
    with pytest.raises(ValueError, match="missing must be one of"):
        estep_for("drop")


def test_block_stats_is_the_source_pass_for_one_block():
    X = _data(500)
    p0 = _start(np.vstack([X] * 6), "diag")
    got = block_stats(COMPLETE, X, None, p0)
    ref = ArraySource(X).stats(p0, COMPLETE)
    np.testing.assert_array_equal(got.s, ref.s)
    assert got.log_likelihood == ref.log_likelihood


def test_sources_hold_no_estep_flag():
    # A source is handed the E-step per call; none remembers a missing flag.
    X = _data(100)
    for src in (ArraySource(X), IterableSource(lambda: [X])):
        assert not hasattr(src, "missing")
    cache = BlockCache(keep=False)
    assert cache.hints() is None
