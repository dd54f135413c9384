"""The ticket rules: alert transitions in, one ticket per problem and its intents out.

Every function takes (tx, clock, ...) and does only SQL in the caller's transaction: an alert's
intents commit with the alert or not at all. The rules in words:

- raise, no ticket yet: open one (a `create` intent), if the policy gives the family a ticket;
- raise, ticket open: a repeat; a comment at most once per `repeat_comment_s` (the events in
  between are counted and told in the next comment);
- clear, ticket open: the ticket is `cleared`; a comment (same interval); once the clear has
  held `resolve_after_s` (tick()), a `resolve` intent if `resolve_on_clear`;
- raise, ticket cleared (not yet resolved): back to open, a comment (same interval): a flapping
  device keeps one ticket and a few comments;
- raise, ticket resolved within `reopen_within_s`: a `reopen` intent; later: a new ticket
  (generation + 1) that links the old one;
- raise, ticket the ITSM side closed as won't fix: nothing within `reopen_within_s` (the
  decision is respected), a new linked ticket after it; closed and not reopenable: a new
  linked ticket.
A transition whose seq is not above the last one seen for the problem changes nothing
(redelivery, or another hub worker's older batch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from hub.domains import audit
from hub.domains.access import Actor, system_actor
from hub.domains.tickets.policy import TicketPolicy, correlation, fingerprint
from hub.domains.tickets.text import DeviceFacts, render, scrub
from hub.errors import NotFound

SYSTEM = system_actor()   # the hub acting on its own

Clock = Callable[[], float]

OPEN_STATES = ("open", "cleared")
_TICKET_COLS = ("id", "fingerprint", "generation", "correlation", "store", "region", "device",
                "family", "what", "kind", "priority", "connector", "route", "state",
                "previous_id", "opened", "updated", "cleared_at", "resolved_at", "last_comment",
                "untold", "events", "reopened", "external_key", "external_url",
                "external_state", "external_ref", "last_error")


@dataclass(frozen=True)
class AlertEvent:
    """One alert transition as the rules need it (built by ingest from the alert envelope)."""

    store: str
    region: str
    device: str
    what: str
    state: str                  # raised | cleared
    since: str
    ts: str
    seq: int
    severity: str = "warning"
    explanation: tuple[str, ...] = ()
    decision: Mapping[str, Any] | None = None
    facts: DeviceFacts = field(default_factory=DeviceFacts)


@dataclass
class Outcome:
    """What a transition did: the intents made, and actions the policy wants approved."""

    ticket_id: int | None = None
    intents: list[int] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    effect: str = "none"


def _j(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, default=str)


def _ticket(tx, ticket_id: int) -> dict[str, Any] | None:
    tx.execute(f"SELECT {', '.join(_TICKET_COLS)} FROM tickets WHERE id = ?", (ticket_id,))
    row = tx.fetchone()
    return dict(zip(_TICKET_COLS, row)) if row else None


def _lock_problem(tx, now: float, fp: str, ev: AlertEvent, family: str) -> tuple:
    """Take the problem's row lock (made on first sight); return (current, generations, seq)."""
    tx.execute("INSERT INTO ticket_problems (fingerprint, store, region, device, family, touched)"
               " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO NOTHING",
               (fp, ev.store, ev.region, ev.device, family, now))
    tx.execute("UPDATE ticket_problems SET touched = ? WHERE fingerprint = ?", (now, fp))
    tx.execute("SELECT current_ticket, generations, last_seq FROM ticket_problems"
               " WHERE fingerprint = ?", (fp,))
    return tx.fetchone()


def _intent(tx, now: float, ticket: Mapping[str, Any], action: str, body: dict) -> int:
    status = "pending" if ticket["connector"] else "unrouted"
    tx.execute("INSERT INTO ticket_intents (ticket_id, fingerprint, action, connector, body,"
               " status, created, next_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (ticket["id"], ticket["fingerprint"], action, ticket["connector"], _j(body),
                status, now, now))
    tx.execute("SELECT MAX(id) FROM ticket_intents WHERE ticket_id = ?", (ticket["id"],))
    return int(tx.fetchone()[0])


def _system_detail(ev: AlertEvent) -> dict[str, Any]:
    d = ev.decision or {}
    return {"store": ev.store, "device": ev.device, "alert": ev.what, "state": ev.state,
            "since": ev.since, "seq": ev.seq, "model": d.get("model"), "score": d.get("score"),
            "threshold": d.get("threshold"),
            "explanation": list(d.get("explanation") or ev.explanation)[:10]}


def _open_ticket(tx, now: float, policy: TicketPolicy, ev: AlertEvent, fp: str, family: str,
                 generation: int, previous: dict[str, Any] | None, actor: Actor,
                 out: Outcome) -> dict[str, Any]:
    rule = policy.rule_for(ev.what)
    assert rule is not None
    route = policy.route_for(ev.store, ev.region)
    corr = correlation(fp, generation)
    prev_label = None
    if previous:
        prev_label = previous["external_key"] or previous["correlation"]
    text = render(store=ev.store, region=ev.region, device=ev.device, what=ev.what,
                  severity=ev.severity, since=ev.since, kind=rule.ticket,
                  priority=rule.priority, correlation=corr, facts=ev.facts,
                  decision=ev.decision, explanation=list(ev.explanation),
                  hint=policy.store_hints.get(ev.store), tiers=policy.actions,
                  previous=prev_label)
    route_info = ({"assignment_group": route.assignment_group, "project": route.project,
                   "brand": route.brand} if route else {})
    tx.execute("INSERT INTO tickets (fingerprint, generation, correlation, store, region, device,"
               " family, what, kind, priority, connector, route, state, previous_id, opened,"
               " updated, last_comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?,"
               " ?, ?, ?)",
               (fp, generation, corr, ev.store, ev.region, ev.device, family, ev.what,
                rule.ticket, rule.priority, route.connector if route else None, _j(route_info),
                previous["id"] if previous else None, now, now, now))
    tx.execute("SELECT id FROM tickets WHERE correlation = ?", (corr,))
    tid = int(tx.fetchone()[0])
    tx.execute("UPDATE ticket_problems SET current_ticket = ?, generations = ? WHERE"
               " fingerprint = ?", (tid, generation, fp))
    ticket = _ticket(tx, tid)
    body = {"text": text, "kind": rule.ticket, "priority": rule.priority,
            "tags": list(rule.tags), "route": route_info, "correlation": corr,
            "store": ev.store, "region": ev.region, "device": ev.device, "what": ev.what,
            "severity": ev.severity, "since": ev.since,
            "previous_ticket": previous["id"] if previous else None}
    out.intents.append(_intent(tx, now, ticket, "create", body))
    out.ticket_id = tid
    out.effect = "opened" if previous is None else "opened_new"
    audit.record(tx, lambda: now, actor, "ticket.open", f"ticket:{tid}",
                 {**_system_detail(ev), "correlation": corr, "connector": ticket["connector"],
                  "previous": previous["id"] if previous else None})
    cause = text["cause"]
    if cause["tier"] == "approval":
        out.approvals.append({"action": cause["action"], "ticket": tid, "store": ev.store,
                              "region": ev.region, "device": ev.device,
                              "part": cause["part"], "cause": cause["cause"]})
    return ticket


def _comment(tx, now: float, policy: TicketPolicy, t: dict[str, Any], line: str,
             out: Outcome, *, force: bool = False) -> None:
    """A comment at most once per repeat_comment_s; events in between are counted."""
    due = force or t["last_comment"] is None or now - t["last_comment"] >= policy.repeat_comment_s
    if not due:
        tx.execute("UPDATE tickets SET untold = untold + 1, updated = ? WHERE id = ?",
                   (now, t["id"]))
        return
    if t["untold"]:
        line += f" ({t['untold']} more alert transitions since the last comment)"
    out.intents.append(_intent(tx, now, t, "comment", {"text": scrub(line)[:1000]}))
    tx.execute("UPDATE tickets SET untold = 0, last_comment = ?, updated = ? WHERE id = ?",
               (now, now, t["id"]))


def on_alert(tx, clock: Clock, policy: TicketPolicy, ev: AlertEvent,
             actor: Actor = SYSTEM) -> Outcome:
    """Apply one alert transition to its problem's ticket; return what it did."""
    out = Outcome()
    if not policy.enabled:
        return out
    rule = policy.rule_for(ev.what)
    if rule is None:
        return out
    now = clock()
    fp = fingerprint(ev.store, ev.device, rule.problem)
    current, generations, last_seq = _lock_problem(tx, now, fp, ev, rule.problem)
    if ev.seq <= last_seq:
        out.effect = "stale"
        return out
    tx.execute("UPDATE ticket_problems SET last_seq = ? WHERE fingerprint = ?", (ev.seq, fp))
    t = _ticket(tx, current) if current is not None else None
    if t is not None:
        out.ticket_id = t["id"]
        tx.execute("UPDATE tickets SET events = events + 1 WHERE id = ?", (t["id"],))
    what = ev.what.replace("_", " ")
    if ev.state == "raised":
        if t is None:
            _open_ticket(tx, now, policy, ev, fp, rule.problem, generations + 1, None, actor,
                         out)
        elif t["state"] == "open":
            out.effect = "repeat"
            _comment(tx, now, policy, t, f"{what} raised again at {ev.ts}", out)
        elif t["state"] == "cleared":
            out.effect = "recurred"
            tx.execute("UPDATE tickets SET state = 'open', cleared_at = NULL, updated = ?"
                       " WHERE id = ?", (now, t["id"]))
            _comment(tx, now, policy, t, f"{what} is back at {ev.ts} after clearing", out)
        elif t["state"] == "resolved" and now - (t["resolved_at"] or 0) <= policy.reopen_within_s:
            out.effect = "reopened"
            tx.execute("UPDATE tickets SET state = 'open', cleared_at = NULL, resolved_at = NULL,"
                       " reopened = reopened + 1, last_comment = ?, untold = 0, updated = ?"
                       " WHERE id = ?", (now, now, t["id"]))
            out.intents.append(_intent(tx, now, t, "reopen", {
                "text": scrub(f"{what} came back at {ev.ts}, within the reopen window: "
                              "reopening")}))
            audit.record(tx, clock, actor, "ticket.reopen", f"ticket:{t['id']}",
                         _system_detail(ev))
        elif t["state"] == "wontfix" and now - (t["resolved_at"] or 0) <= policy.reopen_within_s:
            out.effect = "suppressed_wontfix"
            tx.execute("UPDATE tickets SET untold = untold + 1, updated = ? WHERE id = ?",
                       (now, t["id"]))
        else:  # resolved long ago, won't-fix long ago, or closed for good: a new, linked ticket
            _open_ticket(tx, now, policy, ev, fp, rule.problem, generations + 1, t, actor, out)
    else:  # cleared
        if t is not None and t["state"] == "open":
            out.effect = "cleared"
            tx.execute("UPDATE tickets SET state = 'cleared', cleared_at = ?, updated = ?"
                       " WHERE id = ?", (now, now, t["id"]))
            _comment(tx, now, policy, t, f"{what} cleared at {ev.ts}", out)
            audit.record(tx, clock, actor, "ticket.cleared", f"ticket:{t['id']}",
                         _system_detail(ev))
            if policy.resolve_on_clear and policy.resolve_after_s <= 0:
                out.intents.extend(_resolve(tx, now, policy, t["id"], actor))
    return out


def _resolve(tx, now: float, policy: TicketPolicy, tid: int, actor: Actor) -> list[int]:
    tx.execute("UPDATE tickets SET state = 'resolved', resolved_at = ?, updated = ?"
               " WHERE id = ? AND state = 'cleared'", (now, now, tid))
    if not tx.rowcount:
        return []
    t = _ticket(tx, tid)
    assert t is not None
    held = round(now - (t["cleared_at"] or now))
    notes = (f"Resolved by the hub: the alert has been clear for {held} s"
             + (f"; {t['untold']} alert transitions since the last comment" if t["untold"]
                else "") + f"; {t['events']} alert transitions in all.")
    tx.execute("UPDATE tickets SET untold = 0 WHERE id = ?", (tid,))
    audit.record(tx, lambda: now, actor, "ticket.resolve", f"ticket:{tid}",
                 {"store": t["store"], "device": t["device"], "cleared_for_s": held})
    return [_intent(tx, now, t, "resolve", {"text": notes})]


def tick(tx, clock: Clock, policy: TicketPolicy, actor: Actor = SYSTEM,
         limit: int = 500) -> list[int]:
    """Resolve tickets whose clear has held resolve_after_s; return the intents made."""
    if not (policy.enabled and policy.resolve_on_clear):
        return []
    now = clock()
    tx.execute("SELECT id, fingerprint FROM tickets WHERE state = 'cleared' AND cleared_at <= ?"
               " ORDER BY cleared_at LIMIT ?", (now - policy.resolve_after_s, limit))
    made: list[int] = []
    for tid, fp in tx.fetchall():
        tx.execute("UPDATE ticket_problems SET touched = ? WHERE fingerprint = ?", (now, fp))
        made.extend(_resolve(tx, now, policy, tid, actor))
    prune(tx, now - policy.keep_done_s)
    return made


def prune(tx, before: float) -> int:
    """Forget intents delivered or cancelled before `before` (the table stays bounded; the
    ticket keeps its ITSM key and the audit log keeps what happened)."""
    tx.execute("DELETE FROM ticket_intents WHERE status IN ('done', 'cancelled')"
               " AND COALESCE(done_at, created) < ?", (before,))
    return tx.rowcount


def add_note(tx, clock: Clock, ticket_id: int, text: str, actor: Actor) -> int:
    """Add a comment to a ticket now (an approved dispatch, an operator's note)."""
    now = clock()
    t = _ticket(tx, ticket_id)
    if t is None:
        raise NotFound(f"unknown ticket {ticket_id}")
    tx.execute("UPDATE ticket_problems SET touched = ? WHERE fingerprint = ?",
               (now, t["fingerprint"]))
    iid = _intent(tx, now, t, "comment", {"text": scrub(text)[:1000]})
    audit.record(tx, clock, actor, "ticket.note", f"ticket:{ticket_id}", {"text": text[:300]})
    return iid


# What the outside system said ---------------------------------------------------------------

def record_delivered(tx, clock: Clock, intent_id: int, owner: str, result: Mapping[str, Any],
                     policy: TicketPolicy | None = None, actor: Actor = SYSTEM) -> bool:
    """Record a delivered intent and what the outside system told (key, link, its state).

    `result` keys (all optional): key, url, ref, state, and `refused`: "wontfix" (a reopen
    refused because the ITSM side closed it as won't fix) or "closed" (closed for good: a new
    ticket is opened that links it). Return False if this worker no longer held the lease.
    """
    now = clock()
    tx.execute("UPDATE ticket_intents SET status = 'done', done_at = ?, outcome = ?,"
               " lease_owner = NULL, lease_until = NULL, last_error = NULL"
               " WHERE id = ? AND lease_owner = ? AND status = 'sending'",
               (now, _j(dict(result)), intent_id, owner))
    if not tx.rowcount:
        return False
    tx.execute("SELECT ticket_id, action FROM ticket_intents WHERE id = ?", (intent_id,))
    tid, action = tx.fetchone()
    t = _ticket(tx, tid)
    assert t is not None
    tx.execute("UPDATE ticket_problems SET touched = ? WHERE fingerprint = ?",
               (now, t["fingerprint"]))
    sets = {"updated": now, "last_error": None}
    for key, col in (("key", "external_key"), ("url", "external_url"), ("ref", "external_ref"),
                     ("state", "external_state")):
        if result.get(key) is not None:
            sets[col] = str(result[key])[:500]
    refused = result.get("refused")
    if refused == "wontfix":
        sets.update(state="wontfix", resolved_at=now)
    elif refused == "closed":
        sets.update(state="closed", resolved_at=now)
    tx.execute("UPDATE tickets SET " + ", ".join(f"{c} = ?" for c in sets) + " WHERE id = ?",
               (*sets.values(), tid))
    audit.record(tx, clock, actor, f"ticket.delivered.{action}", f"ticket:{tid}",
                 {"intent": intent_id, **{k: result.get(k) for k in ("key", "url", "state",
                                                                     "refused")}})
    if refused:
        # Later intents of this ticket cannot be delivered to a ticket the ITSM side ended.
        tx.execute("UPDATE ticket_intents SET status = 'cancelled', last_error = ?"
                   " WHERE ticket_id = ? AND status IN ('pending', 'failed')",
                   (f"the ticket was {refused} on the ITSM side", tid))
    if refused == "closed" and policy is not None:
        _follow_up(tx, now, policy, t, intent_id, actor)
    return True


def _follow_up(tx, now: float, policy: TicketPolicy, t: dict, intent_id: int,
               actor: Actor) -> None:
    """A reopen refused because the old ticket is closed for good: open a linked new one."""
    tx.execute("SELECT body FROM ticket_intents WHERE ticket_id = ? AND action = 'create'"
               " ORDER BY id LIMIT 1", (t["id"],))
    row = tx.fetchone()
    create = json.loads(row[0]) if row else {}
    tx.execute("SELECT generations FROM ticket_problems WHERE fingerprint = ?",
               (t["fingerprint"],))
    generation = int(tx.fetchone()[0]) + 1
    ev = AlertEvent(t["store"], t["region"], t["device"], t["what"], "raised",
                    create.get("since", ""), create.get("since", ""), 0,
                    create.get("severity", "warning"))
    rule = policy.rule_for(t["what"])
    if rule is None:
        return
    _open_ticket(tx, now, policy, ev, t["fingerprint"], t["family"], generation, t, actor,
                 Outcome())


def record_external_state(tx, clock: Clock, ticket_id: int, state: str,
                          wontfix: bool = False, actor: Actor = SYSTEM) -> None:
    """The ITSM side's state learnt outside a delivery (a look-up); won't fix ends the ticket."""
    now = clock()
    sets = "external_state = ?, updated = ?"
    params: list[Any] = [state[:100], now]
    if wontfix:
        sets += ", state = 'wontfix', resolved_at = ?"
        params.append(now)
    tx.execute(f"UPDATE tickets SET {sets} WHERE id = ?", (*params, ticket_id))
    if wontfix:
        audit.record(tx, clock, actor, "ticket.wontfix", f"ticket:{ticket_id}", {"state": state})


def retry(tx, clock: Clock, ticket_id: int, actor: Actor, source: str | None = None) -> int:
    """Put a ticket's failed intents back in line, due now; return how many. Audited
    (`ticket.retry`, filed under the ticket's store) with the actor and `source`."""
    now = clock()
    t = _ticket(tx, ticket_id)
    if t is None:
        raise NotFound(f"unknown ticket {ticket_id} (see `edge-hub tickets list`)")
    tx.execute("UPDATE ticket_intents SET status = 'pending', next_at = ?, attempts = 0,"
               " created = ? WHERE ticket_id = ? AND status = 'failed'", (now, now, ticket_id))
    n = tx.rowcount
    audit.record(tx, clock, actor, "ticket.retry", f"ticket:{ticket_id}",
                 {"intents": n, "store": t["store"], "region": t["region"]}, source)
    return n


# Views ----------------------------------------------------------------------------------------

def list_tickets(tx, *, open_only: bool = False, store: str | None = None,
                 limit: int = 1000) -> list[dict[str, Any]]:
    sql = f"SELECT {', '.join(_TICKET_COLS)} FROM tickets WHERE 1 = 1"
    params: list[Any] = []
    if open_only:
        sql += " AND state IN ('open', 'cleared')"
    if store:
        sql += " AND store = ?"
        params.append(store)
    tx.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
    rows = [dict(zip(_TICKET_COLS, r)) for r in tx.fetchall()]
    for r in rows:
        tx.execute("SELECT status, COUNT(*) FROM ticket_intents WHERE ticket_id = ?"
                   " GROUP BY status", (r["id"],))
        r["intents"] = dict(tx.fetchall())
        r["route"] = json.loads(r["route"]) if r["route"] else {}
    return rows


_INTENT_COLS = ("id", "action", "connector", "status", "attempts", "created", "next_at",
                "lease_owner", "done_at", "last_error", "outcome")


def show(tx, ticket_id: int) -> dict[str, Any]:
    t = _ticket(tx, ticket_id)
    if t is None:
        raise NotFound(f"unknown ticket {ticket_id} (see `edge-hub tickets list`)")
    t["route"] = json.loads(t["route"]) if t["route"] else {}
    tx.execute(f"SELECT {', '.join(_INTENT_COLS)} FROM ticket_intents WHERE ticket_id = ?"
               " ORDER BY id", (ticket_id,))
    t["intents"] = [dict(zip(_INTENT_COLS, r)) for r in tx.fetchall()]
    for i in t["intents"]:
        i["outcome"] = json.loads(i["outcome"]) if i["outcome"] else None
    return t
