"""fastgmm._parallel: sharing row groups between threads, folding slots, thread limits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import numba
import numpy as np
import pytest
from conftest import TWO_BLOBS

import fastgmm
from fastgmm._config import SERIAL_THRESHOLD
from fastgmm._parallel import fold_slots, numba_threads, run_groups, thread_limit

BIG = SERIAL_THRESHOLD  # rows worth sharing between threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

needs_two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                       reason="Numba was started with one thread")


class Recorder:
    """A stand-in kernel: records the group ranges and the threads that ran them."""

    def __init__(self, delay=0.0, fail_at=None):
        self.calls = []
        self.lock = threading.Lock()
        self.delay = delay
        self.fail_at = fail_at

    def __call__(self, tag, lo, hi):
        assert tag == "args"
        if self.fail_at is not None and lo <= self.fail_at < hi:
            raise ValueError("kernel failed")
        time.sleep(self.delay)
        with self.lock:
            self.calls.append((lo, hi, threading.get_ident()))


def _covered(calls, n):
    groups = sorted(g for lo, hi, _ in calls for g in range(lo, hi))
    return groups == list(range(n))


@pytest.mark.parametrize("n_groups", [1, 2, 7, 64, 257])
def test_every_group_runs_exactly_once(n_groups):
    """run_groups calls the kernel on blocks that cover every group exactly once."""
    rec = Recorder()
    run_groups(rec, ("args",), n_groups, BIG)
    assert _covered(rec.calls, n_groups)


def test_few_rows_are_one_call_on_the_calling_thread():
    """Below the serial threshold all groups run in one call on the calling thread."""
    rec = Recorder()
    run_groups(rec, ("args",), 40, BIG - 1)
    assert rec.calls == [(0, 40, threading.get_ident())]


def test_one_thread_runs_on_the_calling_thread():
    """With one thread all groups run in one call on the calling thread, whatever the rows."""
    rec = Recorder()
    with thread_limit(1):
        run_groups(rec, ("args",), 40, BIG)
    assert rec.calls == [(0, 40, threading.get_ident())]


@needs_two_threads
def test_two_threads_share_the_groups():
    """Two threads both run groups, handed out in several blocks rather than one half each."""
    rec = Recorder(delay=0.01)
    with thread_limit(2):
        run_groups(rec, ("args",), 32, BIG)
    assert _covered(rec.calls, 32)
    assert len({t for _, _, t in rec.calls}) == 2
    assert len(rec.calls) > 2  # handed out in blocks, not one half each


@needs_two_threads
@pytest.mark.parametrize("fail_at", [0, 31])
def test_a_failing_block_raises_after_the_others_stopped(fail_at):
    """A kernel error propagates, and no block is still running once run_groups has raised."""
    rec = Recorder(delay=0.005, fail_at=fail_at)
    with thread_limit(2), pytest.raises(ValueError, match="kernel failed"):
        run_groups(rec, ("args",), 32, BIG)
    n_done = len(rec.calls)
    time.sleep(0.05)
    assert len(rec.calls) == n_done  # nothing still running in the background


class FailsOnHelper(Recorder):
    """Fails on the first block a helper thread runs; the calling thread's blocks succeed."""

    def __init__(self, delay):
        super().__init__(delay=delay)
        self.caller = threading.get_ident()

    def __call__(self, tag, lo, hi):
        if threading.get_ident() != self.caller:
            raise ValueError("kernel failed")
        super().__call__(tag, lo, hi)


@needs_two_threads
def test_a_failing_helper_stops_the_calling_thread_too():
    """An error on a helper thread stops the calling thread from running the remaining groups."""
    rec = FailsOnHelper(delay=0.02)
    with thread_limit(2), pytest.raises(ValueError, match="kernel failed"):
        run_groups(rec, ("args",), 32, BIG)
    # Without the stop, the calling thread would run every group the helper
    # did not take (24 or more of 32).
    assert sum(hi - lo for lo, hi, _ in rec.calls) < 20


@needs_two_threads
def test_many_callers_at_once():
    """Six Python threads sharing the pool each get all their groups run exactly once."""
    recs = [Recorder(delay=0.001) for _ in range(6)]

    def job(rec):
        with thread_limit(2):
            run_groups(rec, ("args",), 50, BIG)

    threads = [threading.Thread(target=job, args=(r,)) for r in recs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(_covered(r.calls, 50) for r in recs)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_can_fit_after_the_parent_did():
    """The pool's threads do not survive ``fork``; the child must start its own."""
    script = textwrap.dedent("""
        import multiprocessing as mp, numpy as np, fastgmm

        def fit(seed):
            X = np.random.default_rng(seed).normal(size=(20000, 2))
            return fastgmm.GaussianMixture(2, random_state=0, max_iter=5).fit(X).means_

        if __name__ == "__main__":
            parent = fit(1)
            with mp.get_context("fork").Pool(1) as pool:
                child = pool.apply_async(fit, (1,)).get(timeout=120)
            assert np.array_equal(parent, child)
            print("OK")
    """)
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "OK" in out.stdout


# ---------------------------------------------------------------------------
# Folding slots
# ---------------------------------------------------------------------------


def test_fold_slots_adds_the_used_slots_in_order():
    """``acc += slot[0] + ... + slot[n_used - 1]``, left to right (the same bits as
    numpy adding them one after another), for accumulators of any shape; slots
    past ``n_used`` are never read.
    """
    rng = np.random.default_rng(0)
    slots = (rng.normal(size=(9, 3, 2, 2)) * 10.0 ** rng.integers(-8, 8, size=(9, 3, 2, 2)),
             rng.normal(size=(9, 5)))
    accs = (rng.normal(size=(3, 2, 2)), rng.normal(size=5))
    expected = [a.copy() for a in accs]
    for c in range(6):
        expected = [e + s[c] for e, s in zip(expected, slots, strict=True)]
    for s in slots:
        s[6:] = np.nan
    fold_slots(slots, 6, accs)
    for got, want in zip(accs, expected, strict=True):
        np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------
# Thread limits: Numba's threads and BLAS's
# ---------------------------------------------------------------------------


def test_numba_threads_clips_to_the_started_threads_and_restores():
    """A limit above the threads Numba started with is clipped to them; the previous
    setting comes back after the block, also when it raises.
    """
    before = numba.get_num_threads()
    most = numba.config.NUMBA_NUM_THREADS
    with numba_threads(10 * most) as n:
        assert n == most == numba.get_num_threads()
    assert numba.get_num_threads() == before
    with pytest.raises(RuntimeError), numba_threads(1) as n:
        assert n == 1 == numba.get_num_threads()
        raise RuntimeError
    assert numba.get_num_threads() == before
    with numba_threads(None) as n:
        assert n == before


def test_n_threads_is_restored():
    """Fitting and predicting with n_threads set leave Numba's thread count as it was."""
    X = TWO_BLOBS
    before = numba.get_num_threads()
    g = fastgmm.GaussianMixture(2, n_threads=1, random_state=0).fit(X)
    assert numba.get_num_threads() == before
    g.predict(X)
    assert numba.get_num_threads() == before


def test_blas_runs_on_one_thread_during_fits_and_is_restored():
    """During a fit every BLAS library (scipy's included) runs on one thread, and the limits are
    restored afterwards.
    """
    # BLAS only sees the M-step's d x d factorisations; its idle threads
    # would otherwise spin next to Numba's after every call.  scipy's own
    # OpenBLAS is loaded lazily (on the first M-step): it must be limited
    # too.  A fresh interpreter, so that nothing has loaded scipy before.
    import subprocess
    import sys

    code = """
import numpy as np, fastgmm
from threadpoolctl import threadpool_info
def blas():
    return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
seen = []
X = np.random.default_rng(0).normal(size=(3000, 3))
fastgmm.GaussianMixture(2, covariance_type="full", random_state=0,
                        callback=lambda info: seen.append(blas())).fit(X)
during = {v for s in seen for v in s.values()}
after = blas()
print(during, len(seen[-1]), len(after), max(after.values()))
assert during == {1}, seen
assert len(seen[-1]) == len(after)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
