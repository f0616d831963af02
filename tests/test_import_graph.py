"""The package's modules import one another without a cycle.

The graph is read from the source with :mod:`ast`: every import of a
fastgmm module counts, at module level or inside a function, in each form
(``from . import x``, ``from .x import y``, ``from ._x import y``,
``import fastgmm.x``, ``from fastgmm.x import y``); importing a name the
package itself defines (``from . import __version__``, ``import fastgmm``)
counts as importing ``__init__``.  Imports by name at run time
(``importlib.import_module``) are not edges: the package's lazy attributes
and the model-file registry (:mod:`fastgmm._registry`) look classes up so.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fastgmm"

def _modules() -> set[str]:
    return {p.stem for p in PACKAGE.glob("*.py")}


def _target(dotted: str, modules: set[str]) -> str | None:
    """The package module a dotted name inside the package names (``''``: the package)."""
    head = dotted.split(".")[0]
    if not head:
        return "__init__"
    return head if head in modules else None


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The fastgmm modules that the module at ``path`` imports, anywhere in it."""
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "fastgmm":
                    edges.add(parts[1] if len(parts) > 1 and parts[1] in modules
                              else "__init__")
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module is None or node.module.split(".")[0] != "fastgmm":
                    continue
                inner = node.module.split(".")[1:]
            elif node.level == 1:
                inner = node.module.split(".") if node.module else []
            else:  # above the package: not a fastgmm module
                continue
            if inner:
                target = _target(inner[0], modules)
                if target is not None:
                    edges.add(target)
            else:
                # ``from . import x``: the module x, or a name of the package.
                for alias in node.names:
                    edges.add(alias.name if alias.name in modules else "__init__")
    return edges


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name in sorted(modules):
        graph[name] = imports_of(PACKAGE / f"{name}.py", modules) - {name}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(frozenset(component))
    return found


def a_cycle(graph: dict[str, set[str]], component: frozenset[str]) -> list[str]:
    """One cycle through the component, as a path that returns to its start."""
    start = min(component)
    parents = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & component):
            if child == start:
                path = [node]
                while parents[path[-1]] is not None:
                    path.append(parents[path[-1]])
                return [*reversed(path), start]
            if child not in parents:
                parents[child] = node
                queue.append(child)
    raise AssertionError("not a cycle")  # pragma: no cover


def test_no_import_cycle():
    graph = import_graph()
    cycles = list(strongly_connected(graph))
    assert not cycles, "import cycles in fastgmm: " + "; ".join(
        " -> ".join(a_cycle(graph, c)) + f" (modules {sorted(c)})" for c in cycles)


def test_the_walk_sees_every_form_of_import(tmp_path):
    # A regression of the walk would hide cycles: it must count each form.
    modules = {"__init__", "_a", "_b", "_c", "_d", "_e", "_f"}
    src = tmp_path / "m.py"
    src.write_text(
        "import os\n"
        "from . import _a\n"
        "from ._b import thing\n"
        "from .. import elsewhere\n"
        "import fastgmm._c\n"
        "def f():\n"
        "    from fastgmm._d import y\n"
        "    from . import __version__\n"
        "class K:\n"
        "    def g(self):\n"
        "        from fastgmm import _e\n"
        "        import fastgmm\n"
        "        from ._f.sub import z\n")
    assert imports_of(src, modules) == {"_a", "_b", "_c", "_d", "_e", "_f", "__init__"}


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [frozenset({"a", "b"})]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}},
     [frozenset({"a", "b", "c"}), frozenset({"d", "e"})]),
])
def test_components(graph, expected):
    assert sorted(map(sorted, strongly_connected(graph))) == sorted(map(sorted, expected))
    for component in expected:
        cycle = a_cycle(graph, component)
        assert cycle[0] == cycle[-1] and set(cycle) == component
        assert all(b in graph[a] for a, b in zip(cycle, cycle[1:], strict=False))

