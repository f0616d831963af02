"""Keep the asv suite and the comparison script runnable (tiny sizes)."""

import importlib
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    os.environ["FASTGMM_BENCH_QUICK"] = "1"
    sys.path.insert(0, str(ROOT / "asv_bench"))
    try:
        import benchmarks.common
        importlib.reload(benchmarks.common)
        mod = importlib.import_module("benchmarks.bench_fit")
        importlib.reload(mod)
        yield mod
    finally:
        sys.path.remove(str(ROOT / "asv_bench"))
        os.environ.pop("FASTGMM_BENCH_QUICK", None)


def _cases(cls):
    params = getattr(cls, "params", None)
    if params is None:
        return [()]
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
                    if name.startswith("track_"):
                        assert abs(out) < 1e-6  # parity with scikit-learn
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
