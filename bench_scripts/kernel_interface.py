"""List every compiled function of fastgmm: positional arguments and source lines.

Usage::

    PYTHONPATH=. python bench_scripts/kernel_interface.py [--sort args|lines|name]

A function's length is counted from its ``def`` line to the last line of its
body (decorators left out), as ``tests/test_kernel_interface.py`` checks it.
"""

from __future__ import annotations

import argparse
import importlib
import inspect


def kernel_modules() -> list[str]:
    """Every module of the package whose source compiles functions (uses the jit decorator)."""
    import pathlib

    import fastgmm

    root = pathlib.Path(fastgmm.__file__).parent
    return sorted(f"fastgmm.{p.stem}" for p in root.glob("*.py")
                  if "@jit(" in p.read_text() and p.stem != "_config")


def compiled_functions() -> list[tuple[str, str, int, int]]:
    """``(module, name, positional arguments, lines)`` of each dispatcher of the package."""
    from numba.core.registry import CPUDispatcher

    rows = []
    for mod_name in kernel_modules():
        module = importlib.import_module(mod_name)
        for name, obj in vars(module).items():
            if not isinstance(obj, CPUDispatcher) or obj.py_func.__module__ != mod_name:
                continue
            func = obj.py_func
            params = inspect.signature(func).parameters.values()
            n_pos = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
            lines, _ = inspect.getsourcelines(func)
            # Leave out the decorator lines: count from ``def``.
            first = next(i for i, line in enumerate(lines) if line.lstrip().startswith("def "))
            rows.append((mod_name, name, n_pos, len(lines) - first))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sort", choices=("name", "args", "lines"), default="name")
    args = parser.parse_args()
    rows = compiled_functions()
    key = {"name": lambda r: (r[0], r[1]), "args": lambda r: -r[2], "lines": lambda r: -r[3]}
    rows.sort(key=key[args.sort])
    print(f"{'module':26s} {'function':28s} {'args':>4s} {'lines':>5s}")
    for mod, name, n_pos, n_lines in rows:
        print(f"{mod:26s} {name:28s} {n_pos:4d} {n_lines:5d}")
    print(f"\n{len(rows)} compiled functions; most positional arguments "
          f"{max(r[2] for r in rows)}, longest {max(r[3] for r in rows)} lines")


if __name__ == "__main__":
    main()
