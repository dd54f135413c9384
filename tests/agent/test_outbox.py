"""The outbox: priority order, batches and acks, budgets with counted drops, seq across reopen."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from edge_agent.outbox import CLASSES, Budget, Outbox
from edge_agent.state import db as statedb

from agentproc import host_config


@pytest.fixture
def open_outbox(tmp_path):
    """Open (and reopen) an outbox on a state database in tmp_path."""
    conns = []

    def opener(budget: Budget = Budget()) -> Outbox:
        db = statedb.connect(tmp_path / "state" / "agent.db")
        conns.append(db)
        return Outbox(db, "s1", "r1", budget)

    yield opener
    for db in conns:
        db.close()


def body(n: int, size: int = 0) -> dict:
    return {"n": n, "pad": "x" * size}


def test_rows_leave_in_priority_order_critical_then_events_then_telemetry(open_outbox):
    ob = open_outbox()
    for kind in ("telemetry", "alert", "event", "telemetry", "decision", "alert"):
        ob.enqueue(kind, body(0))
    batch = ob.begin_batch(limit=10)
    assert [(r.kind, r.seq) for r in batch] == [
        ("alert", 2), ("decision", 5), ("alert", 6), ("event", 3),
        ("telemetry", 1), ("telemetry", 4)]
    assert [r.prio for r in batch] == sorted(r.prio for r in batch)


def test_a_batch_stays_in_the_outbox_until_acked_and_in_flight_rows_are_skipped(open_outbox):
    ob = open_outbox()
    for i in range(5):
        ob.enqueue("telemetry", body(i))
    first = ob.begin_batch(limit=2)
    assert [r.seq for r in first] == [1, 2]
    assert [r.seq for r in ob.begin_batch(limit=2)] == [1, 2], "not removed by begin_batch"
    second = ob.begin_batch(limit=10, exclude=[r.seq for r in first])
    assert [r.seq for r in second] == [3, 4, 5]
    assert ob.ack([1, 2]) == 2
    assert [r.seq for r in ob.begin_batch(limit=10)] == [3, 4, 5]
    assert ob.ack([1, 2]) == 0, "acking twice removes nothing"
    assert ob.stats()["rows"] == 3


def test_a_batch_respects_its_byte_limit_but_always_carries_one_row(open_outbox):
    ob = open_outbox()
    for i in range(4):
        ob.enqueue("telemetry", body(i, 1000))
    size = len(ob.begin_batch(limit=1)[0].payload)
    assert len(ob.begin_batch(limit=10, max_bytes=2 * size + 10)) == 2
    assert len(ob.begin_batch(limit=10, max_bytes=10)) == 1


def test_ack_counts_every_row_of_a_large_batch(open_outbox):
    ob = open_outbox()
    ob.enqueue_many([("telemetry", body(i)) for i in range(1234)])
    seqs = [r.seq for r in ob.begin_batch(limit=2000)]
    assert ob.ack(seqs) == 1234
    assert ob.stats()["rows"] == 0 and ob.stats()["bytes"] == 0


def test_the_envelope_carries_version_id_seq_store_region_kind_and_body(open_outbox):
    row = open_outbox().enqueue("alert", {"device": "p1", "raised": True})
    env = json.loads(row.payload)
    assert set(env) == {"v", "id", "seq", "store", "region", "ts", "kind", "body"}
    assert (env["v"], env["seq"], env["store"], env["region"], env["kind"]) == \
        (1, row.seq, "s1", "r1", "alert")
    assert env["id"] == row.id and env["id"][14] == "7", "a uuid7"
    assert env["body"] == {"device": "p1", "raised": True}


def test_seq_is_never_reused_after_acks_and_a_reopen(open_outbox):
    ob = open_outbox()
    rows = ob.enqueue_many([("telemetry", body(i)) for i in range(3)])
    ob.ack([r.seq for r in rows])
    ob.db.close()
    again = open_outbox()
    assert again.last_seq == 3
    assert again.enqueue("telemetry", body(9)).seq == 4


def test_a_failed_transaction_commits_nothing_and_takes_no_seq(open_outbox):
    ob = open_outbox()
    ob.enqueue("telemetry", body(0))

    def broken(db):
        raise RuntimeError("disk full, say")

    with pytest.raises(RuntimeError):
        ob.enqueue_many([("telemetry", body(1)), ("alert", body(2))], also=broken)
    assert ob.last_seq == 1 and ob.stats()["rows"] == 1
    assert ob.enqueue("alert", body(3)).seq == 2


def test_over_the_byte_budget_telemetry_is_dropped_first_oldest_first_and_counted(open_outbox):
    ob = open_outbox(Budget(max_bytes=10**9))
    for i in range(10):
        ob.enqueue("telemetry", body(i, 1000))
    ob.enqueue("alert", body(100, 1000))
    ob.enqueue("event", body(101, 1000))
    rows = ob.begin_batch(limit=100)
    oldest_three = sum(len(r.payload) for r in rows if r.kind == "telemetry" and r.seq <= 3)
    ob.budget = Budget(max_bytes=ob.stats()["bytes"] - oldest_three)
    assert ob.enforce_budget() == {"telemetry": 3}
    left = [(r.kind, json.loads(r.payload)["body"]["n"]) for r in ob.begin_batch(limit=100)]
    assert left == [("alert", 100), ("event", 101)] + [("telemetry", n) for n in range(3, 10)]
    assert ob.stats()["drops"]["telemetry"] == {"count": 3, "bytes": oldest_three}


def test_alerts_and_decisions_are_dropped_last_after_telemetry_and_events(open_outbox):
    ob = open_outbox(Budget(max_bytes=10**9))
    ob.enqueue("alert", body(0, 1000))
    ob.enqueue("event", body(1, 1000))
    ob.enqueue("telemetry", body(2, 1000))
    ob.enqueue("decision", body(3, 1000))
    size = ob.stats()["bytes"] // 4
    ob.budget = Budget(max_bytes=size + size // 2)  # room for one row
    assert ob.enforce_budget() == {"telemetry": 1, "event": 1, "alert": 1}
    assert [r.kind for r in ob.begin_batch()] == ["decision"]


def test_the_byte_budget_is_enforced_as_rows_are_committed(open_outbox):
    ob = open_outbox(Budget(max_bytes=20_000))
    ob.enqueue_many([("telemetry", body(i, 1000)) for i in range(40)])
    ob.enqueue("alert", body(99, 1000))
    stats = ob.stats()
    assert stats["bytes"] <= 20_000
    assert stats["classes"]["critical"]["rows"] == 1
    assert stats["drops"]["telemetry"]["count"] >= 20


def test_telemetry_past_the_age_budget_is_dropped_but_old_alerts_are_kept(open_outbox):
    ob = open_outbox(Budget(max_age_s=3600))
    ob.enqueue("telemetry", body(0))
    ob.enqueue("alert", body(1))
    ob.enqueue("telemetry", body(2))
    created = ob.begin_batch()[0].created
    assert ob.enforce_budget(now=created + 1800) == {}
    assert ob.enforce_budget(now=created + 7200) == {"telemetry": 2}
    assert [r.kind for r in ob.begin_batch()] == ["alert"]
    assert set(ob.stats()["drops"]) == {"telemetry"}
    assert ob.stats()["drops"]["telemetry"]["count"] == 2


def test_drop_counts_add_up_across_budget_checks_and_reopens(open_outbox):
    ob = open_outbox(Budget(max_age_s=1))
    ob.enqueue("telemetry", body(0))
    ob.enforce_budget(now=ob.begin_batch()[0].created + 10)
    ob.db.close()
    ob = open_outbox(Budget(max_age_s=1))
    ob.enqueue("telemetry", body(1))
    ob.enforce_budget(now=ob.begin_batch()[0].created + 10)
    assert ob.stats()["drops"]["telemetry"]["count"] == 2


def write_config(tmp_path) -> str:
    config = tmp_path / "agent.toml"
    config.write_text(host_config(tmp_path / "state"))
    return str(config)


def test_outbox_json_shows_depth_and_bytes_by_class_oldest_age_drops_and_last_seq(
        tmp_path, open_outbox):
    config = write_config(tmp_path)
    ob = open_outbox(Budget(max_age_s=1))
    ob.enqueue("telemetry", body(0, 100))
    ob.enforce_budget(now=ob.begin_batch()[0].created + 10)
    ob.enqueue_many([("alert", body(1)), ("telemetry", body(2)), ("telemetry", body(3))])
    expected = ob.stats()
    result = run_cli("outbox", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"rows", "bytes", "oldest_age_s", "classes", "drops", "last_seq"}
    assert doc["rows"] == 3 and doc["last_seq"] == 4
    assert set(doc["classes"]) == set(CLASSES)
    assert doc["classes"]["critical"]["rows"] == 1 and doc["classes"]["telemetry"]["rows"] == 2
    assert doc["classes"]["event"] == {"rows": 0, "bytes": 0}
    assert doc["bytes"] == expected["bytes"] == sum(c["bytes"] for c in doc["classes"].values())
    assert doc["drops"]["telemetry"]["count"] == 1
    assert doc["oldest_age_s"] >= 0
    text = run_cli("outbox", "--config", config)
    assert text.returncode == 0
    assert "telemetry" in text.stdout and "last seq 4" in text.stdout
    assert "drops by kind: telemetry 1" in text.stdout


def test_outbox_without_a_state_database_says_so_and_exits_1(tmp_path):
    result = run_cli("outbox", "--config", write_config(tmp_path), "--json")
    assert result.returncode == 1 and "no state database" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_json_lists_every_configured_device_with_staleness_and_the_outbox(tmp_path):
    config = write_config(tmp_path)
    result = run_cli("status", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["store"] == "kill-test" and doc["region"] == "default"
    assert doc["agent"] == {"running": False, "pid": None}
    assert doc["outbox"] is None
    [device] = doc["devices"]
    assert device["id"] == "h0" and device["stale"] is True and device["reason"] == "never polled"
