"""The import rules (.importlinter, docs/architecture.md) hold, a violation breaks the check,
and the product code has no import cycles beyond the agent's two known ones."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("edge_protocol", "edge_common", "edge_agent", "hub")
# Cycles issue 11 found in the agent, to be removed by its composition root; this list may
# only shrink (the test fails when one disappears, so it is taken off here).
KNOWN_CYCLES = [
    ["edge_agent.collectors", "edge_agent.config"],
    ["edge_agent.agent", "edge_agent.sync", "edge_agent.sync.client"],
]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(exe), "--no-cache", str(root / ".importlinter")], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def test_the_import_rules_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _copy(tmp_path: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg,
                        ignore=lambda d, names: [n for n in names if n == "__pycache__" or (
                            not n.endswith(".py") and not (Path(d) / n).is_dir())])
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


BAD = {
    "the protocol imports the agent": ("edge_protocol/topics.py", "import edge_agent.reading"),
    "the hub imports the agent": ("hub/domains/fleet/state.py", "from edge_agent import reading"),
    "the agent imports the hub": ("edge_agent/outbox.py", "import hub.errors"),
    "a domain imports ingest (a higher layer)": ("hub/domains/alerts/feed.py",
                                                 "import hub.ingest"),
    "the store imports a domain": ("hub/store/base.py", "import hub.domains.fleet"),
    "a domain imports paho": ("hub/domains/fleet/state.py", "import paho.mqtt.client"),
    "ingest imports sqlite3": ("hub/ingest/writer.py", "import sqlite3"),
    "the CLI imports psycopg": ("hub/cli/fleet.py", "import psycopg"),
    "a domain imports another domain": ("hub/domains/fleet/state.py",
                                        "import hub.domains.alerts"),
}


@pytest.mark.parametrize("path,line", BAD.values(), ids=BAD.keys())
def test_a_bad_import_breaks_the_check(tmp_path, path, line):
    root = _copy(tmp_path)
    target = root / path
    target.write_text(target.read_text() + f"\n{line}  # a deliberate violation\n")
    result = lint_imports(root)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    # ...because of this line: the report names the module that imports it, at that line.
    module = path.removesuffix(".py").replace("/", ".")
    lineno = len(target.read_text().splitlines())
    assert f"{module} -> " in result.stdout and f"(l.{lineno})" in result.stdout, result.stdout


def _cycles() -> list[list[str]]:
    import grimp

    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*PACKAGES)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10000))
    try:
        for module in sorted(graph.modules):
            if module not in index:
                strong(module)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def test_no_import_cycles_in_product_code_beyond_the_known_ones():
    assert _cycles() == sorted(KNOWN_CYCLES)
