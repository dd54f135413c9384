"""No import cycles in the product code: every module's imports, read with ast, form a DAG.

Every import counts, wherever it is written: at the top, inside a function (a lazy import is
still a dependency, only a later one) and under `if TYPE_CHECKING:` (a type a module needs is a
dependency of its design). A package's implicit import of its parents does not count (Python
imports `a` before `a.b`; that is not a choice anyone made). A failure names the cycle, module
by module, with the line of each import, so it can be cut where it makes sense.
"""

from __future__ import annotations

import ast
import graphlib
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testenv import ROOT

# The agent, and the packages it shares with the hub once they exist (issue 11's layout).
PACKAGES = tuple(p for p in ("edge_agent", "edge_protocol", "edge_common")
                 if (ROOT / p / "__init__.py").exists())


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Every module of the packages under `root`: dotted name -> file."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(root, path)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """The modules of `known` that module `name` imports, each with the line of its import."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: list[tuple[str, int]] = []

    def add(target: str, line: int) -> None:
        # `import a.b.c` binds a, but depends on a.b.c: take the longest known prefix.
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.append((target, line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                # `from a import b`: b is the submodule a.b if there is one, else a name in a.
                sub = f"{source}.{alias.name}"
                add(sub if sub in known else source, node.lineno)
    return out


def graph(root: Path, packages=PACKAGES) -> dict[str, list[tuple[str, int]]]:
    found = modules(root, packages)
    known = set(found)
    return {name: imports(name, path, known) for name, path in found.items()}


def cycles(edges: dict[str, list[tuple[str, int]]]) -> list[list[tuple[str, int]]]:
    """One cycle through each strongly connected component that has one (Tarjan, iterative).

    A cycle is [(module, line of its import of the next module), ...], closing on the first.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = [t for t, _ in edges.get(node, ())]
            if i < len(targets):
                work.append((node, i + 1))
                nxt = targets[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    found = []
    for component in components:
        members = set(component)
        if len(component) > 1:
            found.append(_cycle_in(min(component), members, edges))
    return sorted(found)


def _cycle_in(start: str, members: set[str], edges) -> list[tuple[str, int]]:
    """The shortest cycle from `start` back to it inside one component (breadth first)."""
    came: dict[str, tuple[str, int]] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target, line in edges[node]:
            if target not in members:
                continue
            if target == start:
                path = [(node, line)]
                while node != start:
                    node, line = came[node]
                    path.append((node, line))
                return list(reversed(path))
            if target not in came:
                came[target] = (node, line)
                queue.append(target)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - a component has one


def describe(cycle: list[tuple[str, int]]) -> str:
    steps = [f"{mod} (line {line}) imports" for mod, line in cycle]
    return " ".join(steps) + f" {cycle[0][0]}"


def test_the_agent_and_its_shared_packages_have_no_import_cycles():
    found = cycles(graph(ROOT))
    assert not found, "import cycles:\n" + "\n".join(describe(c) for c in found)


# The checker itself: it must see a cycle however it is written, and name it.

def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.mark.parametrize("files,expected", [
    ({"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n", "pkg/b.py": "import pkg.a\n"},
     "pkg.a (line 1) imports pkg.b (line 1) imports pkg.a"),
    # A lazy import inside a function, and one under TYPE_CHECKING, close a cycle too.
    ({"pkg/__init__.py": "", "pkg/a.py": "def f():\n    from pkg.b import g\n",
      "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n"},
     "pkg.a (line 2) imports pkg.b (line 3) imports pkg.a"),
    # A name imported from a package's __init__ is a dependency on the package itself.
    ({"pkg/__init__.py": "from pkg.sub.c import x\n", "pkg/sub/__init__.py": "",
      "pkg/sub/c.py": "from pkg import y\nx = 1\n"},
     "pkg (line 1) imports pkg.sub.c (line 1) imports pkg"),
    # Relative imports resolve from the module's package.
    ({"pkg/__init__.py": "", "pkg/sub/__init__.py": "", "pkg/sub/c.py": "from ..d import z\n",
      "pkg/d.py": "from .sub import c\n"},
     "pkg.d (line 1) imports pkg.sub.c (line 1) imports pkg.d"),
], ids=["top level", "lazy and TYPE_CHECKING", "package init", "relative"])
def test_the_checker_finds_and_names_a_cycle(tmp_path, files, expected):
    root = write(tmp_path, files)
    found = cycles(graph(root, ("pkg",)))
    assert [describe(c) for c in found] == [expected]


def test_the_checker_accepts_a_package_that_imports_its_submodules_and_a_dag(tmp_path):
    root = write(tmp_path, {
        "pkg/__init__.py": "from pkg import a\n",   # a package importing its own submodule
        "pkg/a.py": "import os\nfrom pkg import b\nfrom pkg.b import name\n",
        "pkg/b.py": "from . import c\n",
        "pkg/c.py": "import json\n"})
    assert cycles(graph(root, ("pkg",))) == []


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(0, 7), st.lists(st.integers(0, 7), max_size=4), max_size=8))
def test_the_checker_agrees_with_a_topological_sort(adjacency):
    # Any directed graph: a cycle is reported exactly when graphlib cannot order it, and each
    # reported cycle is a real one (every step is an edge, and it closes).
    # Self-imports are left out: imports() never records one.
    edges = {f"m{n}": [(f"m{t}", 1) for t in targets if t != n]
             for n, targets in adjacency.items()}
    for targets in adjacency.values():
        for t in targets:
            edges.setdefault(f"m{t}", [])
    found = cycles(edges)
    try:
        graphlib.TopologicalSorter({n: [t for t, _ in ts] for n, ts in edges.items()}).prepare()
        acyclic = True
    except graphlib.CycleError:
        acyclic = False
    assert (found == []) is acyclic
    for cycle in found:
        assert len(cycle) >= 2
        for (mod, _), (nxt, _) in zip(cycle, cycle[1:] + cycle[:1]):
            assert nxt in [t for t, _ in edges[mod]]
