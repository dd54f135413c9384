"""The permission matrix, cell by cell: every role x action x (inside its scope, outside it,
chain-wide) is authorized exactly as the hand-written table below says, and docs/access.md
shows the same table. The cases are generated from the matrix, and checked against EXPECTED,
written by hand, so a change to either one fails here."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT
from hub.domains.access import (ACTIONS, MATRIX, ROLES, Actor, allows, authorize, local_actor,
                                scope, system_actor)
from hub.errors import Forbidden

# Written by hand from issue 12's roles: A = anywhere, S = only inside its scope, - = never.
EXPECTED = """
action            hq-admin  it-operator  regional-manager  store-manager  auditor
fleet.read        A         A            S                 S              A
alerts.read       A         A            S                 S              A
alerts.ack        A         A            S                 S              -
devices.act       A         A            -                 -              -
rollouts.read     A         A            -                 -              -
tickets.read      A         A            S                 S              A
tickets.write     A         A            -                 -              -
approvals.decide  A         -            S                 S              -
audit.read        A         -            -                 -              A
users.read        A         -            -                 -              A
users.manage      A         -            -                 -              -
keys.manage       A         -            -                 -              -
"""
CODE = {"A": "all", "S": "scoped", "-": None}


def expected() -> dict[tuple[str, str], str | None]:
    lines = [line.split() for line in EXPECTED.strip().splitlines()]
    roles = lines[0][1:]
    return {(role, row[0]): CODE[mark] for row in lines[1:] for role, mark in zip(roles, row[1:])}


def actor(role: str) -> Actor:
    scoped = role in ("regional-manager", "store-manager")
    return Actor("user", f"u-{role}", role,
                 frozenset({"north"}) if role == "regional-manager" else frozenset(),
                 frozenset({"s1"}) if role == "store-manager" else frozenset()) if scoped \
        else Actor("user", f"u-{role}", role)


# Where an action is tried: a store in the actor's scope, one outside it, the whole chain.
PLACES = {
    "inside": {"store": "s1", "region": "north"},
    "outside": {"store": "s9", "region": "south"},
    "chain-wide": {},
}


def test_the_hand_written_table_and_the_matrix_agree():
    exp = expected()
    assert {a for _, a in exp} == set(ACTIONS), "an action is missing from EXPECTED or ACTIONS"
    assert {r for r, _ in exp} == set(ROLES)
    diff = [(r, a, MATRIX[r].get(a), want) for (r, a), want in exp.items()
            if MATRIX[r].get(a) != want]
    assert not diff, diff


CELLS = [(role, action, place) for role in ROLES for action in ACTIONS for place in PLACES]


@pytest.mark.parametrize("role, action, place", CELLS,
                         ids=[f"{r}-{a}-{p}" for r, a, p in CELLS])
def test_every_cell(role, action, place):
    want = expected()[(role, action)]
    allowed = want == "all" or (want == "scoped" and place == "inside")
    who = actor(role)
    assert allows(who, action, **PLACES[place]) is allowed
    if allowed:
        authorize(who, action, **PLACES[place])
    else:
        with pytest.raises(Forbidden):
            authorize(who, action, **PLACES[place])


def test_cell_count_covers_the_whole_matrix():
    assert len(CELLS) == len(ROLES) * len(ACTIONS) * 3 == 180


def test_scope_comes_from_regions_or_stores_and_a_store_needs_its_region():
    rm = Actor("user", "ann", "regional-manager", frozenset({"north"}), frozenset({"x7"}))
    assert allows(rm, "alerts.ack", store="x7", region="south")  # a store given by name
    assert allows(rm, "alerts.ack", region="north")
    assert not allows(rm, "alerts.ack", store="s1")  # region unknown: not inside
    assert scope(rm, "fleet.read").regions == {"north"}
    assert scope(actor("auditor"), "fleet.read") is None
    with pytest.raises(Forbidden):
        scope(actor("auditor"), "alerts.ack")


def test_unknown_actions_and_roles_are_refused():
    with pytest.raises(Forbidden, match="unknown action"):
        authorize(actor("hq-admin"), "fleet.reed")
    with pytest.raises(ValueError):
        Actor("user", "x", "superuser")
    with pytest.raises(ValueError):
        Actor("robot", "x", "auditor")


def test_system_and_local_actors():
    assert allows(local_actor("root"), "users.manage")
    assert allows(system_actor(), "alerts.ack", store="s1", region="north")
    assert not allows(system_actor(), "users.manage")


def test_docs_show_the_same_matrix():
    text = (ROOT / "docs" / "access.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] in ACTIONS:
            rows[cells[0]] = cells[1:]
    assert set(rows) == set(ACTIONS), "docs/access.md's matrix misses actions"
    header = next(line for line in text.splitlines() if re.match(r"\|\s*action\s*\|", line))
    roles = [c.strip().strip("`") for c in header.strip().strip("|").split("|")][1:]
    assert roles == list(ROLES)
    marks = {"anywhere": "all", "in scope": "scoped", "no": None}
    diff = [(a, r, v) for a, vals in rows.items() for r, v in zip(roles, vals)
            if marks.get(v, "?") != MATRIX[r].get(a)]
    assert not diff, diff
