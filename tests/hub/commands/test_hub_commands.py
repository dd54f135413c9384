"""The commands and flags domains' rules, on SQLite and PostgreSQL, inside transactions."""

from __future__ import annotations

import json

import pytest

from edge_protocol import commands as proto
from edge_protocol import signing
from hub.domains import audit
from hub.domains.access import Actor, local_actor
from hub.domains.commands import rules as commands
from hub.domains.flags import rules as flags
from hub.errors import HubError, NotFound
from hub.keys import KeyRing
from hub.app import open_store


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db(hub_db):
    store = open_store(hub_db)
    yield store
    store.close()


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    return KeyRing.init(tmp_path_factory.mktemp("ring") / "keys")


ANN = local_actor("ann")
BOB = Actor("user", "bob", "hq-admin")


def issue(db, ring, clock, store="s1", action="repoll", device="p1", args=None, actor=ANN,
          expires_s=600.0):
    with db.transaction() as tx:
        return commands.issue(tx, clock, actor, store=store, region="r1", device=device,
                              action=action, args=args or {}, expires_s=expires_s, ring=ring)


def payload(db, cmd_id) -> dict:
    with db.read() as tx:
        tx.execute("SELECT payload FROM commands WHERE id = ?", (cmd_id,))
        return json.loads(tx.fetchone()[0])


def test_each_store_has_its_own_seq_and_commands_are_signed_and_audited(db, ring):
    clock = Clock()
    seqs = [issue(db, ring, clock, store=s)["seq"] for s in ("s1", "s1", "s2", "s1", "s2")]
    assert seqs == [1, 2, 1, 3, 2]
    row = issue(db, ring, clock, action="test_print", args={"text": "hi", "force": True})
    doc = payload(db, row["id"])
    trusted = signing.trusted_keys(ring.public_keys().values())
    assert signing.verify_document(doc, trusted) == ring.current
    cmd = proto.check_command(proto.encode(doc), store="s1", trusted=trusted, now=clock() + 1)
    assert (cmd.seq, cmd.action, cmd.args) == (4, "test_print", {"text": "hi", "force": True})
    with db.read() as tx:
        got = commands.get(tx, row["id"])
        entries = audit.entries(tx)
    assert got["status"] == "queued" and got["actor"] == "ann"
    assert [e["action"] for e in entries].count("commands.issue") == 6


def test_the_allow_list_is_checked_before_anything_is_stored(db, ring):
    clock = Clock()
    for action, device, args, code in (("format_disk", None, {}, "unknown_action"),
                                       ("test_print", "p1", {"text": "a;b"}, "bad_args"),
                                       ("test_print", "p1", {"text": "x" * 600},
                                        "args_too_large"),
                                       ("reload_config", "p1", {}, "bad_args")):
        with pytest.raises(proto.CommandError) as err:
            issue(db, ring, clock, action=action, device=device, args=args)
        assert err.value.code == code
    with db.read() as tx:
        assert commands.list_commands(tx) == []


def test_high_impact_actions_wait_for_an_approval_by_someone_else(db, ring):
    clock = Clock()
    row = issue(db, ring, clock, action="restart_agent", device=None)
    assert row["status"] == "awaiting_approval" and row["seq"] is None
    with db.transaction() as tx:
        assert commands.claim(tx, clock, "w1") == []
    with pytest.raises(HubError, match="own request"):
        with db.transaction() as tx:
            commands.approve(tx, clock, ANN, row["id"], ring)
    with db.transaction() as tx:
        approved = commands.approve(tx, clock, BOB, row["id"], ring)
    assert approved["status"] == "queued" and approved["seq"] == 1
    with pytest.raises(HubError, match="not awaiting"):
        with db.transaction() as tx:
            commands.approve(tx, clock, BOB, row["id"], ring)


def result(cid, status="done", verified=True, **extra):
    return {"type": "command", "command": cid, "seq": 1, "action": "repoll", "status": status,
            "reason": extra.pop("reason", None), "detail": "", "output": {"x": 1},
            "rejects": extra.pop("rejects", {}), "verified": verified, **extra}


def test_a_result_moves_only_an_open_command_of_the_store_it_was_sent_to(db, ring):
    clock = Clock()
    row = issue(db, ring, clock)
    with db.transaction() as tx:
        claimed = commands.claim(tx, clock, "w1")
        assert [c[0] for c in claimed] == [row["id"]]
        assert commands.claim(tx, clock, "w2") == []  # claimed once
        commands.delivered(tx, clock, row["id"])
    with db.transaction() as tx:
        # Another store reporting this id, and an unverified refusal: no change.
        assert commands.record_result(tx, clock, "s2", "r1", result(row["id"])) == "ignored"
        assert commands.record_result(
            tx, clock, "s1", "r1", result(row["id"], "rejected", False,
                                          reason="bad_signature",
                                          rejects={"bad_signature": 2})) == "counted"
    with db.read() as tx:
        assert commands.get(tx, row["id"])["status"] == "delivered"
        assert commands.rejects(tx) == {"s1": {"bad_signature": 2}}
    with db.transaction() as tx:
        assert commands.record_result(tx, clock, "s1", "r1", result(row["id"])) == "updated"
        # A replay refused later (same id) does not overwrite done.
        assert commands.record_result(
            tx, clock, "s1", "r1", result(row["id"], "rejected", reason="replayed_id")) \
            == "ignored"
    with db.read() as tx:
        got = commands.get(tx, row["id"])
        actions = [e["action"] for e in audit.entries(tx)]
    assert got["status"] == "done" and got["output"] == {"x": 1}
    assert "commands.result" in actions and "commands.refused" in actions


def test_commands_without_a_result_expire(db, ring):
    clock = Clock()
    row = issue(db, ring, clock, expires_s=60)
    clock.t += 61
    with db.transaction() as tx:
        assert commands.claim(tx, clock, "w1") == []
    with db.read() as tx:
        assert commands.get(tx, row["id"])["status"] == "expired"
    with pytest.raises(NotFound):
        with db.read() as tx:
            commands.get(tx, "nope")


STORES = {"a1": "north", "a2": "north", "b1": "south"}


def set_flag(db, ring, clock, scope, name, value):
    with db.transaction() as tx:
        return flags.set_flag(tx, clock, ANN, scope, name, value, ring, region_of=STORES)


def docs(db) -> dict[str, dict]:
    with db.read() as tx:
        return {s: flags.for_store(tx, s) for s in STORES}


def test_flags_off_anywhere_wins_and_each_change_is_a_new_signed_version(db, ring):
    clock = Clock()
    assert set_flag(db, ring, clock, "chain", "scoring", False) == ["a1", "a2", "b1"]
    # Switching it on for a region does not undo the chain's kill switch: nothing changes.
    assert set_flag(db, ring, clock, "region:north", "scoring", True) == []
    assert set_flag(db, ring, clock, "store:a1", "tickets", False) == ["a1"]
    d = docs(db)
    assert d["a1"]["version"] == 2 and d["a1"]["flags"] == {
        "scoring": False, "tickets": False, "remote_actions": True}
    assert d["b1"]["version"] == 1 and d["b1"]["flags"]["tickets"] is True
    with db.read() as tx:  # what the hub obeys itself (the tickets domain asks this)
        assert flags.is_on(tx, "a1", "tickets") is False
        assert flags.is_on(tx, "b1", "tickets", region="south") is True
        assert flags.is_on(tx, "b1", "scoring") is False
    assert set_flag(db, ring, clock, "chain", "scoring", True) == ["a1", "a2", "b1"]
    assert all(v["flags"]["scoring"] for v in docs(db).values())
    trusted = signing.trusted_keys(ring.public_keys().values())
    with db.transaction() as tx:
        out = flags.to_publish(tx)
        assert {s for s, *_ in out} == set(STORES)
        for store, region, version, raw in out:
            doc = proto.check_flags(raw, store=store, trusted=trusted)
            assert doc.version == version
            flags.published(tx, clock, store, version)
        flags.applied(tx, clock, "a1", 3)
        assert flags.to_publish(tx) == []
    with db.read() as tx:
        over = flags.overview(tx)
    assert over["stores"] == 3 and over["applied"] == 1
    with pytest.raises(ValueError):
        set_flag(db, ring, clock, "chain", "self_destruct", False)
    with pytest.raises(NotFound):
        set_flag(db, ring, clock, "store:zz", "scoring", False)
