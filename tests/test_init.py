"""fastgmm._init: k-means++, k-means, random_from_data, user-given starts, the first M-step.

References: numpy nearest-centre assignments and Lloyd iterations, numpy's
weighted moments (tests/naive.py), and the statistics of sampling.
"""

import numpy as np
import pytest
from conftest import BLOB_CENTERS
from naive import make_blobs

import fastgmm

# ---------------------------------------------------------------------------
# Initialisation through the estimator
# ---------------------------------------------------------------------------


def test_weighted_initialisation_uses_weights():
    # Rows of zero weight must not influence k-means either.
    X = make_blobs(200, [(0.0, 0.0), (8.0, 0.0)], [1.0, 1.0], seed=1)
    outliers = np.full((50, 2), 100.0)
    Xo = np.vstack([X, outliers])
    w = np.r_[np.ones(len(X)), np.zeros(len(outliers))]
    g = fastgmm.GaussianMixture(2, random_state=0).fit(Xo, sample_weight=w)
    assert np.abs(g.means_).max() < 10


def test_user_init_partial(blobs):
    means = np.array(BLOB_CENTERS)
    g = fastgmm.GaussianMixture(3, means_init=means, max_iter=0, random_state=0)
    g.fit(blobs)
    np.testing.assert_array_equal(g.means_, means)
    assert g.n_iter_ == 0


@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_init_method_finds_the_clusters(init, blobs):
    # Uniform random responsibilities start every mean at the global mean, so
    # EM needs a tight tol to break the symmetry; the others start near it.
    g = fastgmm.GaussianMixture(3, init_params=init, n_init=3, max_iter=1000, tol=1e-9,
                                random_state=0).fit(blobs)
    d = np.linalg.norm(np.sort(g.means_, axis=0) - np.sort(np.array(BLOB_CENTERS), axis=0))
    assert d < 0.6
