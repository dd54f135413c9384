"""Retention (issue 15 item 9): old readings, messages and feed rows are pruned in bounded
rounds, stores unseen for long are marked, and `edge-hub stores prune --unseen AGE` removes
them with their devices, messages and alerts (`--dry-run` removes nothing)."""

from __future__ import annotations

import json
import time

import edge_protocol as wire
from conftest import run_cli
from hub.app import Retention, open_store, retention_step
from hub.bus.consumer import Item
from hub.domains import alerts, fleet
from hub.ingest.writer import commit_batch
from hubkit import alert_body, birth_body, envelope, telemetry

DAY = 86400.0


def commit(db, envs, at):
    items = []
    for e in envs:
        raw = wire.encode(e)
        items.append(Item(0, 1, "t", wire.decode(raw), None, at, raw))
    return commit_batch(db, items)


def kinds(db) -> dict[str, int]:
    with db.read() as tx:
        tx.execute("SELECT kind, COUNT(*) FROM messages GROUP BY kind")
        return dict(tx.fetchall())


def test_old_readings_messages_and_feed_rows_go_in_bounded_rounds(hub_db):
    now = time.time()
    db = open_store(hub_db)
    try:
        old = [envelope("telemetry", telemetry(1), seq=s) for s in range(1, 8)]
        commit(db, old + [envelope("alert", alert_body(), seq=8)], at=now - 10 * DAY)
        commit(db, [envelope("telemetry", telemetry(1), seq=9)], at=now)
        with db.transaction() as tx:
            tx.execute("UPDATE feed SET status = 'sent', at = ?", (now - 40 * DAY,))
        policy = Retention(readings_s=7 * DAY, messages_s=30 * DAY, feed_s=30 * DAY,
                           unseen_s=None, batch=3)
        assert retention_step(db, policy, clock=lambda: now)["messages"] == 3  # bounded
        while retention_step(db, policy, clock=lambda: now)["messages"]:
            pass
        # Telemetry older than 7 days went; the 10-day-old alert stays (30 days for messages).
        assert kinds(db) == {"telemetry": 1, "alert": 1}
        assert alerts.Router(db, "w").counts() == {}
        assert fleet.devices(db)[0]["values"]  # the latest state is not a message: it stays
    finally:
        db.close()


def test_unseen_stores_are_marked_and_pruned_with_their_rows(hub_db):
    now = time.time()
    db = open_store(hub_db)
    try:
        commit(db, [envelope("birth", birth_body(1), store="gone", seq=0),
                    envelope("alert", alert_body(), store="gone", seq=1)], at=now - 100 * DAY)
        commit(db, [envelope("telemetry", telemetry(1), store="here", seq=1)], at=now)
        done = retention_step(db, Retention(None, None, None, unseen_s=90 * DAY),
                              clock=lambda: now)
        assert done["unseen"] == 1
        marked = {s["store"]: s["unseen_since"] for s in fleet.stores(db)}
        assert marked["gone"] is not None and marked["here"] is None
    finally:
        db.close()
    dry = run_cli("stores", "prune", "--unseen", "90d", "--dry-run", "--db", hub_db,
                  module="hub")
    assert dry.returncode == 0 and "would remove 1 store" in dry.stdout and "gone" in dry.stdout
    out = run_cli("stores", "prune", "--unseen", "90d", "--json", "--db", hub_db, module="hub")
    assert out.returncode == 0, out.stderr
    assert [s["store"] for s in json.loads(out.stdout)["stores"]] == ["gone"]
    db = open_store(hub_db)
    try:
        assert [s["store"] for s in fleet.stores(db)] == ["here"]
        assert alerts.alerts(db) == [] and fleet.message_count(db, "gone") == 0
        from hub.domains import audit
        with db.read() as tx:
            pruned = [e for e in audit.entries(tx) if e["action"] == "stores.prune"]
        assert [e["detail"]["stores"] for e in pruned] == [["gone"]]  # the dry run is not
    finally:
        db.close()
    bad = run_cli("stores", "prune", "--unseen", "soon", "--db", hub_db, module="hub")
    assert bad.returncode == 2 and "--unseen" in bad.stderr


def test_a_store_heard_from_again_is_no_longer_unseen(hub_db):
    now = time.time()
    db = open_store(hub_db)
    try:
        commit(db, [envelope("telemetry", telemetry(1), seq=1)], at=now - 100 * DAY)
        retention_step(db, Retention(None, None, None, unseen_s=90 * DAY), clock=lambda: now)
        assert fleet.stores(db)[0]["unseen_since"] is not None
        commit(db, [envelope("telemetry", telemetry(1), seq=2)], at=now)
        assert fleet.stores(db)[0]["unseen_since"] is None
    finally:
        db.close()
