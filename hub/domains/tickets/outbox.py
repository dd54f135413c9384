"""The intents as an outbox: claim with a lease, release with a retry time, in order per problem.

A worker claims the oldest due intents whose problem has nothing older undelivered; the claim
is a conditional UPDATE (status and lease checked in its WHERE), so of two workers racing for
one intent exactly one sees rowcount 1, on SQLite and PostgreSQL alike. A worker that dies
holding a lease loses it when `lease_until` passes; the next claim counts the attempt, and the
delivery code then looks the ticket up by its correlation key before creating it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

Clock = Callable[[], float]
BLOCKING = ("pending", "sending", "failed")   # an intent in one of these holds later ones back


@dataclass(frozen=True)
class Claimed:
    """One intent leased to a worker, with what delivery needs of its ticket."""

    id: int
    ticket_id: int
    action: str
    connector: str
    body: dict[str, Any]
    attempts: int               # including this one
    created: float
    correlation: str
    external_ref: str | None
    external_key: str | None
    previous: dict[str, Any] | None   # the linked older ticket's key/link/ref, for a create


def claim(tx, clock: Clock, owner: str, lease_s: float, limit: int,
          connectors: Sequence[str]) -> list[Claimed]:
    """Lease up to `limit` due intents for these connectors, oldest first, in order per problem."""
    if not connectors or limit <= 0:
        return []
    now = clock()
    marks = ", ".join("?" for _ in connectors)
    tx.execute(
        "SELECT i.id FROM ticket_intents i WHERE i.status IN ('pending', 'sending')"
        " AND i.next_at <= ? AND (i.lease_until IS NULL OR i.lease_until < ?)"
        f" AND i.connector IN ({marks})"
        " AND NOT EXISTS (SELECT 1 FROM ticket_intents j WHERE j.fingerprint = i.fingerprint"
        "   AND j.id < i.id AND j.status IN ('pending', 'sending', 'failed'))"
        " ORDER BY i.id LIMIT ?", (now, now, *connectors, limit))
    ids = [r[0] for r in tx.fetchall()]
    out = []
    for iid in ids:
        tx.execute("UPDATE ticket_intents SET status = 'sending', lease_owner = ?,"
                   " lease_until = ?, attempts = attempts + 1 WHERE id = ?"
                   " AND status IN ('pending', 'sending')"
                   " AND (lease_until IS NULL OR lease_until < ?)",
                   (owner, now + lease_s, iid, now))
        if tx.rowcount != 1:
            continue  # another worker got it first
        tx.execute("SELECT i.ticket_id, i.action, i.connector, i.body, i.attempts, i.created,"
                   " t.correlation, t.external_ref, t.external_key, t.previous_id"
                   " FROM ticket_intents i JOIN tickets t ON t.id = i.ticket_id"
                   " WHERE i.id = ?", (iid,))
        tid, action, conn, body, attempts, created, corr, ref, key, prev_id = tx.fetchone()
        previous = None
        if prev_id is not None:
            tx.execute("SELECT external_key, external_url, external_ref, correlation"
                       " FROM tickets WHERE id = ?", (prev_id,))
            p = tx.fetchone()
            if p:
                previous = {"key": p[0], "url": p[1], "ref": p[2], "correlation": p[3]}
        out.append(Claimed(iid, tid, action, conn, json.loads(body), attempts, created, corr,
                           ref, key, previous))
    return out


def release(tx, clock: Clock, intent_id: int, owner: str, error: str,
            retry_at: float | None) -> bool:
    """Give a leased intent back: due again at retry_at, or `failed` (None: needs a person)."""
    now = clock()
    status = "pending" if retry_at is not None else "failed"
    tx.execute("UPDATE ticket_intents SET status = ?, lease_owner = NULL, lease_until = NULL,"
               " next_at = ?, last_error = ? WHERE id = ? AND lease_owner = ?"
               " AND status = 'sending'",
               (status, retry_at if retry_at is not None else now, error[:500], intent_id,
                owner))
    if tx.rowcount != 1:
        return False
    tx.execute("UPDATE tickets SET last_error = ?, updated = ? WHERE id ="
               " (SELECT ticket_id FROM ticket_intents WHERE id = ?)",
               (error[:500], now, intent_id))
    return True


def extend(tx, clock: Clock, intent_id: int, owner: str, lease_s: float) -> bool:
    """Extend a lease still held (a slow delivery that is still making progress)."""
    tx.execute("UPDATE ticket_intents SET lease_until = ? WHERE id = ? AND lease_owner = ?"
               " AND status = 'sending'", (clock() + lease_s, intent_id, owner))
    return tx.rowcount == 1


def counts(tx) -> dict[str, int]:
    tx.execute("SELECT status, COUNT(*) FROM ticket_intents GROUP BY status")
    return {s: int(n) for s, n in tx.fetchall()}


def backlog(tx, clock: Clock) -> dict[str, Any]:
    """Intents waiting, by connector, and the age of the oldest (for stats and the CLI)."""
    tx.execute("SELECT connector, COUNT(*), MIN(created) FROM ticket_intents"
               " WHERE status IN ('pending', 'sending') GROUP BY connector")
    now = clock()
    return {c or "-": {"waiting": int(n), "oldest_s": round(now - m, 1)}
            for c, n, m in tx.fetchall()}
