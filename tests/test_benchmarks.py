"""Keep the asv suite and the comparison script runnable (tiny sizes)."""

import importlib
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=["bench_fit", "bench_regimes"])
def bench(request):
    os.environ["FASTGMM_BENCH_QUICK"] = "1"
    sys.path.insert(0, str(ROOT / "asv_bench"))
    try:
        import benchmarks.common
        importlib.reload(benchmarks.common)
        mod = importlib.import_module(f"benchmarks.{request.param}")
        importlib.reload(mod)
        yield mod
    finally:
        sys.path.remove(str(ROOT / "asv_bench"))
        os.environ.pop("FASTGMM_BENCH_QUICK", None)


def _cases(cls):
    params = getattr(cls, "params", None)
    if params is None:
        return [()]
    if getattr(cls, "param_names", None) == ["case"]:
        # Every named problem once: each family's generator and shape must fit.
        return [(name,) for name in params[0]]
    first = [p[0] for p in params]
    return [tuple(first)]


def test_every_benchmark_method_runs(bench):
    """Every asv benchmark method runs at quick sizes, parity trackers near zero."""
    ran = 0
    for _, cls in inspect.getmembers(bench, inspect.isclass):
        if cls.__module__ != bench.__name__:
            continue
        for args in _cases(cls):
            obj = cls()
            obj.setup(*args) if hasattr(obj, "setup") else None
            for name, fn in inspect.getmembers(obj, inspect.ismethod):
                if name.startswith(("time_", "peakmem_", "track_")):
                    out = fn(*args)
                    if name.startswith("track_loglik_gap"):
                        assert abs(out) < 1e-6  # parity with scikit-learn
                    elif name.startswith("track_"):
                        assert np.isfinite(out)
                    ran += 1
                elif name.startswith("timeraw_"):
                    code = fn(*args)
                    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
                    ran += 1
    assert ran >= 10


def _asv() -> str:
    """The asv of this interpreter's environment (the test extra installs it)."""
    beside = Path(sys.executable).with_name("asv")
    found = str(beside) if beside.is_file() else shutil.which("asv")
    assert found, "asv is part of the test extra: pip install '.[test]'"
    return found


def test_asv_check_passes():
    """``asv`` check accepts the benchmark suite."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([_asv(), "check", "--python=same"], cwd=ROOT / "asv_bench",
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_compare_script_quick_runs():
    """The comparison script starts and documents --quick."""
    r = subprocess.run([sys.executable, "bench_scripts/compare.py", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--quick" in r.stdout


def test_compare_script_runs_one_family():
    # One small case end to end through the script (scikit-learn included), so
    # that the table code and --family run, not only the argument parser.
    r = subprocess.run([sys.executable, "bench_scripts/compare.py", "--quick",
                        "--family", "overlap-tied-d39-k64"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("overlap-tied-d39-k64"))
    assert "nan" not in row and "raised" not in row
    assert "default threads" in r.stdout


def test_compare_script_rejects_unknown_family():
    r = subprocess.run([sys.executable, "bench_scripts/compare.py", "--family", "nope"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown case" in r.stderr


def test_families_are_seeded_and_shaped():
    sys.path.insert(0, str(ROOT / "asv_bench"))
    try:
        from benchmarks.common import END_TO_END, FAMILIES
    finally:
        sys.path.remove(str(ROOT / "asv_bench"))
    for case in [*FAMILIES.values(), *END_TO_END.values()]:
        n = case.rows(divisor=200)
        X, means0 = case.data(n)
        X2, means2 = case.data(n)
        assert X.shape == (n, case.d) and X.dtype == np.dtype(case.dtype)
        assert means0.shape == (case.k, case.d) and means0.dtype == np.float64
        np.testing.assert_array_equal(X, X2)
        np.testing.assert_array_equal(means0, means2)
        if case.family != "separated":
            # Started from distinct rows of the data themselves.
            rows = {tuple(r) for r in X.astype(np.float64)}
            assert all(tuple(m) in rows for m in means0)
            assert len({tuple(m) for m in means0}) == case.k
