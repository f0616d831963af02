"""What several test modules share: constants, fixtures and small assertions.

Independent numpy/scipy references live in ``naive.py``; nothing here computes
an expected value with fastgmm.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from naive import em_iterations, make_blobs, precisions, random_params, shuffled_blobs

import fastgmm
from fastgmm._params import GaussianParams

os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]

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

#: The fitted array attributes of a GaussianMixture.
FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(params=COVARIANCE_TYPES)
def covariance_type(request):
    return request.param


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

#: Two unit blobs 6 apart in 2-D (the estimator's contract tests).
TWO_BLOBS = make_blobs(120, [(0.0, 0.0), (6.0, 0.0)], [1.0, 1.0], seed=0)

#: Centres of the ``blobs`` fixture.
BLOB_CENTERS = [(0.0, 0.0), (5.0, 1.0), (1.0, 6.0)]

#: Centres and scales of the streams fed to online EM.
STREAM_CENTERS = [[0.0, 0.0], [4.0, 4.0], [-4.0, 5.0]]
STREAM_SCALES = [1.0, 0.8, 1.2]


@pytest.fixture(scope="module")
def blobs():
    """Three 2-D blobs of 300 rows around :data:`BLOB_CENTERS`."""
    return make_blobs(300, BLOB_CENTERS, [1.0, 0.6, 1.4], seed=0)


def three_blobs(seed=0, n_per=700, d=3):
    """Three shuffled blobs in ``d`` dimensions (the out-of-core tests' data)."""
    centers = [np.arange(d) * 1.0, np.arange(d) * -1.0 + 6, np.full(d, 3.0)]
    return shuffled_blobs(n_per, centers, [1.0, 0.7, 1.3], seed=seed)


def dask_blobs(seed=0, n_per=1500):
    """Three shuffled 3-D blobs (the Dask tests' data)."""
    return shuffled_blobs(n_per, [[0.0, 0.0, 0.0], [5.0, 1.0, -2.0], [1.0, 6.0, 2.0]],
                          [1.0, 0.8, 1.2], seed=seed)


def kernel_problem(covariance_type, n, d, k, dtype, seed=0):
    """Random parameters and rows drawn around their means, for the kernel tests.

    Returns ``X``, the parameters as :class:`~fastgmm._params.GaussianParams`,
    and the raw ``(weights, means, covariances)`` for the scipy references.
    """
    w, means, cov = random_params(covariance_type, k, d, seed)
    rng = np.random.default_rng(seed + 1)
    X = (rng.normal(size=(n, d)) * 1.5 + means[rng.integers(0, k, n)]).astype(dtype)
    return X, GaussianParams.from_covariances(covariance_type, w, means, cov), (w, means, cov)


# ---------------------------------------------------------------------------
# Fits from a rough user-given start: a fixed number of plain EM iterations
# ---------------------------------------------------------------------------

#: EM iterations of the fits from :func:`rough_start`.
N_ITER = 6


def rough_start(covariance_type, X, k=3, seed=0):
    """Deliberately rough initial parameters (so the iterations have work to do).

    Equal weights, ``k`` distinct rows as means, the data's variance as every
    covariance.
    """
    rng = np.random.default_rng(seed)
    means = X[rng.choice(X.shape[0], k, replace=False)]
    weights = np.full(k, 1.0 / k)
    var = X.var(axis=0)
    cov = {"full": np.stack([np.diag(var)] * k), "tied": np.diag(var),
           "diag": np.tile(var, (k, 1)), "spherical": np.full(k, var.mean())}[covariance_type]
    return weights, means, cov


def model_from(covariance_type, start, **kw):
    """A GaussianMixture that runs exactly :data:`N_ITER` EM iterations from ``start``."""
    w, m, c = start
    return fastgmm.GaussianMixture(len(w), covariance_type=covariance_type, weights_init=w,
                                   means_init=m, precisions_init=precisions(covariance_type, c),
                                   tol=0.0, max_iter=N_ITER, **kw)


def fit_quiet(model, X, **kw):
    """``model.fit(X, **kw)`` without the ConvergenceWarning of a fixed iteration count."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        return model.fit(X, **kw)


def assert_same_params(a, b, rtol):
    """Weights, means and covariances of two models agree to ``rtol`` (norm-wise atol)."""
    for name in ("weights_", "means_", "covariances_"):
        x, y = getattr(a, name), getattr(b, name)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * np.abs(y).max(), err_msg=name)


def assert_matches_naive_em(model, X, covariance_type, start, w=None, rtol=1e-8):
    """The model equals :data:`N_ITER` iterations of plain numpy/scipy EM from ``start``."""
    weights, means, cov, bounds = em_iterations(X, *start, covariance_type, N_ITER, 1e-6, w)
    np.testing.assert_allclose(model.weights_, weights, rtol=rtol)
    np.testing.assert_allclose(model.means_, means, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(model.covariances_, cov, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(model.lower_bounds_, bounds, rtol=1e-10)


def assert_same_bits(a, b):
    """Two fitted models are identical: every fitted array, dtype, lower bound, iteration."""
    for name in FITTED:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.lower_bounds_ == b.lower_bounds_
    assert a.n_iter_ == b.n_iter_


# ---------------------------------------------------------------------------
# Model files
# ---------------------------------------------------------------------------


def io_data(dtype=np.float64, n=120, seed=0):
    """Two 3-D blobs (the model-file tests' data)."""
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal([0, 0, 0], 1.0, (n // 2, 3)),
                   rng.normal([4, 1, -2], 0.7, (n - n // 2, 3))])
    return X.astype(dtype)


def fit_io_model(covariance_type="full", dtype=np.float64, **kw):
    """A two-component model fitted on :func:`io_data`; returns ``(model, X)``."""
    X = io_data(dtype)
    kw.setdefault("random_state", 0)
    return fastgmm.GaussianMixture(2, covariance_type=covariance_type, **kw).fit(X), X


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A fitted full-covariance model saved to a file: ``(model, X, path)``."""
    model, X = fit_io_model("full")
    path = tmp_path_factory.mktemp("io") / "model.npz"
    model.save(path)
    return model, X, path


def npz_members(path):
    """Every member of an ``.npz`` file, read without pickle."""
    with np.load(path, allow_pickle=False) as f:
        return {name: f[name] for name in f.files}


def write_members(path, members):
    """Write ``members`` as an ``.npz`` file at ``path``."""
    buf = io.BytesIO()
    np.savez(buf, **members)
    path.write_bytes(buf.getvalue())


def file_metadata(members):
    """The JSON metadata of a model file's members."""
    return json.loads(members["metadata"].tobytes().decode())


def with_metadata(members, meta, redigest=True):
    """``members`` with ``meta`` as metadata, its digest recomputed unless told not to."""
    out = dict(members)
    if redigest:
        body = {k: v for k, v in meta.items() if k != "sha256"}
        canon = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        meta = dict(meta, sha256=hashlib.sha256(canon).hexdigest())
    out["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return out


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def new_axes():
    """A fresh matplotlib axis on a figure of its own (no pyplot state)."""
    from matplotlib.figure import Figure

    return Figure().subplots()


@pytest.fixture(scope="module")
def plot_models():
    """3-D data and a two-component model of every covariance type fitted on it."""
    rng = np.random.default_rng(1)
    A = np.array([[2.0, 0.0, 0.0], [1.2, 0.5, 0.0], [-0.3, 0.4, 0.8]])
    X = np.vstack([rng.normal(size=(150, 3)) @ A.T,
                   rng.normal(size=(150, 3)) * [0.5, 1.5, 1.0] + [5.0, -3.0, 1.0]])
    return X, {t: fastgmm.GaussianMixture(2, covariance_type=t, random_state=0).fit(X)
               for t in COVARIANCE_TYPES}


# ---------------------------------------------------------------------------
# The bundled data set
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wholesale():
    """The bundled wholesale-customers data."""
    return fastgmm.datasets.load_wholesale()


# ---------------------------------------------------------------------------
# Dask: one two-process LocalCluster for the session
# ---------------------------------------------------------------------------

#: Covariance types whose kernels the Dask workers load up front.
DASK_CTYPES = ("full", "tied", "diag")


@pytest.fixture(scope="session")
def dask_client():
    """A ``distributed.Client`` on a two-worker, one-thread-each LocalCluster."""
    import distributed

    from fastgmm import DaskSource

    warm_up = DaskSource.warm_up  # the public name users call
    # Worker processes must import this checkout of fastgmm.
    # Compile (or load) the kernels here first: the workers then load them
    # from Numba's disk cache instead of compiling them twice at once.
    warm_up(DASK_CTYPES)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + old if old else "")
    try:
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                           processes=True, dashboard_address=":0",
                                           silence_logs=50)
        c = distributed.Client(cluster)
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    # Load the kernels in both workers once (Numba's disk cache).
    c.run(warm_up, DASK_CTYPES)
    yield c
    c.close()
    cluster.close()


# ---------------------------------------------------------------------------
# The command line: every command run once per session, as separate processes
# ---------------------------------------------------------------------------

CLI_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])),
    MPLBACKEND="Agg")
HAVE_PARQUET = all(importlib.util.find_spec(m) is not None for m in ("pandas", "pyarrow"))


def run_cli(args, cwd):
    """``python -m fastgmm ARGS`` in ``cwd``; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "fastgmm", *args], cwd=cwd, env=CLI_ENV,
                          capture_output=True, text=True, timeout=300)


# Bad inputs the command line must survive, each run as a separate process
# with the other commands (test_bad_input.py checks them).  name: (arguments,
# output file the command must not leave behind).
CLI_BAD = {
    "missing_data": (["fit", "missing.csv", "--k", "2", "--out", "bad1.npz"], "bad1.npz"),
    "unknown_column": (["fit", "w.csv", "--k", "2", "--columns", "Milk,Nope",
                        "--out", "bad2.npz"], "bad2.npz"),
    "non_numeric_column": (["fit", "text.csv", "--k", "2", "--columns", "a,name",
                            "--out", "bad3.npz"], "bad3.npz"),
    "nan_in_npy": (["fit", "nan.npy", "--k", "2", "--out", "bad5.npz"], "bad5.npz"),
    "k_above_rows": (["fit", "tiny.csv", "--k", "5", "--out", "bad6.npz"], "bad6.npz"),
    "truncated_model": (["predict", "truncated.npz", "w.csv", "--out", "bad8.csv"],
                        "bad8.csv"),
    "tampered_model": (["sample", "tampered.npz", "--n", "5", "--out", "bad9.csv"],
                       "bad9.csv"),
    "k_neither_integer_nor_auto": (["fit", "w.csv", "--k", "many", "--out", "bad16.npz"],
                                   "bad16.npz"),
}


def _write_cli_inputs(d: Path):
    data = fastgmm.datasets.load_wholesale()
    (d / "w.csv").write_bytes(
        (ROOT / "fastgmm" / "data" / "wholesale_customers.csv").read_bytes())
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=(200, 2)) + np.repeat([[0, 0], [4, 4]], 100, axis=0),
                         rng.uniform(0.5, 2.0, 200)])
    np.save(d / "x.npy", X)
    (d / "text.csv").write_text("a,b,name\n1,2,anne\n3,4,bob\n")
    (d / "holes.csv").write_text("a,b\n1,2\n3,\n5,6\n")
    np.save(d / "nan.npy", np.array([[1.0, 2.0], [3.0, 4.0], [5.0, np.nan]]))
    (d / "tiny.csv").write_text("x,y\n1,2\n3,4\n5,7\n")
    (d / "zeros.csv").write_text("x,y\n1,2\n3,0\n")
    (d / "ragged.csv").write_text("x,y\n1,2\n3\n")
    # Damaged model files, from a model saved in this process.
    model = fastgmm.GaussianMixture(2, random_state=0).fit(np.log(data.spending[:, :2]))
    model.save(d / "good.npz")
    raw = (d / "good.npz").read_bytes()
    (d / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    members = npz_members(d / "good.npz")
    np.savez(d / "tampered.npz", **dict(members, means_=members["means_"] * 2))
    meta = dict(file_metadata(members), format_version=2)
    np.savez(d / "future.npz", **with_metadata(members, meta))
    if HAVE_PARQUET:
        import pandas as pd

        pd.DataFrame(X, columns=["u", "v", "w"]).to_parquet(d / "x.parquet")


@pytest.fixture(scope="session")
def cli_ws(tmp_path_factory):
    """Run every command once; returns (folder, {name: CompletedProcess}).

    The bad commands of :data:`CLI_BAD` are named ``bad_<name>``.
    """
    d = tmp_path_factory.mktemp("cli")
    _write_cli_inputs(d)
    # Compile (or load) the small-data kernels here first, so that the
    # processes below find them in Numba's disk cache instead of each
    # compiling them at once.
    X = np.log(fastgmm.datasets.load_wholesale().spending)
    for covariance_type in COVARIANCE_TYPES:
        fastgmm.GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(
            X, sample_weight=np.ones(len(X))).predict_proba(X)
    results = {"fit": run_cli(["fit", "w.csv", "--k", "3", "--columns", "Fresh,Milk,Grocery",
                               "--log", "--standardize", "--n-init", "2", "--seed", "0",
                               "--out", "m.npz"], d)}
    jobs = {
        "fit_npy": ["fit", "x.npy", "--k", "2", "--columns", "0,1", "--sample-weight", "2",
                    "--covariance", "diag", "--seed", "3", "--quiet", "--out", "x_model.npz"],
        "predict": ["predict", "m.npz", "w.csv", "--out", "labels.csv"],
        "predict_proba": ["predict", "m.npz", "w.csv", "--proba", "--out", "proba.npy"],
        "sample": ["sample", "m.npz", "--n", "50", "--seed", "1", "--out", "s.csv"],
        "info": ["info", "m.npz"],
        "demo": ["demo", "--quick", "--out", "demo_out"],
    }
    if HAVE_PARQUET:
        jobs["fit_parquet"] = ["fit", "x.parquet", "--k", "2", "--columns", "u,v", "--seed",
                               "0", "--out", "pq.npz"]
    jobs.update({f"bad_{name}": args for name, (args, _) in CLI_BAD.items()})
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(run_cli, args, d) for name, args in jobs.items()}
        results.update({name: f.result() for name, f in futures.items()})
    return d, results
