"""Approvals and tickets through the HTTP API (Starlette's test client) on SQLite and PostgreSQL:
the approvals domain's rules as problem details (self-approval and out-of-scope 403; expired,
changed or decided 409), reads scoped by the caller's role, every decision audited."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from apikit import hub_with_fleet
from hub.api.app import create_app
from hub.config import HubConfig
from hub.domains import approvals, audit
from hub.domains.access.users import authenticate


class Clock:
    def __init__(self, now: float = 1_764_900_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def env(hub_db):
    db, tokens = hub_with_fleet(hub_db)
    clock = Clock()
    client = TestClient(create_app(db, HubConfig(), clock), raise_server_exceptions=True)
    yield client, tokens, db, clock
    db.close()


def call(client, token, method, path, body=None):
    headers = {"Authorization": f"Bearer {token}"}
    if body is None:
        return client.request(method, path, headers=headers)
    headers["Content-Type"] = "application/json"
    return client.request(method, path, headers=headers, content=json.dumps(body))


def ask(db, clock, tokens, who="ops", store="s1", region="north", chain_wide=False,
        payload=None) -> int:
    with db.transaction() as tx:
        actor = authenticate(tx, tokens[who])
        return approvals.request(tx, clock, actor, "ticket.dispatch",
                                 payload or {"store": store, "device": "p1", "part": "cutter"},
                                 store=None if chain_wide else store,
                                 region=None if chain_wide else region,
                                 chain_wide=chain_wide)


def trail(db, target: str) -> list[tuple[str, str]]:
    with db.read() as tx:
        return [(e["action"], e["actor"]) for e in audit.entries(tx) if e["object"] == target]


def test_a_valid_approval_works_is_audited_and_shows_in_scoped_lists(env):
    client, tokens, db, clock = env
    rid = ask(db, clock, tokens)
    other = ask(db, clock, tokens, store="s3", region="south")
    shown = call(client, tokens["north-rm"], "GET", f"/v1/approvals/{rid}")
    assert shown.status_code == 200 and shown.json()["status"] == "pending"
    h = shown.json()["payload_hash"]
    # Scoped reads: the north manager sees s1's request only, the s3 manager s3's only.
    ids = [r["id"] for r in call(client, tokens["north-rm"], "GET",
                                 "/v1/approvals?pending=true").json()]
    assert ids == [rid]
    assert [r["id"] for r in call(client, tokens["s3-sm"], "GET", "/v1/approvals").json()] \
        == [other]
    assert len(call(client, tokens["admin"], "GET", "/v1/approvals").json()) == 2
    r = call(client, tokens["north-rm"], "POST", f"/v1/approvals/{rid}/approve",
             {"reason": "go", "hash": h})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved" and r.json()["votes"][0]["approver"] == "north-rm"
    assert ("approval.approve", "north-rm") in trail(db, f"approval:{rid}")
    assert [r["id"] for r in call(client, tokens["north-rm"], "GET",
                                  "/v1/approvals?pending=true").json()] == []
    # Deciding it again: 409.
    again = call(client, tokens["admin"], "POST", f"/v1/approvals/{rid}/approve")
    assert again.status_code == 409 and "not pending" in again.json()["detail"]


def test_the_requester_cannot_approve_its_own_and_out_of_scope_roles_get_403(env):
    client, tokens, db, clock = env
    rid = ask(db, clock, tokens)
    own = call(client, tokens["ops"], "POST", f"/v1/approvals/{rid}/approve")
    assert own.status_code == 403 and "cannot approve" in own.json()["detail"]
    assert own.headers["content-type"] == "application/problem+json"
    # Another store's manager may neither read nor decide it; an auditor may read, not decide.
    assert call(client, tokens["s3-sm"], "GET", f"/v1/approvals/{rid}").status_code == 403
    for who in ("s3-sm", "audit"):
        r = call(client, tokens[who], "POST", f"/v1/approvals/{rid}/approve", {"reason": "x"})
        assert r.status_code == 403, who
        r = call(client, tokens[who], "POST", f"/v1/approvals/{rid}/deny", {"reason": "x"})
        assert r.status_code == 403, who
    assert call(client, tokens["audit"], "GET", f"/v1/approvals/{rid}").status_code == 200
    with db.read() as tx:
        assert approvals.show(tx, rid)["status"] == "pending"
    # A chain-wide request needs a chain-wide role: the regional manager may not decide it.
    chain = ask(db, clock, tokens, chain_wide=True)
    assert call(client, tokens["north-rm"], "POST",
                f"/v1/approvals/{chain}/approve").status_code == 403


def test_expired_and_changed_requests_are_409_and_a_denial_needs_a_reason(env):
    client, tokens, db, clock = env
    rid = ask(db, clock, tokens)
    wrong = call(client, tokens["admin"], "POST", f"/v1/approvals/{rid}/approve",
                 {"hash": "0" * 64})
    assert wrong.status_code == 409 and "hash differs" in wrong.json()["detail"]
    with db.transaction() as tx:   # the payload edited in the database after it was asked
        tx.execute("UPDATE approval_requests SET payload = ? WHERE id = ?",
                   ('{"device":"p2","part":"cutter","store":"s1"}', rid))
    tampered = call(client, tokens["admin"], "POST", f"/v1/approvals/{rid}/approve")
    assert tampered.status_code == 409 and "no longer matches" in tampered.json()["detail"]
    late = ask(db, clock, tokens)
    clock.now += approvals.DEFAULT_TTL_S + 1
    r = call(client, tokens["admin"], "POST", f"/v1/approvals/{late}/approve")
    assert r.status_code == 409 and "expired" in r.json()["detail"]
    assert call(client, tokens["admin"], "GET", f"/v1/approvals/{late}").json()["status"] \
        == "expired"
    fresh = ask(db, clock, tokens)
    for body in ({}, {"reason": " "}, {"reason": 3}, {"reason": "x", "extra": 1}):
        r = call(client, tokens["admin"], "POST", f"/v1/approvals/{fresh}/deny", body)
        assert r.status_code == 400, body
    r = call(client, tokens["north-rm"], "POST", f"/v1/approvals/{fresh}/deny",
             {"reason": "not during trading"})
    assert r.status_code == 200 and r.json()["status"] == "denied"
    assert ("approval.deny", "north-rm") in trail(db, f"approval:{fresh}")
    assert call(client, tokens["admin"], "GET", "/v1/approvals/abc").status_code == 400
    assert call(client, tokens["admin"], "GET", "/v1/approvals/99999").status_code == 404


def test_tickets_are_read_inside_the_caller_s_scope(env):
    client, tokens, db, clock = env
    cols = ("fingerprint", "generation", "correlation", "store", "region", "device", "family",
            "what", "kind", "priority", "connector", "route", "state", "opened", "updated",
            "events")
    with db.transaction() as tx:
        for n, (store, region, state) in enumerate([("s1", "north", "open"),
                                                    ("s3", "south", "open"),
                                                    ("s1", "north", "resolved")]):
            tx.execute(f"INSERT INTO tickets ({', '.join(cols)}) VALUES"
                       f" ({', '.join('?' * len(cols))})",
                       (f"fp{n}", 1, f"c{n}", store, region, "p1", "failed", "jam",
                        "incident", "2", "webhook", "{}", state, 1.0, 1.0, 1))
    every = call(client, tokens["ops"], "GET", "/v1/tickets").json()
    assert len(every) == 3
    assert len(call(client, tokens["ops"], "GET", "/v1/tickets?open=true").json()) == 2
    north = call(client, tokens["north-rm"], "GET", "/v1/tickets").json()
    assert {t["store"] for t in north} == {"s1"} and len(north) == 2
    assert call(client, tokens["s3-sm"], "GET", "/v1/tickets?store=s1").json() == []
    s3_ticket = next(t["id"] for t in every if t["store"] == "s3")
    assert call(client, tokens["north-rm"], "GET",
                f"/v1/tickets/{s3_ticket}").status_code == 403
    one = call(client, tokens["s3-sm"], "GET", f"/v1/tickets/{s3_ticket}")
    assert one.status_code == 200 and one.json()["intents"] == []
    assert call(client, tokens["admin"], "GET", "/v1/tickets/424242").status_code == 404


def test_a_ticket_s_failed_deliveries_are_retried_by_who_may_write_tickets(env):
    client, tokens, db, clock = env
    cols = ("fingerprint", "generation", "correlation", "store", "region", "device", "family",
            "what", "kind", "priority", "connector", "route", "state", "opened", "updated",
            "events")
    with db.transaction() as tx:
        tx.execute(f"INSERT INTO tickets ({', '.join(cols)}) VALUES"
                   f" ({', '.join('?' * len(cols))})",
                   ("fpr", 1, "cr", "s1", "north", "p1", "failed", "jam", "incident", "2",
                    "webhook", "{}", "open", 1.0, 1.0, 1))
        tx.execute("SELECT id FROM tickets WHERE correlation = 'cr'")
        tid = tx.fetchone()[0]
        tx.execute("INSERT INTO ticket_intents (ticket_id, fingerprint, action, connector, body,"
                   " status, created, next_at, attempts, last_error) VALUES"
                   " (?, 'fpr', 'create', 'webhook', '{}', 'failed', 1.0, 1.0, 3, 'HTTP 400')",
                   (tid,))
    path = f"/v1/tickets/{tid}/retry"
    # Reading tickets is not enough: 403 before the ticket is even looked up.
    for who in ("north-rm", "s3-sm", "audit"):
        r = call(client, tokens[who], "POST", path)
        assert r.status_code == 403 and "may not tickets.write" in r.json()["detail"], who
    assert call(client, tokens["ops"], "POST", "/v1/tickets/424242/retry").status_code == 404
    assert call(client, tokens["ops"], "POST", "/v1/tickets/x/retry").status_code == 400
    assert call(client, tokens["ops"], "POST", path, {"now": True}).status_code == 400
    r = call(client, tokens["ops"], "POST", path, {})
    assert r.status_code == 200 and r.json() == {"ticket": tid, "requeued": 1}
    assert call(client, tokens["admin"], "POST", path).json() == {"ticket": tid, "requeued": 0}
    with db.read() as tx:
        tx.execute("SELECT status, attempts, next_at FROM ticket_intents WHERE ticket_id = ?",
                   (tid,))
        assert tx.fetchall() == [("pending", 0, clock.now)]
        (first, second) = [e for e in audit.entries(tx) if e["object"] == f"ticket:{tid}"]
    assert (first["action"], first["actor"], first["source"][:4]) == ("ticket.retry", "ops",
                                                                      "api:")
    assert first["detail"]["intents"] == 1 and first["detail"]["store"] == "s1"
    assert (second["actor"], second["detail"]["intents"]) == ("admin", 0)


@pytest.mark.parametrize("reason", ["\ud800", "no\x00", "\udfff tail"])
def test_a_reason_no_column_holds_is_a_400_and_the_request_stays_pending(env, reason):
    # Found by the API fuzz target (fuzz/hub_api.py): a lone surrogate escape ("\ud800") in a
    # deny or approve reason made the write raise UnicodeEncodeError (a 500); a NUL was stored
    # on SQLite and refused by PostgreSQL (a 503). Every body is now checked once when read.
    client, tokens, db, clock = env
    rid = ask(db, clock, tokens)
    before = trail(db, f"approval:{rid}")
    for action in ("deny", "approve"):
        r = call(client, tokens["admin"], "POST", f"/v1/approvals/{rid}/{action}",
                 {"reason": reason})
        assert r.status_code == 400, r.text
        assert r.headers["content-type"] == "application/problem+json"
    with db.read() as tx:
        assert approvals.show(tx, rid)["status"] == "pending"
    assert trail(db, f"approval:{rid}") == before
