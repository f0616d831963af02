"""Peak memory of fitting a large ``.npy`` file out of core.

Writes a float64 ``.npy`` file of at least ``--gb`` gigabytes (default 2.2 GB,
``n x 16``), then fits it in a fresh subprocess:

1. a default fit (k-means initialisation on the 100,000-row sample, then EM
   over the whole file read block by block), ``--iters`` iterations;
2. a fit from fixed initial parameters, the same number of iterations.

For each, the subprocess reports its peak resident set size (``VmHWM`` after
resetting it through ``/proc/self/clear_refs``, cross-checked by polling
``psutil`` every 5 ms) minus its resident size just before the fit (the
baseline: interpreter, NumPy, Numba and the loaded kernels).  The target is
at most 300 MB.

The fit from fixed parameters is then compared with the in-memory fit of the
same data from the same parameters (maximum relative difference), on the
whole file when the machine has memory to spare for it, else on a
``--compare-gb`` file.  The files are deleted afterwards.

Usage::

    python bench_scripts/bench_out_of_core.py [--gb 2.2] [--iters 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import numpy as np

D, K = 16, 8
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_data(path: str, n: int, seed: int = 0) -> None:
    """Blobs around K random centres, written block by block (never all in memory)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(K, D))
    header = {"descr": "<f8", "fortran_order": False, "shape": (n, D)}
    block = 500_000
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, header)
        for lo in range(0, n, block):
            m = min(block, n - lo)
            labels = rng.integers(0, K, size=m)
            x = centers[labels] + rng.normal(size=(m, D)) * (0.5 + labels[:, None] / K)
            f.write(x.astype("<f8").tobytes())


def initial_params(path: str):
    """K rows of the file as means, a common spherical covariance."""
    X = np.load(path, mmap_mode="r")
    idx = np.sort(np.random.default_rng(1).choice(X.shape[0], K, replace=False))
    means = np.array(X[idx])
    del X
    return np.full(K, 1.0 / K), means, np.stack([np.eye(D) * 4.0] * K)


# ---------------------------------------------------------------------------
# The measured subprocess
# ---------------------------------------------------------------------------


def _vm_hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def _measure(fn):
    import psutil

    proc = psutil.Process()
    gc.collect()
    base = proc.memory_info().rss
    reset = False
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        pass
    peak = [base]
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    start = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - start
    stop.set()
    t.join()
    hwm = _vm_hwm() if reset else None
    top = max(peak[0], hwm or 0)
    return out, {"baseline_mb": base / 2**20, "peak_mb": top / 2**20,
                 "growth_mb": (top - base) / 2**20, "vmhwm_reset": reset,
                 "seconds": elapsed}


def child(path: str, iters: int, out_npz: str) -> None:
    import fastgmm

    warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
    w0, m0, c0 = initial_params(path)
    # Warm up: load every kernel the measured fits use, on a small memory map.
    small = path + ".warm.npy"
    np.save(small, np.load(path, mmap_mode="r")[:20_000])
    fastgmm.GaussianMixture(K, max_iter=1, tol=0.0, random_state=0).fit(small)
    os.remove(small)

    times = []

    def cb(info):
        times.append(info.elapsed)

    def default_fit():
        return fastgmm.GaussianMixture(K, max_iter=iters, tol=0.0, random_state=0,
                                       callback=cb).fit(path)

    def fixed_fit():
        return fastgmm.GaussianMixture(K, weights_init=w0, means_init=m0,
                                       precisions_init=np.linalg.inv(c0), max_iter=iters,
                                       tol=0.0).fit(fastgmm.MemmapSource(path))

    _, default_mem = _measure(default_fit)
    default_iter = np.diff([0.0] + times).tolist()
    model, fixed_mem = _measure(fixed_fit)
    np.savez(out_npz, weights=model.weights_, means=model.means_, cov=model.covariances_)
    print(json.dumps({"default_init": default_mem, "fixed_init": fixed_mem,
                      "default_seconds_per_iteration": default_iter}))


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


def run_child(path, iters):
    out_npz = path + ".params.npz"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, __file__, "--child", path, "--iters", str(iters)],
                         env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    report = json.loads(res.stdout.strip().splitlines()[-1])
    with np.load(out_npz) as f:
        params = {k: f[k] for k in f.files}
    os.remove(out_npz)
    return report, params


def in_memory_fit(path, iters):
    import fastgmm

    w0, m0, c0 = initial_params(path)
    X = np.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastgmm.ConvergenceWarning)
        model = fastgmm.GaussianMixture(K, weights_init=w0, means_init=m0,
                                        precisions_init=np.linalg.inv(c0), max_iter=iters,
                                        tol=0.0).fit(X)
    del X
    return {"weights": model.weights_, "means": model.means_, "cov": model.covariances_}


def max_rel_diff(a, b):
    """Largest ``max|a - b| / max|b|`` over the weights, means and covariances."""
    return max(float(np.max(np.abs(a[k] - b[k])) / np.max(np.abs(b[k])))
               for k in ("weights", "means", "cov"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=2.2, help="file size in GB (1e9 bytes)")
    ap.add_argument("--compare-gb", type=float, default=0.2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.iters, args.child + ".params.npz")
        return

    import psutil

    n = int(np.ceil(args.gb * 1e9 / (8 * D)))
    path = os.path.join(args.dir, f"fastgmm_bench_{os.getpid()}.npy")
    small = None
    try:
        t0 = time.perf_counter()
        write_data(path, n)
        size = os.path.getsize(path)
        print(f"wrote {path}: {n} x {D} float64, {size / 1e9:.2f} GB "
              f"({time.perf_counter() - t0:.1f} s)")
        report, params = run_child(path, args.iters)
        for name in ("default_init", "fixed_init"):
            r = report[name]
            print(f"{name:>12}: baseline {r['baseline_mb']:.0f} MB, peak {r['peak_mb']:.0f} MB,"
                  f" growth {r['growth_mb']:.1f} MB (VmHWM reset: {r['vmhwm_reset']}), "
                  f"{r['seconds']:.1f} s for {args.iters} iterations + init")
        growth = max(report[k]["growth_mb"] for k in ("default_init", "fixed_init"))
        print(f"peak RSS growth over baseline: {growth:.1f} MB (target <= 300 MB)")
        per_iter = report["default_seconds_per_iteration"]
        print("seconds per iteration (default fit): "
              + ", ".join(f"{t:.2f}" for t in per_iter))
        avail = psutil.virtual_memory().available
        if avail > 3 * size:
            compare_path, compare_params = path, params
            what = f"the {size / 1e9:.2f} GB file"
        else:
            small = os.path.join(args.dir, f"fastgmm_bench_{os.getpid()}_small.npy")
            write_data(small, int(args.compare_gb * 1e9 / (8 * D)))
            _, compare_params = run_child(small, args.iters)
            compare_path = small
            what = f"a {args.compare_gb} GB file (not enough free memory for the big one)"
        ref = in_memory_fit(compare_path, args.iters)
        diff = max_rel_diff(compare_params, ref)
        print(f"out-of-core vs in-memory fit from the same initial parameters on {what}: "
              f"max relative difference {diff:.2e} (target <= 1e-10)")
    finally:
        for p in (path, small):
            if p and os.path.exists(p):
                os.remove(p)
        print("deleted the benchmark files")


if __name__ == "__main__":
    main()
