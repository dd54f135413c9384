"""Sessions that recover and time from the future (issue 15 items 5 and 6), on the fleet domain
with a real database (SQLite and PostgreSQL), through the writer the hub uses."""

from __future__ import annotations

import json
import time

import pytest

import edge_protocol as wire
from conftest import run_cli
from hub.app import open_store, store_detail
from hub.bus.consumer import Item
from hub.domains import fleet, quarantine
from hub.ingest.writer import commit_batch
from hubkit import birth_body, decision_body, envelope, now_ts, reading, telemetry

OLD, NEW = "0190a000-0000-7000-8000-000000000001", "0190b000-0000-7000-8000-000000000002"


def birth(session: int, instance: str | None, *, age_s: float = 0.0) -> dict:
    """A birth whose own time is age_s before now. Which instance the hub follows goes by
    that time (strictly newer), so a test with two instances sets it: two births made in
    the same millisecond tie, and the second is then taken for a late one."""
    body = birth_body(session)
    if instance is not None:
        body["instance"] = instance
    env = envelope("birth", body, seq=0)
    env["ts"] = now_ts(-age_s)
    return env


def death(session: int, instance: str | None) -> dict:
    body = {"session": session}
    if instance is not None:
        body["instance"] = instance
    return envelope("death", body, seq=0)


def commit(db, *envs: dict, at: float | None = None):
    at = time.time() if at is None else at
    items = []
    for e in envs:
        raw = wire.encode(e)
        try:
            items.append(Item(0, 1, "t", wire.decode(raw), None, at, raw))
        except wire.ProtocolError as err:
            items.append(Item(0, 1, "t", None, err, at, b""))
    return commit_batch(db, items)


@pytest.fixture
def db(hub_db):
    store = open_store(hub_db)
    yield store
    store.close()


def state(db) -> dict:
    return store_detail(db, "s1")


def test_a_store_whose_state_was_lost_is_taken_back_at_session_1_with_fresh_seq_accounting(db):
    commit(db, birth(40, OLD, age_s=10),
           *[envelope("telemetry", telemetry(1), seq=s) for s in range(1, 21)])
    commit(db, death(40, OLD))
    assert state(db)["online"] is False
    # The state database was lost: a new instance, session 1, seqs from 1 again.
    commit(db, birth(1, NEW), *[envelope("telemetry", telemetry(1), seq=s) for s in range(1, 11)])
    s = state(db)
    assert s["online"] is True and s["session"] == 1 and s["instance"] == NEW
    assert s["seq"] == {"first": 1, "last": 10, "received": 10, "missing": 0}
    assert s["gaps"] == []
    # Its next connection (session 2) and a gap are counted in the new accounting.
    commit(db, death(1, NEW), birth(2, NEW), envelope("telemetry", telemetry(1), seq=13))
    s = state(db)
    assert s["online"] is True and s["session"] == 2
    assert s["seq"]["missing"] == 2 and s["gaps"] == [[11, 12]]


def test_the_old_instance_late_changes_nothing(db):
    commit(db, birth(40, OLD, age_s=10))
    commit(db, birth(1, NEW))
    # A redelivery from the lost instance (its Will, a birth queued at the broker): older.
    commit(db, birth(41, OLD, age_s=60), death(40, OLD), death(41, OLD))
    s = state(db)
    assert s["online"] is True and s["instance"] == NEW and s["session"] == 1


def test_a_birth_of_another_instance_older_than_the_one_followed_is_ignored(db):
    commit(db, birth(1, NEW))
    commit(db, death(1, NEW), birth(9, OLD, age_s=3600))
    assert state(db)["online"] is False and state(db)["instance"] == NEW


def test_legacy_agents_without_an_instance_keep_the_session_rules(db):
    commit(db, birth(5, None))
    commit(db, birth(4, None))  # an older session's birth, redelivered: ignored
    assert state(db)["session"] == 5
    commit(db, death(5, None))
    assert state(db)["online"] is False
    # The agent is upgraded (sends its instance) and keeps its sessions.
    commit(db, birth(6, OLD))
    assert state(db)["online"] is True and state(db)["instance"] == OLD


@pytest.mark.parametrize("session", [2**31, 2**63 - 1])
def test_an_absurd_session_is_rejected_by_the_decoder(db, session):
    done = commit(db, birth(session, OLD))
    assert done.rejected == {"out_of_range": 1}
    with pytest.raises(Exception):
        state(db)  # nothing stored: the store is unknown


def test_a_session_leaping_absurdly_far_is_quarantined_not_pinning_the_store(db):
    commit(db, birth(3, OLD))
    done = commit(db, birth(2**30, OLD), death(2**30, OLD))
    assert len(done.quarantined) == 2 and done.stored == 0
    assert fleet.message_count(db) == 1
    rows = quarantine.entries(db)
    assert len(rows) == 2 and all(r["reason"].startswith("implausible_session") for r in rows)
    commit(db, death(3, OLD), birth(4, OLD))
    assert state(db)["online"] is True and state(db)["session"] == 4


def test_forget_session_lets_the_next_birth_in_whatever_its_session(db, hub_db):
    commit(db, birth(2**30, None))  # pinned by an old hub's database, say
    commit(db, birth(1, None))
    assert state(db)["session"] == 2**30
    out = run_cli("store", "s1", "--forget-session", "--db", hub_db, module="hub")
    assert out.returncode == 0, out.stderr
    assert "forgotten" in out.stdout
    from hub.domains import audit
    with db.read() as tx:
        [entry] = [e for e in audit.entries(tx) if e["action"] == "store.forget_session"]
    assert entry["object"] == "store:s1" and entry["detail"]["forgotten"]["birth_session"] == 2**30
    commit(db, birth(1, None), envelope("telemetry", telemetry(1), seq=1))
    s = state(db)
    assert s["online"] is True and s["session"] == 1 and s["seq"]["first"] == 1
    assert run_cli("store", "nope", "--forget-session", "--db", hub_db,
                   module="hub").returncode == 1


# Time from the future (item 5) -----------------------------------------------------------------

def test_a_reading_or_decision_stamped_2099_is_rejected_by_the_skew_check(db):
    r = reading("p1")
    r["ts"] = "2099-01-01T00:00:00.000Z"
    d = decision_body("p1")
    d["ts"] = "2099-01-01T00:00:00.000Z"
    for env in (envelope("telemetry", {"readings": [r]}, seq=1),
                envelope("decision", d, seq=2)):
        with pytest.raises(wire.ProtocolError) as err:
            wire.decode(wire.encode(env), clock=time.time)
        assert err.value.code == "implausible_ts"


def _device(db) -> dict:
    [d] = fleet.devices(db, store="s1")
    return d


def test_a_clock_ahead_within_the_skew_then_corrected_does_not_pin_a_device(db):
    now = time.time()
    ahead = reading("p1", **{"device.status": "error"})
    ahead["ts"] = now_ts(50 * 60)  # 50 minutes ahead: within the hub's one-hour skew
    bad = decision_body("p1", "failed")
    bad["ts"] = now_ts(50 * 60)
    commit(db, envelope("telemetry", {"readings": [ahead]}, seq=1),
           envelope("decision", bad, seq=2), at=now)
    assert _device(db)["values"]["device.status"] == "error"
    # The store's clock is set right; two seconds later its readings are correct again.
    fixed = reading("p1", **{"device.status": "ok"})
    fixed["ts"] = now_ts(2)
    good = decision_body("p1", "ok")
    good["ts"] = now_ts(2)
    commit(db, envelope("telemetry", {"readings": [fixed]}, seq=3),
           envelope("decision", good, seq=4), at=now + 3)
    d = _device(db)
    assert d["values"]["device.status"] == "ok" and d["decision"] == "ok"


def test_newest_wins_still_holds_for_honest_clocks_in_any_arrival_order(db):
    now = time.time()
    newer, older = reading("p1", **{"device.status": "ok"}), reading("p1", **{
        "device.status": "offline"})
    newer["ts"], older["ts"] = now_ts(-5), now_ts(-10)
    commit(db, envelope("telemetry", {"readings": [newer]}, seq=2), at=now)
    commit(db, envelope("telemetry", {"readings": [older]}, seq=1), at=now + 1)
    assert _device(db)["values"]["device.status"] == "ok"


def test_a_device_pinned_in_an_old_database_is_released_by_the_next_reading(db):
    commit(db, envelope("telemetry", telemetry(1), seq=1))
    with db.transaction() as tx:  # what an old hub stored from a 2099 reading
        tx.execute("UPDATE devices SET ts = '2099-01-01T00:00:00.000Z', reading_at = NULL,"
                   " vals = ?", (json.dumps({"device.status": "error"}),))
    commit(db, envelope("telemetry", telemetry(1), seq=2))
    assert _device(db)["values"]["device.status"] == "ok"


def test_a_seq_leaping_absurdly_far_above_the_last_is_quarantined(db):
    commit(db, envelope("telemetry", telemetry(1), seq=5))
    done = commit(db, envelope("telemetry", telemetry(1), seq=5 + 2**32 + 1),
                  envelope("telemetry", telemetry(1), seq=6))
    assert done.stored == 1 and len(done.quarantined) == 1
    assert quarantine.entries(db)[0]["reason"].startswith("implausible_seq")
    assert state(db)["seq"] == {"first": 5, "last": 6, "received": 2, "missing": 0}
