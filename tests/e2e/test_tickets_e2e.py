"""End to end: a real MQTT publisher (the agent's wire format), real Mosquitto, `edge-hub serve`
processes on PostgreSQL, and the ServiceNow stand-in (tests/support/itsm_standins.py: a local server
written from ServiceNow's documented Table API, since the real service cannot be reached)."""

from __future__ import annotations

import json
import os
import time

import pytest

from conftest import run_cli
from hub.app import open_store
from hubkit import (HubProcess, Publisher, Subscriber, alert_body, birth_body, create_pg_database,
                    drop_pg_database, envelope, now_ts, pg_reachable)
from itsm_standins import ServiceNowStandIn
from wait import wait_until


@pytest.fixture
def pg():
    if not pg_reachable():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
def sn():
    server = ServiceNowStandIn().start()
    yield server
    server.stop()


def tickets_toml(tmp_path, sn, **over) -> str:
    pw = tmp_path / "sn-password"
    pw.write_text("pw")
    os.chmod(pw, 0o600)
    policy = {"resolve_after_s": 600, "reopen_within_s": 604800, "repeat_comment_s": 3600}
    policy.update(over)
    lines = ["[tickets]"] + [f"{k} = {v}" for k, v in policy.items()] + [
        "[tickets.delivery]", "lease_s = 5", "backoff_base_s = 0.2", "backoff_max_s = 2",
        "breaker_failures = 3", "breaker_open_s = 1", "tick_every_s = 0.5", "idle_s = 0.05",
        "[tickets.connectors.sn]", 'type = "servicenow"', f'url = "{sn.url}"',
        'username = "hub"', f'password_file = "{pw}"', "timeout_s = 10",
        "[[tickets.routes]]", 'connector = "sn"', 'assignment_group = "Store IT"']
    path = tmp_path / "tickets.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def hub(mosquitto, db, toml, tmp_path, name="hub-t1") -> HubProcess:
    h = HubProcess(mosquitto, db, name, "--tickets", toml,
                   log_path=tmp_path / f"{name}.log").start()
    h.wait_connected()
    return h


def db_rows(url: str, sql: str, params=()) -> list[tuple]:
    store = open_store(url, create=False)
    try:
        with store.read() as tx:
            tx.execute(sql, params)
            return [tuple(r) for r in tx.fetchall()]
    finally:
        store.close()


def settled(url: str) -> bool:
    """Every intent delivered (none waiting, none failed)."""
    rows = db_rows(url, "SELECT status, COUNT(*) FROM ticket_intents GROUP BY status")
    return bool(rows) and all(s == "done" for s, _ in rows)


def failed_alert(state: str, seq: int, since: str, ts: str, device="p1") -> dict:
    body = alert_body(state, device=device, what="failed", since=since, ts=ts)
    body["decision"] = {"device": device, "decision": "failed", "score": None,
                        "threshold": None, "model": None, "features": {},
                        "explanation": ["device.status = error"], "ts": ts}
    return envelope("alert", body, seq=seq)


def test_a_printer_flapping_20_times_in_an_hour_opens_exactly_one_ticket(
        mosquitto, pg, sn, tmp_path):
    h = hub(mosquitto, pg, tickets_toml(tmp_path, sn), tmp_path)
    feed = Subscriber(mosquitto, "edge/v1/approvals/r1/#")   # a regional manager's view
    pub = Publisher(mosquitto)
    pub.send(envelope("birth", birth_body(1, ("p1",)), seq=0))
    seq = 0
    for i in range(20):                       # failed, ok, failed, ok... over the last hour
        since = now_ts(-3600 + i * 180)
        seq += 1
        pub.send(failed_alert("raised", seq, since, since))
        seq += 1
        pub.send(failed_alert("cleared", seq, since, now_ts(-3600 + i * 180 + 90)))
    wait_until(lambda: db_rows(pg, "SELECT SUM(events) FROM tickets")[0][0] == 40,
               what="all 40 transitions applied")
    wait_until(lambda: settled(pg), what="every intent delivered")
    wait_until(lambda: feed.bodies(), what="the pending approval on the regional feed")
    (inc,) = sn.incidents.values()
    assert inc["work_notes"] == []                # flapping within the hour: no notes yet
    # A person approves the replacement the ticket asks for; the hub writes it in the ticket.
    (approval,) = feed.bodies()
    ok = run_cli("approvals", "approve", str(approval["id"]), "--hash", approval["hash"],
                 "--as", "alice", "--db", pg, module="hub")
    assert ok.returncode == 0, ok.stderr
    wait_until(lambda: inc["work_notes"], what="the approved action noted in the incident")
    assert h.terminate() == 0
    pub.close()
    feed.close()
    assert len(sn.incidents) == 1
    assert "Replace the device" in inc["work_notes"][0]
    assert "Approved by local:alice" in inc["work_notes"][0]
    assert inc["assignment_group"] == "Store IT" and inc["urgency"] == "1"
    assert "escpos" in inc["short_description"]
    listed = run_cli("tickets", "list", "--json", "--db", pg, module="hub")
    assert listed.returncode == 0, listed.stderr
    (t,) = json.loads(listed.stdout)
    assert t["external_key"] == inc["number"] and t["state"] == "cleared"
    assert feed.messages[0][0] == "edge/v1/approvals/r1/s1"
    assert approval["action"] == "replace_device" and approval["store"] == "s1"
    shown = run_cli("approvals", "show", str(approval["id"]), "--db", pg, module="hub")
    assert approval["hash"] in shown.stdout


def test_a_failure_that_clears_and_returns_within_reopen_within_reopens_its_ticket(
        mosquitto, pg, sn, tmp_path):
    h = hub(mosquitto, pg, tickets_toml(tmp_path, sn, resolve_after_s=0), tmp_path)
    pub = Publisher(mosquitto)
    t0 = now_ts(-60)
    pub.send(failed_alert("raised", 1, t0, t0))
    wait_until(lambda: sn.incidents, what="the incident")
    (inc,) = sn.incidents.values()
    pub.send(failed_alert("cleared", 2, t0, now_ts(-30)))
    wait_until(lambda: inc["state"] == "6", what="the incident resolved")
    assert inc["close_code"] and inc["close_notes"]
    t1 = now_ts()
    pub.send(failed_alert("raised", 3, t1, t1))
    wait_until(lambda: inc["state"] == "2", what="the incident reopened")
    wait_until(lambda: settled(pg), what="every intent delivered")
    assert h.terminate() == 0
    pub.close()
    assert len(sn.incidents) == 1
    assert db_rows(pg, "SELECT state, reopened FROM tickets") == [("open", 1)]


def test_two_hub_workers_and_a_restart_mid_delivery_give_one_ticket(
        mosquitto, pg, sn, tmp_path):
    toml = tickets_toml(tmp_path, sn)
    workers = {n: hub(mosquitto, pg, toml, tmp_path, n) for n in ("hub-a", "hub-b")}
    sn.fail(("slow", 8), "POST")              # the incident is made; the answer takes 8 s
    pub = Publisher(mosquitto)
    t0 = now_ts()
    pub.send(failed_alert("raised", 1, t0, t0))
    owner = wait_until(lambda: db_rows(pg, "SELECT lease_owner FROM ticket_intents"
                                           " WHERE status = 'sending'"), what="a lease")[0][0]
    wait_until(lambda: sn.incidents, what="the incident made on the ITSM side")
    workers[owner].kill()                     # dies before the answer comes back
    wait_until(lambda: settled(pg), what="the other worker to take over")
    workers[owner] = hub(mosquitto, pg, toml, tmp_path, owner)   # and it comes back
    pub.send(failed_alert("cleared", 2, t0, now_ts()))
    wait_until(lambda: db_rows(pg, "SELECT COUNT(*) FROM ticket_intents")[0][0] >= 1
               and db_rows(pg, "SELECT state FROM tickets") == [("cleared",)],
               what="the clear applied")
    wait_until(lambda: settled(pg), what="every intent delivered")
    for w in workers.values():
        w.terminate()
    pub.close()
    assert len(sn.incidents) == 1
    assert len(sn.requests("POST", "/incident")) == 1
    # The second attempt (the other worker's, after the lease ran out) found it by its
    # correlation_id instead of creating it again.
    assert db_rows(pg, "SELECT attempts FROM ticket_intents WHERE action = 'create'") == [(2,)]
    assert len(sn.requests("GET", "/incident$")) >= 1


def test_a_connector_down_for_a_while_receives_everything_afterwards_in_order(
        mosquitto, pg, sn, tmp_path):
    h = hub(mosquitto, pg, tickets_toml(tmp_path, sn), tmp_path)
    sn.down = True
    pub = Publisher(mosquitto)
    for i in range(10):
        t = now_ts()
        pub.send(failed_alert("raised", i + 1, t, t, device=f"p{i:02d}"))
        time.sleep(0.3)
    wait_until(lambda: db_rows(pg, "SELECT COUNT(*) FROM tickets")[0][0] == 10,
               what="ten tickets waiting")
    # Down long enough for the backoff to grow and the breaker to open and probe (seconds
    # here; tests/e2e/test_tickets_outage.py keeps the connector down for the 10 minutes).
    wait_until(lambda: len(sn.requests()) >= 6, what="several refused attempts")
    refused = len(sn.requests())
    sn.down = False
    wait_until(lambda: settled(pg), what="the backlog delivered")
    assert h.terminate() == 0
    pub.close()
    made = sorted(sn.incidents.values(), key=lambda r: r["number"])
    assert [r["short_description"].split()[1] for r in made] == [f"p{i:02d}" for i in range(10)]
    assert refused >= 6 and len(sn.requests("POST", "/incident")) >= 10
