"""Ticket rules on SQLite and PostgreSQL: one ticket per problem, repeats, clears, reopen windows,
won't fix, flapping, stale transitions, the outbox's leases and order, and the ticket's text."""

from __future__ import annotations

import json

import pytest

from domainkit import Clock, domain_store, trail
from hub.domains.audit.schema import MIGRATIONS as AUDIT
from hub.domains.tickets import outbox, policy as pol, rules
from hub.domains.tickets.schema import MIGRATIONS as TICKETS
from hub.domains.tickets.text import DeviceFacts, scrub

POLICY = pol.TicketPolicy(
    routes=(pol.Route("sn", regions=("r1",)),),
    connectors=(pol.ConnectorSpec("sn", "servicenow"),),
    repeat_comment_s=900, resolve_after_s=600, reopen_within_s=7 * 86400)


@pytest.fixture
def db(hub_db):
    store = domain_store(hub_db, TICKETS, AUDIT)
    yield store
    store.close()


class Seq:
    def __init__(self):
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


def ev(state: str, seq: int, *, what: str = "failed", device: str = "p1", store: str = "s1",
       region: str = "r1", **kw) -> rules.AlertEvent:
    return rules.AlertEvent(store, region, device, what, state, "2026-12-05T07:00:00.000Z",
                            "2026-12-05T07:00:00.000Z", seq, "critical", ("status error",),
                            **kw)


def apply(db, clock, e, policy=POLICY) -> rules.Outcome:
    with db.transaction() as tx:
        return rules.on_alert(tx, clock, policy, e)


def tick(db, clock, policy=POLICY) -> list[int]:
    with db.transaction() as tx:
        return rules.tick(tx, clock, policy)


def tickets(db) -> list[dict]:
    with db.read() as tx:
        return rules.list_tickets(tx)


def intents(db) -> list[tuple]:
    with db.read() as tx:
        tx.execute("SELECT ticket_id, action, status FROM ticket_intents ORDER BY id")
        return [tuple(r) for r in tx.fetchall()]


def deliver_all(db, clock, owner="w1", result=None):
    """Pretend a connector accepted everything due (the rules' side of delivery)."""
    n = 0
    while True:
        with db.transaction() as tx:
            got = outbox.claim(tx, clock, owner, 60, 100, ["sn"])
            for c in got:
                rules.record_delivered(tx, clock, c.id, owner,
                                       result or {"key": f"INC{c.ticket_id:07d}",
                                                  "ref": f"sys{c.ticket_id}", "state": "1"},
                                       POLICY)
        if not got:
            return n
        n += len(got)


def test_a_raise_opens_one_ticket_and_repeats_comment_at_most_once_per_interval(db):
    clock, seq = Clock(), Seq()
    out = apply(db, clock, ev("raised", seq()))
    assert out.effect == "opened" and len(out.intents) == 1
    for _ in range(5):            # repeats within the interval: counted, not said
        clock.advance(60)
        assert apply(db, clock, ev("raised", seq())).intents == []
    clock.advance(900)
    out = apply(db, clock, ev("raised", seq()))
    assert out.effect == "repeat" and len(out.intents) == 1
    assert [i[1] for i in intents(db)] == ["create", "comment"]
    with db.read() as tx:
        tx.execute("SELECT body FROM ticket_intents WHERE action = 'comment'")
        assert "5 more alert transitions" in json.loads(tx.fetchone()[0])["text"]
    assert len(tickets(db)) == 1


def test_a_flapping_printer_gives_one_ticket_and_a_few_comments(db):
    clock, seq = Clock(), Seq()
    for _ in range(20):           # failed and ok 20 times in an hour
        apply(db, clock, ev("raised", seq()))
        clock.advance(90)
        apply(db, clock, ev("cleared", seq()))
        clock.advance(90)
    ts = tickets(db)
    assert len(ts) == 1 and ts[0]["state"] == "cleared" and ts[0]["events"] == 40
    actions = [i[1] for i in intents(db)]
    assert actions.count("create") == 1
    assert 1 <= actions.count("comment") <= 4   # one an interval of 900 s over an hour
    assert "reopen" not in actions and "resolve" not in actions
    clock.advance(600)
    assert len(tick(db, clock)) == 1             # the clear held: resolved once
    assert tickets(db)[0]["state"] == "resolved"


def test_clear_resolves_only_after_it_held_and_only_when_configured(db):
    clock, seq = Clock(), Seq()
    apply(db, clock, ev("raised", seq()))
    apply(db, clock, ev("cleared", seq()))
    clock.advance(599)
    assert tick(db, clock) == []
    clock.advance(1)
    assert len(tick(db, clock)) == 1
    assert tick(db, clock) == []                 # once
    off = pol.TicketPolicy(routes=POLICY.routes, connectors=POLICY.connectors,
                           resolve_on_clear=False, resolve_after_s=0)
    apply(db, clock, ev("raised", seq(), device="p2"), off)
    apply(db, clock, ev("cleared", seq(), device="p2"), off)
    clock.advance(10_000)
    assert tick(db, clock, off) == []
    assert {t["device"]: t["state"] for t in tickets(db)} == {"p1": "resolved", "p2": "cleared"}


def test_a_recurrence_within_reopen_within_reopens_and_a_later_one_opens_a_linked_ticket(db):
    clock, seq = Clock(), Seq()
    apply(db, clock, ev("raised", seq()))
    apply(db, clock, ev("cleared", seq()))
    clock.advance(600)
    tick(db, clock)
    deliver_all(db, clock)
    clock.advance(6 * 86400)                     # within 7 days: the same ticket again
    out = apply(db, clock, ev("raised", seq()))
    assert out.effect == "reopened"
    assert len(tickets(db)) == 1 and tickets(db)[0]["reopened"] == 1
    apply(db, clock, ev("cleared", seq()))
    clock.advance(600)
    tick(db, clock)
    deliver_all(db, clock)
    clock.advance(7 * 86400 + 1)                 # later: a new ticket that links the old
    out = apply(db, clock, ev("raised", seq()))
    assert out.effect == "opened_new"
    new, old = tickets(db)
    assert new["previous_id"] == old["id"] and new["generation"] == 2
    assert new["correlation"] != old["correlation"]
    with db.transaction() as tx:
        (c,) = outbox.claim(tx, clock, "w1", 60, 10, ["sn"])
    assert c.action == "create" and c.previous["key"] == old["external_key"]
    assert old["external_key"] in json.dumps(c.body["text"])


def test_a_ticket_closed_as_wont_fix_is_not_reopened(db):
    clock, seq = Clock(), Seq()
    apply(db, clock, ev("raised", seq()))
    apply(db, clock, ev("cleared", seq()))
    clock.advance(600)
    tick(db, clock)
    deliver_all(db, clock)
    clock.advance(3600)
    apply(db, clock, ev("raised", seq()))        # reopen asked; the ITSM says won't fix
    with db.transaction() as tx:
        (c,) = outbox.claim(tx, clock, "w1", 60, 10, ["sn"])
        assert c.action == "reopen"
        rules.record_delivered(tx, clock, c.id, "w1", {"refused": "wontfix", "state": "7"},
                               POLICY)
    assert tickets(db)[0]["state"] == "wontfix"
    for _ in range(3):
        clock.advance(3600)
        out = apply(db, clock, ev("raised", seq()))
        assert out.effect == "suppressed_wontfix" and out.intents == []
        apply(db, clock, ev("cleared", seq()))
    assert len(tickets(db)) == 1


def test_a_ticket_closed_for_good_is_followed_by_a_linked_one(db):
    clock, seq = Clock(), Seq()
    apply(db, clock, ev("raised", seq()))
    apply(db, clock, ev("cleared", seq()))
    clock.advance(600)
    tick(db, clock)
    deliver_all(db, clock)
    apply(db, clock, ev("raised", seq()))
    with db.transaction() as tx:
        (c,) = outbox.claim(tx, clock, "w1", 60, 10, ["sn"])
        rules.record_delivered(tx, clock, c.id, "w1", {"refused": "closed"}, POLICY)
    new, old = tickets(db)
    assert old["state"] == "closed" and new["previous_id"] == old["id"]
    assert new["state"] == "open"


def test_stale_and_redelivered_transitions_change_nothing(db):
    clock = Clock()
    apply(db, clock, ev("raised", 5))
    assert apply(db, clock, ev("raised", 5)).effect == "stale"
    assert apply(db, clock, ev("cleared", 4)).effect == "stale"   # an older batch, late
    assert tickets(db)[0]["state"] == "open"
    assert len(intents(db)) == 1


def test_families_without_tickets_and_unrouted_stores(db):
    clock = Clock()
    assert apply(db, clock, ev("raised", 1, what="paper_out")).effect == "none"
    out = apply(db, clock, ev("raised", 2, what="predicted_failure", region="r9"))
    assert out.effect == "opened"
    (t,) = tickets(db)
    assert (t["kind"], t["priority"], t["connector"]) == ("maintenance", "low", None)
    assert intents(db) == [(t["id"], "create", "unrouted")]
    # Different families of one device are different problems.
    apply(db, clock, ev("raised", 3, what="failed", region="r9"))
    assert len(tickets(db)) == 2


def test_every_change_is_audited_with_the_decision_that_caused_it(db):
    clock = Clock()
    decision = {"decision": "failed", "model": "health-7", "score": 0.97, "threshold": 0.8,
                "explanation": ["cutter errors 12 in 1 h"], "features": {"cut_err_rate": 0.4}}
    apply(db, clock, ev("raised", 1, decision=decision))
    with db.read() as tx:
        (entry,) = trail(tx, "ticket:")
    assert entry["action"] == "ticket.open" and entry["actor_kind"] == "system"
    d = entry["detail"]
    assert (d["store"], d["device"], d["model"], d["score"], d["threshold"]) == \
        ("s1", "p1", "health-7", 0.97, 0.8)
    assert d["explanation"] == ["cutter errors 12 in 1 h"]


def test_the_ticket_text_has_device_provenance_cause_and_hint_and_no_card_numbers(db):
    clock = Clock()
    facts = DeviceFacts(kind="escpos", model="TM-T88VI", serial="X5ZF012345",
                        firmware="30.08", location="lane 3",
                        readings={"printer.cutter": "error", "printer.cut_count": 1_204_330,
                                  "customer.name": "Jane", "pos.card": "4111111111111111"},
                        readings_ts="2026-12-05T06:59:00.000Z")
    decision = {"decision": "failed", "model": "health-7", "score": 0.97, "threshold": 0.8,
                "explanation": ["receipt 4111 1111 1111 1111 failed to cut"],
                "features": {"cut_err_rate": 0.4}}
    hinted = pol.TicketPolicy(routes=POLICY.routes, connectors=POLICY.connectors,
                              store_hints={"s1": "use printer B by the door"})
    apply(db, clock, ev("raised", 1, what="cutter_error", facts=facts, decision=decision),
          hinted)
    with db.read() as tx:
        tx.execute("SELECT body FROM ticket_intents")
        body = json.loads(tx.fetchone()[0])
    text = json.dumps(body["text"])
    for needle in ("TM-T88VI", "X5ZF012345", "30.08", "lane 3", "health-7", "0.97", "0.8",
                   "cut_err_rate=0.4", "printer.cut_count=1204330", "autocutter unit",
                   "use printer B by the door", "needs approval", body["correlation"]):
        assert needle in text, needle
    for banned in ("4111", "Jane", "customer.", "pos.card"):
        assert banned not in text, banned
    assert body["text"]["summary"] == "[s1] p1 (escpos): cutter error"
    assert scrub("ok 1234567812345678 x") == "ok 1234567812345678 x"  # not a Luhn number


def test_two_workers_never_lease_the_same_intent_and_delivery_is_in_order_per_problem(db):
    clock, seq = Clock(), Seq()
    apply(db, clock, ev("raised", seq()))
    apply(db, clock, ev("raised", seq(), device="p2"))
    clock.advance(1000)
    apply(db, clock, ev("raised", seq()))          # a comment behind p1's create
    with db.transaction() as tx:
        a = outbox.claim(tx, clock, "A", 60, 10, ["sn"])
    with db.transaction() as tx:
        b = outbox.claim(tx, clock, "B", 60, 10, ["sn"])
    assert [c.action for c in a] == ["create", "create"] and b == []
    # A dies; its leases run out; B takes over and sees the attempts counted.
    clock.advance(61)
    with db.transaction() as tx:
        b = outbox.claim(tx, clock, "B", 60, 10, ["sn"])
        assert [c.attempts for c in b] == [2, 2]
        # A's late answer does not count: it no longer holds the lease.
        assert not rules.record_delivered(tx, clock, a[0].id, "A", {"key": "INC1"}, POLICY)
        assert outbox.release(tx, clock, b[0].id, "B", "HTTP 503", clock() + 30)
        assert rules.record_delivered(tx, clock, b[1].id, "B", {"key": "INC2"}, POLICY)
    with db.transaction() as tx:      # p1's comment waits for p1's create, due in 30 s
        assert outbox.claim(tx, clock, "B", 60, 10, ["sn"]) == []
    clock.advance(30)
    with db.transaction() as tx:
        got = outbox.claim(tx, clock, "B", 60, 10, ["sn"])
    assert [c.action for c in got] == ["create"]
    with db.transaction() as tx:
        rules.record_delivered(tx, clock, got[0].id, "B", {"key": "INC1", "ref": "r1"}, POLICY)
        (c,) = outbox.claim(tx, clock, "B", 60, 10, ["sn"])
    assert c.action == "comment" and c.external_ref == "r1"


def test_a_failed_intent_holds_its_problem_until_retried(db):
    clock = Clock()
    apply(db, clock, ev("raised", 1))
    clock.advance(1000)
    apply(db, clock, ev("cleared", 2))        # a clear comment, behind the create
    with db.transaction() as tx:
        (c,) = outbox.claim(tx, clock, "A", 60, 10, ["sn"])
        outbox.release(tx, clock, c.id, "A", "HTTP 400: bad field", None)
    with db.transaction() as tx:
        assert outbox.claim(tx, clock, "A", 60, 10, ["sn"]) == []
    with db.read() as tx:
        shown = rules.show(tx, c.ticket_id)
    assert shown["last_error"] == "HTTP 400: bad field"
    assert [i["status"] for i in shown["intents"]] == ["failed", "pending"]
    from hub.domains.access import Actor
    with db.transaction() as tx:
        assert rules.retry(tx, clock, c.ticket_id, Actor("user", "ops", "it-operator")) == 1
    with db.transaction() as tx:
        assert [x.action for x in outbox.claim(tx, clock, "A", 60, 10, ["sn"])] == ["create"]


def test_policy_parse_names_the_key_path_of_a_mistake():
    p = pol.parse({"repeat_comment_s": 60,
                   "families": [{"what": "failed", "ticket": "incident", "priority": "high"}],
                   "connectors": {"sn": {"type": "servicenow", "url": "https://x"}},
                   "routes": [{"connector": "sn", "regions": ["north"]}],
                   "actions": {"remote_reset": "automatic"}})
    assert p.repeat_comment_s == 60 and p.route_for("s1", "north").connector == "sn"
    assert p.route_for("s1", "south") is None and p.tier("remote_reset") == "automatic"
    for bad, where in (
            ({"families": [{"what": "failed", "priority": "urgent"}]}, "tickets.families[0].priority"),
            ({"routes": [{"connector": "nope"}]}, "tickets.routes[0].connector"),
            ({"connectors": {"x": {"url": "u"}}}, "tickets.connectors.x.type"),
            ({"actions": {"remote_reset": "sometimes"}}, "tickets.actions.remote_reset"),
            ({"reopen_within_s": -1}, "tickets.reopen_within_s"),
            ({"colour": "red"}, "tickets.colour")):
        with pytest.raises(pol.PolicyError, match=rf"^{where.replace('[', '.').replace(']', '.')}"):
            pol.parse(bad)


def test_delivered_intents_are_forgotten_after_keep_done_s_and_waiting_ones_never(db):
    clock = Clock()
    p = pol.TicketPolicy(routes=POLICY.routes, connectors=POLICY.connectors,
                         keep_done_s=86400, repeat_comment_s=0)
    apply(db, clock, ev("raised", 1), p)
    deliver_all(db, clock)
    apply(db, clock, ev("raised", 2), p)          # a comment, left waiting
    clock.advance(86401)
    tick(db, clock, p)
    assert [i[1:] for i in intents(db)] == [("comment", "pending")]
    assert tickets(db)[0]["external_key"]          # the ticket keeps its ITSM key
