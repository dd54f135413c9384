"""Approvals on SQLite and PostgreSQL: self-approval, out-of-scope, expired and changed-payload
approvals are refused; a chain-wide action runs only after a second, distinct approver; every
request, decision, expiry and outcome is in the audit log.

The actors are chosen so the verdicts hold under helper U's permission matrix too (there only
hq-admin decides approvals; hq-admin and it-operator may ask for device actions)."""

from __future__ import annotations

import pytest

from domainkit import Clock, domain_store, trail
from hub.ticketing import actions
from hub.domains import approvals
from hub.domains.access import Actor
from hub.domains.approvals.schema import MIGRATIONS as APPROVALS
from hub.domains.audit.schema import MIGRATIONS as AUDIT
from hub.domains.tickets import policy as pol, rules
from hub.domains.tickets.schema import MIGRATIONS as TICKETS
from hub.domains.tickets.text import DeviceFacts
from hub.errors import Conflict, Forbidden

ANNA = Actor("user", "anna", "store-manager", stores=frozenset({"s1"}))
BOB = Actor("user", "bob", "regional-manager", regions=frozenset({"north"}))
CARL = Actor("user", "carl", "it-operator")
DORA = Actor("user", "dora", "hq-admin")
EVE = Actor("user", "eve", "store-manager", stores=frozenset({"s2"}))
OLAF = Actor("user", "olaf", "regional-manager", regions=frozenset({"south"}))
AUDITOR = Actor("user", "aud", "auditor")
HAL = Actor("user", "hal", "hq-admin")


@pytest.fixture
def db(hub_db):
    store = domain_store(hub_db, APPROVALS, TICKETS, AUDIT)
    yield store
    store.close()


def ask(db, clock, actor=CARL, payload=None, **kw):
    payload = payload or {"store": "s1", "device": "p1", "part": "autocutter unit"}
    kw.setdefault("store", "s1")
    kw.setdefault("region", "north")
    with db.transaction() as tx:
        rid = approvals.request(tx, clock, actor, "dispatch_technician", payload, **kw)
        return rid, approvals.show(tx, rid)["payload_hash"]


def approve(db, clock, actor, rid, h, reason=""):
    with db.transaction() as tx:
        return approvals.approve(tx, clock, actor, rid, h, reason)


def test_the_requester_cannot_approve_its_own_request(db):
    clock = Clock()
    rid, h = ask(db, clock, DORA)
    with pytest.raises(Forbidden, match="cannot approve"):
        approve(db, clock, DORA, rid, h)
    assert approve(db, clock, HAL, rid, h)["status"] == "approved"


@pytest.mark.parametrize("who", [EVE, OLAF, AUDITOR], ids=["other-store", "other-region",
                                                           "auditor"])
def test_an_approver_outside_the_stores_scope_or_role_is_refused(db, who):
    clock = Clock()
    rid, h = ask(db, clock)
    with pytest.raises(Forbidden):
        approve(db, clock, who, rid, h)
    with db.read() as tx:
        assert approvals.show(tx, rid)["status"] == "pending"
        assert approvals.show(tx, rid)["votes"] == []


def test_an_expired_request_is_refused_and_its_expiry_audited(db):
    clock = Clock()
    rid, h = ask(db, clock)
    clock.advance(24 * 3600 + 1)
    with db.transaction() as tx:
        assert approvals.expire(tx, clock) == [rid]
    with pytest.raises(Conflict, match="expired"):
        approve(db, clock, DORA, rid, h)
    with db.read() as tx:
        assert [e["action"] for e in trail(tx, f"approval:{rid}")] == \
            ["approval.request", "approval.expire"]


def test_a_changed_payload_is_refused_whether_seen_differently_or_edited_in_the_database(db):
    clock = Clock()
    rid, h = ask(db, clock)
    other = approvals.action_hash("dispatch_technician",
                                  {"store": "s1", "device": "p1", "part": "whole printer"})
    with pytest.raises(Conflict, match="not the one you saw"):
        approve(db, clock, DORA, rid, other)
    with db.transaction() as tx:   # someone edits the stored action behind the hub's back
        tx.execute("UPDATE approval_requests SET payload = ? WHERE id = ?",
                   ('{"device":"p1","part":"whole printer","store":"s1"}', rid))
    with pytest.raises(Conflict, match="no longer matches"):
        approve(db, clock, DORA, rid, h)


def test_a_chain_wide_action_needs_two_distinct_approvers_and_runs_only_after_the_second(db):
    clock = Clock()
    p = pol.TicketPolicy(routes=(pol.Route("sn"),), connectors=(pol.ConnectorSpec("sn",
                                                                                  "servicenow"),))
    with db.transaction() as tx:
        out = rules.on_alert(tx, clock, p, rules.AlertEvent(
            "s1", "north", "p1", "cutter_error", "raised", "2026-12-05T07:00:00.000Z",
            "2026-12-05T07:00:00.000Z", 1, "warning"))
    tid = out.ticket_id
    payload = {"ticket": tid, "store": "s1", "device": "p1", "part": "autocutter unit",
               "cause": "blade worn"}
    with db.transaction() as tx:
        rid = approvals.request(tx, clock, CARL, "replace_device", payload, chain_wide=True)
        h = approvals.show(tx, rid)["payload_hash"]
    with pytest.raises(Forbidden):                  # a store's manager: not chain-wide
        approve(db, clock, ANNA, rid, h)
    assert approve(db, clock, DORA, rid, h, "ok")["status"] == "pending"
    with pytest.raises(Conflict, match="already decided"):
        approve(db, clock, DORA, rid, h)
    assert actions.run_approved(db, clock) == 0    # nothing runs after one approver
    assert approve(db, clock, HAL, rid, h)["status"] == "approved"
    assert actions.run_approved(db, clock) == 1
    assert actions.run_approved(db, clock) == 0    # once
    with db.read() as tx:
        r = approvals.show(tx, rid)
        t = rules.show(tx, tid)
        actions_ = [e["action"] for e in trail(tx, f"approval:{rid}")]
    assert r["status"] == "executed"
    note = [i for i in t["intents"] if i["action"] == "comment"]
    assert len(note) == 1
    assert actions_ == ["approval.request", "approval.approve", "approval.approve",
                     "approval.outcome"]


def test_a_denial_needs_a_reason_ends_the_request_and_is_audited(db):
    clock = Clock()
    rid, h = ask(db, clock)
    with pytest.raises(ValueError):
        with db.transaction() as tx:
            approvals.deny(tx, clock, DORA, rid, " ")
    with pytest.raises(Forbidden):                     # denying needs the deciding role too
        with db.transaction() as tx:
            approvals.deny(tx, clock, OLAF, rid, "no")
    with db.transaction() as tx:
        assert approvals.deny(tx, clock, DORA, rid, "not in trading hours")["status"] == "denied"
    with pytest.raises(Conflict, match="denied"):
        approve(db, clock, HAL, rid, h)
    with db.read() as tx:
        (e,) = [e for e in trail(tx, f"approval:{rid}") if e["action"] == "approval.deny"]
    assert e["actor"] == "dora" and e["detail"]["reason"] == "not in trading hours"


def test_a_ticket_whose_cause_needs_approval_asks_for_it_and_pending_ones_are_published_once(db):
    clock = Clock()
    p = pol.TicketPolicy()
    with db.transaction() as tx:
        out = rules.on_alert(tx, clock, p, rules.AlertEvent(
            "s1", "north", "p1", "failed", "raised", "2026-12-05T07:00:00.000Z",
            "2026-12-05T07:00:00.000Z", 1, "critical", facts=DeviceFacts(kind="escpos")))
        (ask_,) = out.approvals
        rid = actions.request_for_ticket(tx, clock, ask_)
    with db.transaction() as tx:
        (pub,) = approvals.to_publish(tx, clock)
        assert approvals.to_publish(tx, clock) == []
    assert pub["id"] == rid and pub["region"] == "north" and pub["action"] == "replace_device"
    # The system asked; a person approves.
    assert approve(db, clock, DORA, rid, pub["payload_hash"])["status"] == "approved"


def test_decided_requests_are_forgotten_after_a_while_and_pending_ones_never(db):
    clock = Clock()
    old, h = ask(db, clock)
    with db.transaction() as tx:
        approvals.deny(tx, clock, DORA, old, "no")
    pending, _ = ask(db, clock)
    clock.advance(actions.KEEP_DECIDED_S + 1)
    actions.run_approved(db, clock)               # expires `pending`, prunes the old denial
    with db.read() as tx:
        assert [(r["id"], r["status"]) for r in approvals.list_requests(tx)] == \
            [(pending, "expired")]
        assert [e["action"] for e in trail(tx, f"approval:{old}")][-1] == "approval.deny"


def test_two_hub_workers_run_an_approved_action_once_and_publish_it_once(db, hub_db):
    from hub.app import open_store

    clock = Clock()
    p = pol.TicketPolicy(routes=(pol.Route("sn"),), connectors=(pol.ConnectorSpec("sn",
                                                                                  "servicenow"),))
    with db.transaction() as tx:
        out = rules.on_alert(tx, clock, p, rules.AlertEvent(
            "s1", "north", "p1", "failed", "raised", "2026-12-05T07:00:00.000Z",
            "2026-12-05T07:00:00.000Z", 1, "critical", facts=DeviceFacts(kind="escpos")))
        rid = actions.request_for_ticket(tx, clock, out.approvals[0])
    other = open_store(hub_db)
    try:
        # Both workers ask in turn (their UPDATE is conditional, for the interleaved case).
        with db.transaction() as a_tx:
            first = approvals.to_publish(a_tx, clock)
        with other.transaction() as b_tx:
            second = approvals.to_publish(b_tx, clock)
        assert len(first) + len(second) == 1
        approve(db, clock, DORA, rid, approvals.action_hash(
            "replace_device", first[0]["payload"] if first else second[0]["payload"]))
        with db.read() as tx:
            ready = approvals.runnable(tx)
        # Worker B saw it runnable too; A runs it first, B's start_run finds it taken.
        assert actions.run_approved(db, clock) == 1
        with other.transaction() as tx:
            assert not approvals.start_run(tx, ready[0]["id"])
        assert actions.run_approved(other, clock) == 0
    finally:
        other.close()
    with db.read() as tx:
        t = rules.show(tx, out.ticket_id)
    assert [i["action"] for i in t["intents"]].count("comment") == 1
