"""The vocabulary: every name documented in docs/vocabulary.md, and values checked by type."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT
from edge_protocol import vocabulary
from edge_protocol.vocabulary import NAMES, check_value, lookup

DOC = ROOT / "docs" / "vocabulary.md"
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*([^|]*)\|")


def documented() -> dict[str, tuple[str, str]]:
    """Map each name that opens a table row of docs/vocabulary.md to (type cell, whole row)."""
    out = {}
    for line in DOC.read_text().splitlines():
        m = ROW.match(line)
        if m:
            out.setdefault(m.group(1), (m.group(2).strip(), line))
    return out


def test_every_vocabulary_name_is_documented_in_docs_vocabulary_md():
    rows = documented()
    missing = [n.pattern for n in NAMES if n.pattern not in rows]
    assert not missing, f"add a row to docs/vocabulary.md for: {', '.join(missing)}"


def test_each_documented_row_gives_the_names_type_or_its_enum_values():
    rows = documented()
    problems = []
    for name in NAMES:
        if name.pattern not in rows:
            continue
        type_cell, row = rows[name.pattern]
        if name.type == "enum":
            words = set(re.findall(r"[A-Za-z_]+", row))
            missing = [c for c in name.choices if c not in words]
            if missing:
                problems.append(f"{name.pattern}: values {missing} not in its row")
        elif type_cell.split(",")[0].strip() != name.type:
            problems.append(f"{name.pattern}: documented as {type_cell!r}, is {name.type}")
    assert not problems, "\n".join(problems)


def test_every_name_is_unique():
    patterns = [n.pattern for n in NAMES]
    assert len(patterns) == len(set(patterns))


VALUES = {
    "an enum value in the list is valid": ("printer.paper", "near_end", None),
    "an enum value outside the list is named": ("printer.paper", "low", "expected one of"),
    "an indexed name matches its pattern": ("supply.3.level_pct", 12.5, None),
    "a nullable name accepts null": ("supply.3.level_pct", None, None),
    "a name that is not nullable refuses null": ("host.cpu_pct", None, "must not be null"),
    "a bool is not an int": ("poll.errors", True, "expected int"),
    "an int is a float": ("host.cpu_pct", 3, None),
    "infinity is not a float value": ("host.cpu_pct", float("inf"), "expected float"),
    "an integer too large for a float is refused, not a crash": ("host.cpu_pct", 10 ** 400,
                                                                 "expected float"),
    "an unknown name is named": ("host.colour", "red", "not in the vocabulary"),
    "an index with a dot does not match": ("supply.1.2.level_pct", 1.0, "not in the vocabulary"),
}


@pytest.mark.parametrize("name,value,problem", VALUES.values(), ids=VALUES.keys())
def test_values_are_checked_against_the_vocabulary(name, value, problem):
    why = check_value(name, value)
    if problem is None:
        assert why is None
    else:
        assert why is not None and problem in why


def test_lookup_finds_exact_and_indexed_names():
    assert lookup("device.status").pattern == "device.status"
    assert lookup("host.proc.pos_exe.running").pattern == "host.proc.<n>.running"
    assert lookup("nope") is None
    assert vocabulary.DEVICE_STATUSES == lookup("device.status").choices
