"""The `edge-hub` CLI: every read command in text and --json, and its errors and exit codes."""

from __future__ import annotations

import json

import pytest

from apiproc import hub_here
from conftest import free_port
import edge_protocol as wire
from hub.ingest.writer import apply as ingest_apply
from hub.app import open_store
from hubkit import alert_body, birth_body, decision_body, envelope, telemetry


def hub(*args: str):
    """`edge-hub ARGS` in this process (apiproc.hub_here: the same main(), without an
    interpreter start per call); the console script as a process is tested in tests/e2e."""
    return hub_here(*args)


@pytest.fixture
def fleet_db(hub_db):
    """Two regions, three stores: one offline, one with a device predicted to fail and an alert."""
    db = open_store(hub_db)
    envs = [
        envelope("birth", birth_body(1, ("p1", "p2")), store="s1", region="north", seq=0),
        envelope("telemetry", telemetry(1, "p1"), store="s1", region="north", seq=1),
        envelope("decision", decision_body("p1"), store="s1", region="north", seq=2),
        envelope("alert", alert_body(device="p2"), store="s1", region="north", seq=3),
        envelope("birth", birth_body(4, ("r1",)), store="s2", region="north", seq=0),
        envelope("death", {"session": 4}, store="s2", region="north", seq=0),
        envelope("telemetry", telemetry(1, "x1"), store="s3", region="south", seq=5),
    ]
    decoded = [wire.decode(wire.encode(e)) for e in envs]
    with db.transaction() as tx:
        db.insert_new_messages(tx, [(e.id, e.store, e.region, e.seq, e.kind, e.ts, 1.0, "{}")
                                    for e in decoded])
        ingest_apply(db, tx, decoded, 1000.0)
    db.close()
    return hub_db


def test_fleet_summarises_by_region_and_lists_the_stores_needing_attention(fleet_db):
    out = hub("fleet", "--db", fleet_db, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [r["region"] for r in data["regions"]] == ["north", "south"]
    north = data["regions"][0]
    assert (north["stores"], north["online"], north["offline"], north["at_risk"]) == (2, 1, 1, 2)
    assert data["total"] == {"stores": 3, "online": 1, "offline": 1, "unknown": 1,
                             "at_risk": 2, "open_alerts": 1,
                             "critical_alerts": 1, "attention": 2}
    # s1 has devices at risk and a critical alert, s2 is offline; s3 (heard from, never
    # born) needs nothing.
    assert {s["store"]: s["attention"] for s in data["stores"]} == {
        "s1": ["devices at risk", "critical alerts"], "s2": ["offline"]}
    every = json.loads(hub("fleet", "--all", "--db", fleet_db, "--json").stdout)
    assert [s["store"] for s in every["stores"]] == ["s1", "s2", "s3"]
    south = json.loads(hub("fleet", "--region", "south", "--db", fleet_db, "--json").stdout)
    assert [r["region"] for r in south["regions"]] == ["south"] and south["stores"] == []
    text = hub("fleet", "--db", fleet_db)
    assert text.returncode == 0
    assert "OFFLINE" in text.stdout and "stores needing attention (2;" in text.stdout
    assert "3 stores in 2 regions: 1 online, 1 offline, 1 not yet born" in text.stdout
    assert max(len(line) for line in text.stdout.splitlines()) <= 120


def test_store_shows_its_devices_open_alerts_and_gaps(fleet_db):
    data = json.loads(hub("store", "s1", "--db", fleet_db, "--json").stdout)
    assert {d["device"]: d["decision"] for d in data["devices"]} == \
        {"p1": "predicted_failure", "p2": None}
    assert [a["device"] for a in data["alerts"]] == ["p2"]
    assert data["seq"]["missing"] == 0
    text = hub("store", "s1", "--db", fleet_db).stdout
    assert "store s1 (region north): online" in text and "predicted_failure" in text


def test_devices_at_risk_in_a_region_and_alerts_open_then_acknowledged(fleet_db):
    devs = json.loads(hub("devices", "--at-risk", "--region", "north", "--db", fleet_db,
                          "--json").stdout)
    assert [(d["store"], d["device"]) for d in devs] == [("s1", "p1"), ("s1", "p2")]
    assert json.loads(hub("devices", "--region", "south", "--db", fleet_db, "--json").stdout)[0][
        "device"] == "x1"
    [alert] = json.loads(hub("alerts", "--open", "--db", fleet_db, "--json").stdout)
    assert alert["acked"] is None
    out = hub("ack", alert["id"], "--db", fleet_db, "--json")
    assert out.returncode == 0, out.stderr
    import getpass  # a local acknowledgement is the operating-system user's, recorded
    assert json.loads(out.stdout)["acked_by"] == getpass.getuser()
    assert "yes" in hub("alerts", "--db", fleet_db).stdout


ERRORS = {
    "an unknown store fails with exit 1": (("store", "nope"), 1, "unknown store 'nope'"),
    "an unknown alert id fails with exit 1": (("ack", "nope"), 1, "unknown alert id"),
    "a missing database fails with exit 1": (("fleet", "--db", "{tmp}/none.db"), 1,
                                             "no hub database at"),
    "an unsupported database URL is a usage error": (("fleet", "--db", "mysql://x/y"), 2,
                                                     "unsupported database URL"),
    "an unreachable PostgreSQL fails with exit 1": (
        ("fleet", "--db", "postgresql://postgres@127.0.0.1:{port}/x"), 1,
        "cannot connect to the hub database"),
    "an unreachable broker fails with exit 1": (
        ("serve", "--broker", "127.0.0.1:{port}", "--db", "{tmp}/h.db"), 1,
        "cannot reach the broker at 127.0.0.1"),
    "a malformed broker address is a usage error": (
        ("serve", "--broker", "nohost", "--db", "{tmp}/h.db"), 2, "expected HOST:PORT"),
    # --db used to win silently over --hub here; every command now refuses the pair alike.
    "fleet with --hub and --db is a usage error": (
        ("fleet", "--hub", "http://127.0.0.1:{port}"), 2, "not both"),
    "users list with --hub and --db is a usage error": (
        ("users", "list", "--hub", "http://127.0.0.1:{port}"), 2, "not both"),
    "audit list with --hub and --db is a usage error": (
        ("audit", "list", "--hub", "http://127.0.0.1:{port}"), 2, "not both"),
    "the global --hub with --db is a usage error": (
        ("--hub", "http://127.0.0.1:{port}", "devices"), 2, "not both"),
}


@pytest.mark.parametrize("case", ERRORS, ids=list(ERRORS))
def test_cli_errors_are_one_clear_line_with_the_right_exit_code(case, tmp_path):
    args, code, message = ERRORS[case]
    args = [a.format(tmp=tmp_path, port=free_port()) for a in args]
    if "--db" not in args:
        db = tmp_path / "hub.db"
        open_store(str(db)).close()
        args += ["--db", str(db)]
    out = hub(*args)
    assert out.returncode == code, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_version_still_prints():
    out = hub("--version")
    assert out.returncode == 0 and out.stdout.startswith("edge-hub ")
