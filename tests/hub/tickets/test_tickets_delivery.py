"""The delivery worker against stand-in ITSM servers (tests/support/itsm_standins.py, written
from the vendors' documentation) and the hub database on SQLite and PostgreSQL: leases, lost answers,
Retry-After, backoff, the circuit breaker and in-order catch-up."""

from __future__ import annotations

import os
import threading
import types

import pytest

from domainkit import Clock, domain_store
from hub.connectors import build
from hub.ticketing.delivery import Breaker, DeliverySettings, Worker
from hub.domains.audit.schema import MIGRATIONS as AUDIT
from hub.domains.tickets import outbox, policy as pol, rules
from hub.domains.tickets.schema import MIGRATIONS as TICKETS
from hub.app import open_store
from itsm_standins import ServiceNowStandIn

FAST = DeliverySettings(lease_s=60, batch=10, backoff_base_s=1, backoff_max_s=60, jitter=0,
                        breaker_failures=3, breaker_open_s=30, tick_every_s=3600)


@pytest.fixture
def sn(tmp_path):
    server = ServiceNowStandIn().start()
    pw = tmp_path / "pw"
    pw.write_text("pw")
    os.chmod(pw, 0o600)
    spec = pol.ConnectorSpec("sn", "servicenow", types.MappingProxyType(
        {"url": server.url, "username": "hub", "password_file": str(pw), "timeout_s": 2}))
    server.spec = spec
    yield server
    server.stop()


@pytest.fixture
def db(hub_db):
    store = domain_store(hub_db, TICKETS, AUDIT)
    yield store
    store.close()


def policy(spec) -> pol.TicketPolicy:
    return pol.TicketPolicy(routes=(pol.Route("sn"),), connectors=(spec,),
                            repeat_comment_s=0, resolve_after_s=0)


def raise_(db, clock, p, seq, device="p1", state="raised"):
    with db.transaction() as tx:
        return rules.on_alert(tx, clock, p, rules.AlertEvent(
            "s1", "r1", device, "failed", state, "2026-12-05T07:00:00.000Z",
            "2026-12-05T07:00:00.000Z", seq, "critical", ("status error",)))


def worker(db, sn, clock, owner="w1", settings=FAST):
    return Worker(db, policy(sn.spec), {"sn": build(sn.spec)}, owner, settings, clock,
                  rng=lambda: 0.5)


def drain(w, rounds=50):
    for _ in range(rounds):
        if not w.run_once():
            return


def statuses(db):
    with db.read() as tx:
        tx.execute("SELECT action, status FROM ticket_intents ORDER BY id")
        return [tuple(r) for r in tx.fetchall()]


def test_create_comment_resolve_reach_the_incident_and_the_ticket_shows_its_key(db, sn):
    clock = Clock()
    p = policy(sn.spec)
    raise_(db, clock, p, 1)
    raise_(db, clock, p, 2)                        # a repeat: a work note
    raise_(db, clock, p, 3, state="cleared")       # a clear note, then resolved at once
    w = worker(db, sn, clock)
    drain(w)
    assert statuses(db) == [("create", "done"), ("comment", "done"), ("comment", "done"),
                            ("resolve", "done")]
    (inc,) = sn.incidents.values()
    assert inc["state"] == "6" and len(inc["work_notes"]) == 2
    with db.read() as tx:
        (t,) = rules.list_tickets(tx)
    assert (t["external_key"], t["external_state"]) == (inc["number"], "6")
    assert inc["sys_id"] in t["external_url"]


def test_a_worker_dying_after_the_create_reached_the_server_gives_one_incident(db, sn):
    clock = Clock()
    p = policy(sn.spec)
    raise_(db, clock, p, 1)
    # Worker A claims and creates, then dies before recording the answer.
    with db.transaction() as tx:
        (c,) = outbox.claim(tx, clock, "A", 60, 10, ["sn"])
    build(sn.spec).deliver(c)
    assert len(sn.incidents) == 1
    clock.advance(61)                              # A's lease runs out
    w = worker(db, sn, clock, "B")
    drain(w)
    assert len(sn.incidents) == 1 and statuses(db) == [("create", "done")]
    assert len(sn.requests("POST", "/incident")) == 1
    assert len(sn.requests("GET", "/incident$")) == 1   # B looked it up first


def test_429_retry_after_and_exponential_backoff_set_when_it_is_due_again(db, sn):
    clock = Clock()
    p = policy(sn.spec)
    raise_(db, clock, p, 1)
    w = worker(db, sn, clock)
    sn.fail(("status", 429, 40))
    w.run_once()
    with db.read() as tx:
        tx.execute("SELECT next_at, status, last_error FROM ticket_intents")
        next_at, status, err = tx.fetchone()
    assert status == "pending" and next_at == clock() + 40 and "HTTP 429" in err
    assert w.run_once() == 0                       # not due yet
    clock.advance(40)
    sn.fail(("status", 500, None))
    w.run_once()
    with db.read() as tx:
        tx.execute("SELECT next_at, attempts FROM ticket_intents")
        next_at, attempts = tx.fetchone()
    assert attempts == 2 and next_at == clock() + 2  # base * 2^(2-1), no jitter at rng 0.5
    assert [w.backoff(n) for n in (1, 5, 30)] == [1, 16, 60]
    jittery = Worker(db, p, {}, "j", DeliverySettings(jitter=0.2), clock, rng=lambda: 0.0)
    assert jittery.backoff(1) == pytest.approx(0.8)


def test_a_permanent_error_fails_the_intent_until_retried(db, sn):
    clock = Clock()
    p = policy(sn.spec)
    raise_(db, clock, p, 1)
    raise_(db, clock, p, 2)
    sn.fail(("status", 400, None), "POST")
    w = worker(db, sn, clock)
    drain(w)
    assert statuses(db) == [("create", "failed"), ("comment", "pending")]
    from hub.domains.access import Actor
    with db.transaction() as tx:
        rules.retry(tx, clock, 1, Actor("user", "ops", "it-operator"))
    drain(w)
    assert statuses(db) == [("create", "done"), ("comment", "done")]


def test_an_intent_older_than_the_policy_allows_is_given_up(db, sn):
    clock = Clock()
    p = policy(sn.spec)
    raise_(db, clock, p, 1)
    sn.down = True
    w = worker(db, sn, clock)
    w.run_once()
    clock.advance(p.max_attempts_age_s + 1)
    w.breakers["sn"].success()
    w.run_once()
    with db.read() as tx:
        tx.execute("SELECT status, last_error FROM ticket_intents")
        status, err = tx.fetchone()
    assert status == "failed" and err.startswith("gave up after 2 attempts")


def test_a_connector_down_then_up_receives_everything_afterwards_in_order(db, sn):
    clock = Clock()
    p = policy(sn.spec)
    sn.down = True
    w = worker(db, sn, clock)
    for i in range(12):                            # 12 problems arrive during the outage
        raise_(db, clock, p, i + 1, device=f"p{i:02d}")
        w.run_once()
        clock.advance(50)                          # 10 minutes in all
    assert w.breakers["sn"].state in ("open", "half-open")
    posts_while_down = len(sn.requests("POST"))
    assert posts_while_down < 12                   # the breaker held most of them back
    sn.down = False
    clock.advance(30)
    drain(w)
    assert all(s == "done" for _, s in statuses(db))
    order = [r["short_description"] for r in sorted(sn.incidents.values(),
                                                     key=lambda r: r["number"])]
    assert order == [f"[s1] p{i:02d} (device): failed" for i in range(12)]
    assert len(sn.incidents) == 12


def test_breaker_opens_after_failures_probes_once_and_closes():
    b = Breaker(3, 30)
    for _ in range(3):
        assert b.allow(0)
        b.failure(0)
    assert b.state == "open" and b.allow(10) == 0
    assert b.allow(30) == 1 and b.allow(30) == 0   # one probe only
    b.failure(31)
    assert b.state == "open" and b.allow(40) == 0
    assert b.allow(61) == 1
    assert b.success() is True and b.state == "closed"


def test_two_workers_racing_deliver_each_intent_once(db, sn, hub_db):
    clock = Clock()
    p = policy(sn.spec)
    for i in range(30):
        raise_(db, clock, p, i + 1, device=f"d{i}")
    stores = [open_store(hub_db) for _ in range(2)]
    workers = [Worker(s, p, {"sn": build(sn.spec)}, f"w{i}", FAST, clock)
               for i, s in enumerate(stores)]
    threads = [threading.Thread(target=drain, args=(w, 100)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for s in stores:
        s.close()
    assert len(sn.incidents) == 30 and len(sn.requests("POST")) == 30
    assert sum(w.counts["delivered"] for w in workers) == 30
    assert all(s == "done" for _, s in statuses(db))
