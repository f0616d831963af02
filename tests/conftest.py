import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

# Relative tolerances per dtype, in one place.
#  float64: kernels agree with scipy to round-off; 1e-10 leaves room for
#           d-term sums and log-sum-exp.
#  float32: per-point arithmetic runs in float32 (eps 6e-8); a Mahalanobis
#           term sums d products, each with relative error ~eps, so with
#           d <= 8 and values of order 10 the absolute error of a log density
#           stays below ~1e-4; statistics are accumulated in float64.
RTOL = {np.float64: 1e-10, np.float32: 2e-5}
ATOL = {np.float64: 1e-10, np.float32: 2e-4}


@pytest.fixture(params=COVARIANCE_TYPES)
def covariance_type(request):
    return request.param
