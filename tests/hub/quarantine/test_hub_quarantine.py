"""Quarantine (issue 15): a message that passes the decoder and still breaks its batch's commit
is split out (bisection), kept in the quarantine table with the database's reason, and the rest
of the batch commits; `edge-hub quarantine list|show|drop` shows and removes it. A database
that cannot be written at all is not blamed on a message: the worker exits for its supervisor.

The breaking message is made real with a trigger in the database (on SQLite and PostgreSQL)
that refuses one device id, standing for any constraint the decoder's checks do not know.
"""

from __future__ import annotations

import json

import pytest

import edge_protocol as wire
from apiproc import hub_here
from hub.app import open_store
from hub.bus.consumer import Item
from hub.domains import fleet, quarantine
from hub.errors import StoreError
from hub.ingest.writer import commit_or_split
from hubkit import HubProcess, Publisher, envelope, reading, telemetry
from poisondb import poison_devices
from wait import wait_until


def item(env: dict) -> Item:
    raw = wire.encode(env)
    return Item(0, 1, wire.topic(env["region"], env["store"], env["kind"]), wire.decode(raw),
                None, 1000.0, raw)


def test_a_batch_that_will_not_commit_is_split_and_only_the_breaking_message_quarantined(
        hub_db):
    poison_devices(hub_db)
    good = [envelope("telemetry", telemetry(1, device=f"p{i}"), store=f"s{i % 4}", seq=i + 1)
            for i in range(40)]
    bad = [envelope("telemetry", {"readings": [reading("boom")]}, store="s9", seq=s)
           for s in (1, 2)]
    batch = [item(e) for e in good[:13] + bad[:1] + good[13:31] + bad[1:] + good[31:]]
    db = open_store(hub_db)
    try:
        done = commit_or_split(db, batch)
        assert done.stored == 40 and done.received == 42
        assert sorted(i.env.id for i, _ in done.quarantined) == sorted(e["id"] for e in bad)
        assert fleet.message_count(db) == 40
        rows = quarantine.entries(db)
        assert sorted(r["id"] for r in rows) == sorted(e["id"] for e in bad)
        assert all("poisoned device" in r["reason"] and r["store"] == "s9" for r in rows)
        shown = quarantine.entry(db, bad[0]["id"][:8] if bad[0]["id"][:8] != bad[1]["id"][:8]
                                 else bad[0]["id"])
        assert json.loads(shown["payload"]) == bad[0]
        # Redelivered (a hub killed before its acks): counted again, not duplicated.
        commit_or_split(db, [item(bad[0])])
        assert {r["id"]: r["times"] for r in quarantine.entries(db)}[bad[0]["id"]] == 2
    finally:
        db.close()


def test_a_database_that_cannot_be_written_is_not_blamed_on_a_message():
    from hubkit import create_pg_database, drop_pg_database, pg_reachable

    if not pg_reachable():
        pytest.skip("PostgreSQL is not running")
    url = create_pg_database()
    db = open_store(url)
    try:
        batch = [item(envelope("telemetry", telemetry(1), seq=1))]
        drop_pg_database(url)  # the database is gone (its connections terminated)
        with pytest.raises(StoreError):
            commit_or_split(db, batch)
    finally:
        db.close()


def test_a_worker_whose_database_is_gone_exits_1_after_its_bounded_retry(mosquitto, tmp_path):
    from hubkit import create_pg_database, drop_pg_database, pg_reachable

    if not pg_reachable():
        pytest.skip("PostgreSQL is not running")
    url = create_pg_database()
    hub = HubProcess(mosquitto, url, "hub-gone", "--commit-give-up", "2",
                     log_path=tmp_path / "hub.log").start()
    pub = Publisher(mosquitto)
    try:
        hub.wait_connected()
        drop_pg_database(url)
        pub.send(envelope("telemetry", telemetry(1), seq=1))
        assert hub.proc.wait(60) == 1, hub.log()
        assert "this worker exits for its supervisor" in hub.log()
    finally:
        pub.close()
        hub.kill()
        drop_pg_database(url)


def test_quarantine_list_show_drop_escape_store_text_and_json_keeps_it(hub_db):
    poison_devices(hub_db)
    env = envelope("telemetry", {"readings": [reading("boom")]}, store="s9", seq=3)
    db = open_store(hub_db)
    try:
        commit_or_split(db, [item(env)])
        # An old database may hold anything: a store id with ESC and CR/LF in a row.
        with db.transaction() as tx:
            tx.execute("UPDATE quarantine SET store = ?, reason = ?",
                       ("s9\x1b[2J\r\nFAKE ROW", "why\x07\u202e"))
    finally:
        db.close()
    out = hub_here("quarantine", "list", "--db", hub_db)
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\r" not in out.stdout and "\u202e" not in out.stdout
    assert "s9\\e[2J\\r\\nFAKE ROW" in out.stdout
    assert len(out.stdout.strip().splitlines()) == 2
    data = json.loads(hub_here("quarantine", "list", "--db", hub_db, "--json").stdout)
    assert data[0]["store"] == "s9\x1b[2J\r\nFAKE ROW" and data[0]["id"] == env["id"]
    show = hub_here("quarantine", "show", env["id"], "--db", hub_db)
    assert show.returncode == 0 and env["id"] in show.stdout and "\x1b" not in show.stdout
    assert hub_here("quarantine", "show", "ffffffff", "--db", hub_db).returncode == 1
    assert hub_here("quarantine", "drop", "--db", hub_db).returncode == 2
    drop = hub_here("quarantine", "drop", env["id"], "--db", hub_db)
    assert drop.returncode == 0 and "dropped 1" in drop.stdout, drop.stderr
    assert "no quarantined messages" in hub_here("quarantine", "list", "--db", hub_db).stdout
    from hub.domains import audit
    db = open_store(hub_db)
    try:
        with db.read() as tx:
            [entry] = [e for e in audit.entries(tx) if e["action"] == "quarantine.drop"]
        assert entry["detail"]["ids"] == [env["id"]]
    finally:
        db.close()


def test_a_running_hub_quarantines_the_breaking_message_and_stores_the_rest(
        mosquitto, hub_db, tmp_path):
    poison_devices(hub_db)
    hub = HubProcess(mosquitto, hub_db, "hub-q", log_path=tmp_path / "hub.log").start()
    pub = Publisher(mosquitto)
    try:
        hub.wait_connected()
        bad = envelope("telemetry", {"readings": [reading("boom")]}, store="s9", seq=1)
        good = [envelope("telemetry", telemetry(1, device=f"p{i}"), store=f"s{i % 3}",
                         seq=i + 1) for i in range(60)]
        pub.send_many(good[:30] + [bad] + good[30:])

        def seen():
            db = open_store(hub_db, create=False)
            try:
                return fleet.message_count(db) == 60 and quarantine.count(db) == 1
            finally:
                db.close()

        wait_until(seen, what="60 messages stored and one quarantined")
        assert hub.proc.poll() is None, hub.log()
        assert hub.terminate() == 0
        assert hub.stats()["quarantined"] == 1
    finally:
        pub.close()
        hub.kill()
