"""Kernels compile in memory, with one warning, where Numba cannot cache on disk.

Numba looks for a writable cache folder when a cached dispatcher is made:
``NUMBA_CACHE_DIR``, the package's ``__pycache__``, then the user's cache
folder (``$XDG_CACHE_HOME`` or ``~/.cache``).  Tests run as root, for whom
``chmod`` stops no write, so each of those is made impossible instead: the
package copy's ``__pycache__`` is a regular file, and the other folders lie
under a regular file, where no folder can be created.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from fastgmm import _config

ROOT = Path(__file__).resolve().parents[1]
MESSAGE = "Numba cannot cache compiled kernels on disk"


def _no_writable_cache(tmp_path: Path) -> dict:
    """A copy of the package where Numba finds no cache folder; its environment."""
    package = tmp_path / "site" / "fastgmm"
    shutil.copytree(ROOT / "fastgmm", package,
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    for folder in [package, *package.rglob("*")]:
        if folder.is_dir():
            (folder / "__pycache__").write_text("not a folder")
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file: nothing can be created under it")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("NUMBA_", "PYTHON"))}
    env.update(PYTHONPATH=str(tmp_path / "site"), PYTHONDONTWRITEBYTECODE="1",
               HOME=str(blocker / "home"), XDG_CACHE_HOME=str(blocker / "cache"),
               NUMBA_CACHE_DIR=str(blocker / "numba"), MPLBACKEND="Agg")
    return env


@pytest.mark.slow
def test_the_command_line_runs_without_a_writable_cache(tmp_path):
    env = _no_writable_cache(tmp_path)
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0.0, 1.0, (100, 2)), rng.normal(5.0, 1.0, (100, 2))])
    np.savetxt(tmp_path / "data.csv", X, delimiter=",", header="a,b", comments="")
    proc = subprocess.run(
        [sys.executable, "-m", "fastgmm", "fit", "data.csv", "--k", "2", "--covariance",
         "diag", "--seed", "0", "--quiet", "--out", "model.npz"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count(MESSAGE) == 1, proc.stderr
    assert [line for line in proc.stderr.splitlines() if MESSAGE in line] == [
        line for line in proc.stderr.splitlines() if line.strip()], proc.stderr
    assert "model written to model.npz" in proc.stdout
    # The kernels ran from memory: nothing was cached anywhere in the copy.
    assert not list((tmp_path / "site").rglob("*.nbi"))


def _fake_njit(real):
    """``numba.njit`` as it behaves where no cache folder can be found."""
    def njit(*args, **options):
        if options.get("cache"):
            def decorate(func):
                raise RuntimeError(f"cannot cache function {func.__name__!r}: no locator "
                                   "available for file '/read-only/fastgmm/_kernels.py'")
            return decorate
        return real(*args, **options)  # Numba's own uses pass through
    return njit


def test_jit_falls_back_to_memory_and_warns_once(monkeypatch):
    import numba

    monkeypatch.setattr(numba, "njit", _fake_njit(numba.njit))
    monkeypatch.setattr(_config, "_cache_unavailable", False)

    def add(a, b):
        return a + b

    def twice(a):
        return 2 * a

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast_add = _config.jit()(add)
        fast_twice = _config.jit(inline=True)(twice)
    assert [str(w.message) for w in caught if MESSAGE in str(w.message)] == [
        str(caught[0].message)]
    assert caught[0].category is RuntimeWarning and len(caught) == 1
    assert fast_add(2, 3) == 5 and fast_twice(4) == 8


def test_jit_lets_other_compilation_errors_through(monkeypatch):
    import numba

    def broken_njit(*args, **options):
        def decorate(func):
            raise RuntimeError("something else went wrong")
        return decorate

    monkeypatch.setattr(numba, "njit", broken_njit)
    monkeypatch.setattr(_config, "_cache_unavailable", False)
    with pytest.raises(RuntimeError, match="something else"):
        _config.jit()(lambda a: a)
    assert _config._cache_unavailable is False


#: Fits every covariance type (complete rows, then rows with missing
#: entries, both dtypes' kernels where the fit reaches them), predicts, and
#: prints the compilations (cache misses) and cache loads (hits) of every
#: compiled function of the package.
_FIT_AND_COUNT = """
import numpy as np
from numba.core.registry import CPUDispatcher

import fastgmm
from fastgmm import _kernels, _kernels_kmeans, _kernels_missing

rng = np.random.default_rng(0)
X = np.vstack([rng.normal(0.0, 1.0, (3000, 5)), rng.normal(4.0, 1.0, (3000, 5))])
Xm = X.copy()
Xm[:, 1:][rng.random((6000, 4)) < 0.1] = np.nan
for ctype in ("full", "tied", "diag", "spherical"):
    model = fastgmm.fit(X, 2, covariance_type=ctype, max_iter=5, random_state=0)
    model.predict_proba(X[:100])
    model = fastgmm.fit(Xm, 2, covariance_type=ctype, max_iter=5, random_state=0,
                        missing="marginalize")
    model.score_samples(Xm[:100])
misses = hits = 0
for module in (_kernels, _kernels_kmeans, _kernels_missing):
    for obj in vars(module).values():
        if isinstance(obj, CPUDispatcher):
            misses += sum(obj.stats.cache_misses.values())
            hits += sum(obj.stats.cache_hits.values())
print("misses", misses, "hits", hits)
"""


@pytest.mark.slow
def test_a_second_process_loads_every_kernel_from_the_disk_cache(tmp_path):
    # The drivers take named tuples: Numba types them by class and field
    # types, and must still find them in its on-disk index from another
    # process (no timing: the cache's own counters say whether it compiled).
    env = {key: value for key, value in os.environ.items() if not key.startswith("NUMBA_")}
    env.update(PYTHONPATH=str(ROOT), NUMBA_CACHE_DIR=str(tmp_path / "cache"))

    def run() -> tuple[int, int]:
        proc = subprocess.run([sys.executable, "-c", _FIT_AND_COUNT], env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr
        words = proc.stdout.split()
        return int(words[words.index("misses") + 1]), int(words[words.index("hits") + 1])

    first_misses, _ = run()
    assert first_misses > 0  # it compiled into the fresh cache
    misses, hits = run()
    assert misses == 0
    assert hits > 0
