"""Every compiled function of fastgmm takes at most 12 positional arguments and
is at most 150 lines long (``def`` line to the last line of its body).

Drivers take named tuples (the model, the dense path, the hints, the grid,
the slots) instead of long runs of positional arguments, and long kernels
are split into named steps; ``bench_scripts/kernel_interface.py`` lists them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

MAX_POSITIONAL = 12
MAX_LINES = 150

_SCRIPT = Path(__file__).resolve().parents[1] / "bench_scripts" / "kernel_interface.py"


def _listing():
    spec = importlib.util.spec_from_file_location("kernel_interface", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compiled_functions()


FUNCTIONS = _listing()


def test_every_kernel_module_is_listed():
    # Every module that compiles functions is covered, the kernel files included.
    assert {row[0] for row in FUNCTIONS} >= {
        "fastgmm._kernels", "fastgmm._kernels_missing", "fastgmm._kernels_kmeans",
        "fastgmm._orientation"}
    assert len(FUNCTIONS) > 40


@pytest.mark.parametrize("module, name, n_pos, n_lines", FUNCTIONS,
                         ids=[f"{row[0].rsplit('.', 1)[1]}.{row[1]}" for row in FUNCTIONS])
def test_compiled_function_is_short_with_few_positional_arguments(module, name, n_pos,
                                                                   n_lines):
    assert n_pos <= MAX_POSITIONAL, (module, name, n_pos)
    assert n_lines <= MAX_LINES, (module, name, n_lines)
