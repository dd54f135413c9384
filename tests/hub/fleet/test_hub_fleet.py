"""Fleet state rules on both databases: sessions, latest readings and decisions, alerts, gaps."""

from __future__ import annotations

import pytest

import edge_protocol as wire
from hub.domains import alerts as alert_domain, fleet
from hub.ingest.writer import apply as ingest_apply
from hub.errors import NotFound
from hub.app import open_store, store_detail
from hubkit import alert_body, birth_body, decision_body, envelope, reading, telemetry


@pytest.fixture
def db(hub_db):
    store = open_store(hub_db)
    yield store
    store.close()


def ingest(db, *envs, received: float = 1000.0):
    """Apply envelopes the way ingest does: decode, keep new ids, apply, in one transaction."""
    decoded = [wire.decode(wire.encode(e)) for e in envs]
    with db.transaction() as tx:
        new = db.insert_new_messages(tx, [(e.id, e.store, e.region, e.seq, e.kind, e.ts,
                                           received, "{}") for e in decoded])
        return ingest_apply(db, tx, [e for e in decoded if e.id in new], received)


SESSIONS = {
    "a birth brings a store online": ([("birth", 1)], True),
    "a death of the current session takes it offline": ([("birth", 1), ("death", 1)], False),
    "a death older than the last birth is ignored": ([("birth", 2), ("death", 1)], True),
    "a late death of an old session after a new birth is ignored":
        ([("birth", 1), ("death", 1), ("birth", 2), ("death", 1)], True),
    "a birth older than a death already seen does not revive the store":
        ([("death", 3), ("birth", 2)], False),
    "a new session after a death brings the store back": ([("death", 3), ("birth", 4)], True),
    # A death ends its session; a birth of it applied later (another worker's copy, or the
    # priority lane's out of order) must not keep a stopped store online (issue 11).
    "a second birth of a session applied after its death does not revive the store":
        ([("birth", 5), ("death", 5), ("birth", 5)], False),
    "a birth applied after the death of its own session stays offline":
        ([("death", 5), ("birth", 5)], False),
    "the next session after that death is online": ([("death", 5), ("birth", 5), ("birth", 6)],
                                                    True),
}


@pytest.mark.parametrize("case", SESSIONS, ids=list(SESSIONS))
def test_store_online_state_follows_the_session_rules(db, case):
    steps, online = SESSIONS[case]
    for i, (kind, session) in enumerate(steps):
        ingest(db, envelope(kind, birth_body(session) if kind == "birth" else
                            {"session": session}, seq=0), received=1000.0 + i)
    [store] = fleet.stores(db)
    assert store["online"] is online


def test_a_message_stored_twice_changes_the_fleet_once(db):
    env = envelope("telemetry", telemetry(2), seq=1)
    ingest(db, env)
    ingest(db, env)
    [store] = fleet.stores(db)
    assert store["seq"] == {"first": 1, "last": 1, "received": 1, "missing": 0}
    assert fleet.message_count(db) == 1


def test_seq_gaps_are_counted_and_listed_per_store(db):
    ingest(db, *[envelope("event", {"event": "x"}, seq=s) for s in (1, 2, 5, 6, 9)])
    ingest(db, envelope("event", {"event": "x"}, seq=3, store="s2"))
    detail = store_detail(db, "s1")
    assert detail["seq"]["missing"] == 4
    assert detail["gaps"] == [[3, 4], [7, 8]]
    assert store_detail(db, "s2")["seq"]["missing"] == 0


def test_an_older_reading_arriving_late_does_not_replace_the_newer_one(db):
    new = reading("p1", **{"device.status": "error"})
    old = dict(reading("p1", **{"device.status": "ok"}), ts="2020-01-01T00:00:00.000Z")
    ingest(db, envelope("telemetry", {"readings": [new]}, seq=2))
    ingest(db, envelope("telemetry", {"readings": [old]}, seq=1))
    [dev] = fleet.devices(db)
    assert dev["values"] == {"device.status": "error"}


def test_a_device_predicted_to_fail_is_at_risk_and_one_with_an_open_alert_too(db):
    ingest(db, envelope("birth", birth_body(1, ("p1", "p2", "p3")), seq=0))
    ingest(db, envelope("decision", decision_body("p1"), seq=1),
           envelope("decision", decision_body("p2", "ok", 0.1), seq=2),
           envelope("alert", alert_body(device="p3"), seq=3))
    risky = {d["device"] for d in fleet.devices(db, at_risk=True)}
    assert risky == {"p1", "p3"}
    assert fleet.stores(db)[0]["at_risk"] == 2


def test_a_cleared_alert_closes_the_open_instance_and_a_replayed_raise_does_not_reopen_it(db):
    raised = envelope("alert", alert_body("raised", since="2026-11-22T10:00:00.000Z"), seq=1)
    cleared = envelope("alert", alert_body("cleared", since="2026-11-22T10:00:00.000Z"), seq=2)
    ingest(db, raised)
    assert [a["state"] for a in alert_domain.alerts(db, open_only=True)] == ["raised"]
    ingest(db, cleared)
    replay = dict(raised, id=envelope("event", {})["id"])  # same alert, new id, older seq
    ingest(db, replay)
    assert alert_domain.alerts(db, open_only=True) == []
    [a] = alert_domain.alerts(db)
    assert a["state"] == "cleared" and a["cleared_ts"] is not None


def test_acknowledging_an_unknown_alert_or_asking_for_an_unknown_store_says_so(db):
    with pytest.raises(NotFound, match="unknown alert id"):
        alert_domain.ack(db, "nope", "me")
    with pytest.raises(NotFound, match="unknown store"):
        store_detail(db, "nope")



def test_a_worker_opening_the_sqlite_file_retries_while_another_holds_it_locked(
        tmp_path, monkeypatch):
    # Two workers started together on a new file race to switch it to WAL; SQLite answers the
    # loser "database is locked" at once, without its busy wait (seen once in ~40 runs of the
    # two-worker test: the second worker exited). Opening retries that error, only that one.
    from hub.errors import StoreError
    from hub.store import sqlite as sqlite_store

    real_open = sqlite_store.SqliteStore._open
    failures = {"left": 3}

    def flaky_open(self, create):
        if failures["left"]:
            failures["left"] -= 1
            raise StoreError(f"cannot open the hub database {self.path}: database is locked")
        return real_open(self, create)

    monkeypatch.setattr(sqlite_store.SqliteStore, "_open", flaky_open)
    store = open_store(str(tmp_path / "hub.db"))
    assert failures["left"] == 0 and fleet.message_count(store) == 0
    store.close()

    def broken_open(self, create):
        raise StoreError(f"cannot open the hub database {self.path}: disk I/O error")

    monkeypatch.setattr(sqlite_store.SqliteStore, "_open", broken_open)
    with pytest.raises(StoreError, match="disk I/O error"):
        open_store(str(tmp_path / "other.db"))

    monkeypatch.setattr(sqlite_store, "_OPEN_PATIENCE_S", 0.2)
    failures["left"] = 10**6
    monkeypatch.setattr(sqlite_store.SqliteStore, "_open", flaky_open)
    with pytest.raises(StoreError, match="locked"):
        open_store(str(tmp_path / "third.db"))


def test_a_batch_mixing_stored_and_new_messages_inserts_and_returns_only_the_new(db):
    def row(i):
        return (f"00000000-0000-7000-8000-{i:012d}", "s1", "r1", i, "telemetry",
                "2026-11-22T10:00:00.000Z", 1.0, "{}")

    with db.transaction() as tx:
        assert db.insert_new_messages(tx, [row(1), row(2)]) == {row(1)[0], row(2)[0]}
    with db.transaction() as tx:
        new = db.insert_new_messages(tx, [row(2), row(3), row(1), row(4)])
    assert new == {row(3)[0], row(4)[0]}
    with db.transaction() as tx:
        assert db.insert_new_messages(tx, [row(4), row(3)]) == set()
        assert db.insert_new_messages(tx, []) == set()
    assert fleet.message_count(db) == 4
