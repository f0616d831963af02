"""Input checks: weights whose sum overflows, and numpy masked arrays."""

from __future__ import annotations

import numpy as np
import pytest

import fastgmm
from fastgmm import GaussianMixture, IterableSource, MemmapSource

OVERFLOW = r"sample_weight sums to infinity \(float64 overflow\)"


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(0.0, 1.0, (n // 2, 2)), rng.normal(5.0, 1.0, (n - n // 2, 2))])


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_weights_whose_sum_overflows_are_refused_by_name(init_params):
    X = _data()
    w = np.full(X.shape[0], 1e307)
    with pytest.raises(ValueError, match=OVERFLOW):
        GaussianMixture(2, init_params=init_params, random_state=0).fit(X, sample_weight=w)


def test_weights_whose_sum_overflows_are_refused_everywhere(tmp_path):
    X = _data()
    w = np.full(X.shape[0], 1e307)
    model = GaussianMixture(2, random_state=0).fit(X)
    for call in (lambda: model.score(X, sample_weight=w), lambda: model.bic(X, w),
                 lambda: model.suff_stats(X, w), lambda: model.partial_fit(X, sample_weight=w)):
        with pytest.raises(ValueError, match=OVERFLOW):
            call()
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(ValueError, match=OVERFLOW):
        GaussianMixture(2, random_state=0).fit(MemmapSource(tmp_path / "x.npy", w,
                                                            block_size=128))
    chunks = IterableSource(lambda: ((X[i:i + 100], w[i:i + 100]) for i in range(0, 400, 100)))
    with pytest.raises(ValueError, match=OVERFLOW):
        GaussianMixture(2, random_state=0).fit(chunks)
    # Large weights that do not overflow still fit, as their ratios.
    scaled = GaussianMixture(2, random_state=0).fit(X, sample_weight=np.full(400, 1e300))
    plain = GaussianMixture(2, random_state=0).fit(X)
    order = np.argsort(scaled.means_[:, 0]), np.argsort(plain.means_[:, 0])
    np.testing.assert_allclose(scaled.means_[order[0]], plain.means_[order[1]], rtol=1e-6)


def test_weights_whose_sum_overflows_in_dask_are_refused():
    da = pytest.importorskip("dask.array")
    X = _data()
    w = da.from_array(np.full(X.shape[0], 1e307), chunks=100)
    with pytest.raises(ValueError, match=OVERFLOW):
        GaussianMixture(2, random_state=0).fit(da.from_array(X, chunks=(100, 2)),
                                               sample_weight=w)


def test_masked_entries_are_refused_not_ignored():
    X = _data()
    masked = np.ma.masked_array(X, mask=np.zeros_like(X, dtype=bool))
    masked.mask[0, 0] = True
    masked.data[0, 0] = 1e6                     # what np.asarray would have used
    message = r"X is a masked array with 1 masked entries; fastgmm does not use masks"
    with pytest.raises(ValueError, match=message):
        GaussianMixture(2, random_state=0).fit(masked)
    model = GaussianMixture(2, random_state=0).fit(X)
    for call in (model.predict, model.score_samples, model.partial_fit):
        with pytest.raises(ValueError, match=message):
            call(masked)
    w = np.ma.masked_array(np.ones(len(X)), mask=np.zeros(len(X), dtype=bool))
    w.mask[5] = True
    with pytest.raises(ValueError, match=r"sample_weight is a masked array"):
        GaussianMixture(2, random_state=0).fit(X, sample_weight=w)
    with pytest.raises(ValueError, match=r"means_init is a masked array"):
        GaussianMixture(2, means_init=np.ma.masked_array(np.zeros((2, 2)), mask=[[1, 0], [0, 0]]),
                        random_state=0).fit(X)


def test_a_masked_array_that_masks_nothing_is_plain_data():
    X = _data()
    plain = fastgmm.fit(X, 2, random_state=0)
    masked = fastgmm.fit(np.ma.masked_array(X), 2, random_state=0)
    np.testing.assert_array_equal(masked.means_, plain.means_)
    np.testing.assert_array_equal(plain.predict(np.ma.masked_array(X)), plain.predict(X))
