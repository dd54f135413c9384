"""`edge-hub tickets` and `edge-hub approvals` on a hub database: tables, --json, retry,
approve and deny, mistakes as one line with exit 2 or 1, hostile text never printed raw."""

from __future__ import annotations

import json
import time

import pytest

from apiproc import hub_here

from hub.app import open_store
from hub.domains.tickets import outbox, policy as pol, rules
from hub.domains.tickets.text import DeviceFacts
from hub.ticketing import actions

POLICY = pol.TicketPolicy(routes=(pol.Route("sn"),),
                          connectors=(pol.ConnectorSpec("sn", "servicenow"),))


def hub(*args: str):
    """`edge-hub ARGS` in this process (apiproc.hub_here: the same main(), without an
    interpreter start per call); the console script as a process is tested in tests/e2e."""
    return hub_here(*args)


@pytest.fixture
def db_url(hub_db):
    db = open_store(hub_db)
    with db.transaction() as tx:
        out = rules.on_alert(tx, time.time, POLICY, rules.AlertEvent(
            "s1", "r1", "p1\x1b[2J", "failed", "raised", "2026-12-05T07:00:00.000Z",
            "2026-12-05T07:00:00.000Z", 1, "critical", facts=DeviceFacts(kind="escpos")))
        (c,) = outbox.claim(tx, time.time, "w", 60, 1, ["sn"])
        outbox.release(tx, time.time, c.id, "w", "HTTP 400 \x1b]0;pwned\x07", None)
        for ask in out.approvals:
            actions.request_for_ticket(tx, time.time, ask)
    db.close()
    return hub_db


def test_tickets_list_show_and_retry(db_url):
    r = hub("tickets", "list", "--db", db_url)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "p1\\e[2J" in r.stdout and "(not yet)" in r.stdout
    (t,) = json.loads(hub("tickets", "list", "--open", "--json", "--db", db_url).stdout)
    assert t["state"] == "open" and t["intents"] == {"failed": 1}
    r = hub("tickets", "show", str(t["id"]), "--db", db_url)
    assert r.returncode == 0 and "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert t["correlation"] in r.stdout and "HTTP 400" in r.stdout
    r = hub("tickets", "retry", str(t["id"]), "--as", "ops", "--db", db_url)
    assert r.returncode == 0 and "1 failed deliveries queued again" in r.stdout
    shown = json.loads(hub("tickets", "show", str(t["id"]), "--json", "--db", db_url).stdout)
    assert [i["status"] for i in shown["intents"]] == ["pending"]


def test_ticket_mistakes_are_one_line(db_url):
    for args, code, words in ((("tickets", "show", "abc"), 2, "numeric id"),
                              (("tickets", "show", "999"), 1, "unknown ticket 999"),
                              (("tickets", "list", "--store"), 2, "expected one argument")):
        r = hub(*args, "--db", db_url) if args[-1] != "--store" else hub(*args)
        assert r.returncode == code, (args, r.stderr)
        assert words in r.stderr and "Traceback" not in r.stderr


def test_approvals_show_approve_and_deny(db_url):
    (req,) = json.loads(hub("approvals", "list", "--pending", "--json", "--db", db_url).stdout)
    assert req["action"] == "replace_device" and req["requester"] == "edge-hub"
    shown = hub("approvals", "show", str(req["id"]), "--db", db_url)
    assert req["payload_hash"] in shown.stdout and "\x1b" not in shown.stdout
    r = hub("approvals", "approve", str(req["id"]), "--hash", "0" * 64, "--db", db_url)
    assert r.returncode == 1 and "not the one you saw" in r.stderr
    r = hub("approvals", "deny", str(req["id"]), "--db", db_url)
    assert r.returncode == 2 and "--reason" in r.stderr
    r = hub("approvals", "approve", str(req["id"]), "--as", "alice", "--reason", "ok",
            "--hash", req["payload_hash"], "--json", "--db", db_url)
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)
    assert done["status"] == "approved" and done["votes"][0]["approver"] == "local:alice"
    r = hub("approvals", "approve", str(req["id"]), "--as", "bob", "--db", db_url)
    assert r.returncode == 1 and "approved, not pending" in r.stderr


def test_serve_refuses_a_bad_tickets_file_naming_the_key_before_connecting(tmp_path):
    bad = tmp_path / "t.toml"
    bad.write_text('[tickets]\n[[tickets.families]]\nwhat = "failed"\npriority = "urgent"\n')
    r = hub("serve", "--tickets", str(bad), "--broker", "127.0.0.1:1", "--db",
            str(tmp_path / "h.db"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "tickets.families[0].priority: 'urgent' is not one of" in r.stderr
    secretless = tmp_path / "s.toml"
    secretless.write_text('[tickets]\n[tickets.connectors.sn]\ntype = "servicenow"\n'
                          'url = "https://x.service-now.com"\nusername = "hub"\n'
                          'password = "hunter2"\n')
    r = hub("serve", "--tickets", str(secretless), "--broker", "127.0.0.1:1", "--db",
            str(tmp_path / "h.db"))
    assert r.returncode == 1 and "secrets are not written in the config" in r.stderr
    assert "hunter2" not in r.stderr
    r = hub("serve", "--tickets", str(tmp_path / "missing.toml"), "--db", str(tmp_path / "h.db"))
    assert r.returncode == 1 and "cannot read" in r.stderr and "Traceback" not in r.stderr
