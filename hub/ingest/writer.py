"""The writer's side of ingest: one batch of decoded messages into the domains, one transaction.

New messages (by id) go to the fleet domain, their alert transitions to the alerts domain
(instances, then feed rows), and the batch's rejects are counted by reason, all in the same
transaction; the consumer acknowledges the batch only after it commits.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

from edge_protocol import topics
from edge_protocol.envelope import Envelope
from hub.bus.consumer import Item
from hub.domains import alerts, fleet, quarantine
from hub.errors import StoreError
from hub.store import DatabaseUnavailable, Store, Tx


def apply(db: Store, tx: Tx, envs: Sequence[Envelope], received: float,
          since: float | None = None, refused: list | None = None) -> list[Envelope]:
    """Apply new envelopes to every domain; return the alert transitions (seq order).

    `since`: the batch's first arrival; `refused` collects (envelope, reason, detail) of
    messages a domain refused (an absurd session), for the writer to count.
    """
    transitions = fleet.apply(db, tx, envs, received, since, refused)
    if transitions:
        alerts.apply(tx, transitions)
    return transitions


@dataclass
class Committed:
    """What one batch did: counts for the worker's stats and the rejects to log."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    readings: int = 0
    routed: int = 0
    quarantined: list = field(default_factory=list)  # (Item, reason) split out of the batch
    ticket_intents: int = 0
    rejected: Counter = field(default_factory=Counter)
    last: dict = field(default_factory=dict)  # reason -> the last Item rejected for it

    def merge(self, other: "Committed") -> "Committed":
        for name in ("received", "stored", "duplicates", "readings", "routed", "ticket_intents"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.quarantined += other.quarantined
        self.rejected.update(other.rejected)
        self.last.update(other.last)
        return self


def commit_batch(db: Store, batch: list[Item],
                 on_transitions: Callable[[Tx, list], int] | None = None) -> Committed:
    """Store one batch in one transaction (raise StoreError if it cannot commit).

    `on_transitions(tx, transitions)` (the ticket rules, plugged in by the app) runs in the
    same transaction: a ticket intent commits with the alert that caused it, or not at all."""
    done = Committed(received=len(batch))
    valid: dict[str, Envelope] = {}
    raw: dict[str, bytes] = {}
    for item in batch:
        if item.error is not None:
            done.rejected[item.error.code] += 1
            done.last[item.error.code] = item
        elif item.env is not None:
            valid.setdefault(item.env.id, item.env)
            raw.setdefault(item.env.id, item.raw)
    received = batch[-1].received
    # Each message keeps its own arrival time, its first copy's when both lanes' are here (the
    # priority lane's goes first in a batch, but the bulk lane's may have come earlier).
    arrived: dict[str, float] = {}
    for item in batch:
        if item.env is not None:
            first = arrived.get(item.env.id)
            if first is None or item.received < first:
                arrived[item.env.id] = item.received
    rows = [(e.id, e.store, e.region, e.seq, e.kind, e.ts, arrived[e.id],
             raw[e.id].decode()) for e in valid.values()]
    last = done.last
    with db.transaction() as tx:
        new_ids = db.insert_new_messages(tx, rows)
        new = [e for e in valid.values() if e.id in new_ids]
        refused: list = []
        transitions = apply(db, tx, new, received, min(arrived.values(), default=received),
                            refused)
        # A message a domain refused (an absurd session) is not kept among the messages: it
        # is quarantined, with its reason, in the same transaction. Its id is free again, so
        # the other lane's copy is refused again and only counts another `times` there.
        tx.executemany("DELETE FROM messages WHERE id = ?", [(e.id,) for e, _, _ in refused])
        if refused:
            quarantine.add(tx, time.time, [
                quarantine.Entry(e.id, e.store, e.region, e.kind, e.seq,
                                 topics.topic(e.region, e.store, e.kind), f"{code}: {detail}",
                                 raw[e.id]) for e, code, detail in refused])
        for env, code, detail in refused:
            done.quarantined.append((Item(0, 0, topics.topic(env.region, env.store, env.kind),
                                          env, None, received), f"{code}: {detail}"))
        done.routed = alerts.record(tx, transitions, received) if transitions else 0
        if transitions and on_transitions is not None:
            done.ticket_intents = on_transitions(tx, transitions)
        tx.executemany(
            "INSERT INTO rejects (reason, count, last_topic, last_detail, last_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (reason) DO UPDATE SET"
            " count = rejects.count + excluded.count, last_topic = excluded.last_topic,"
            " last_detail = excluded.last_detail, last_at = excluded.last_at",
            [(code, n, _clean(last[code].topic[:200]), _clean(last[code].error.detail[:200]),
              last[code].received) for code, n in done.rejected.items()])
    done.stored = len(new) - len(refused)
    done.duplicates = len(valid) - len(new) + sum(1 for i in batch if i.env is not None) \
        - len(valid)
    done.readings = sum(len(e.body["readings"]) for e in new if e.kind == "telemetry")
    return done


def _clean(text: str) -> str:
    """A reject's topic or detail quotes hostile input: no NUL (PostgreSQL refuses it) and no
    lone surrogate (not UTF-8); other characters are escaped where they are shown."""
    return text.replace("\0", "\\0").encode("utf-8", "backslashreplace").decode("utf-8")


# A batch that will not commit ----------------------------------------------------------------

def usable(db: Store) -> bool:
    """Can the database take a write transaction at all? (If not, no message is to blame.)"""
    try:
        with db.transaction() as tx:
            tx.execute("SELECT 1")
            tx.fetchone()
        return True
    except StoreError:
        return False


def commit_or_split(db: Store, batch: list[Item], clock=time.time,
                    on_transitions: Callable[[Tx, list], int] | None = None) -> Committed:
    """Commit a batch; if it fails while the database works, split it in halves (recursively)
    to find the message(s) that break it, quarantine those with the database's reason and
    commit the rest. Raise StoreError only when the database itself cannot be written
    (DatabaseUnavailable, a connection refused or lost, at once: it blames no message).

    Each failing message is tried alone twice before it is quarantined, so a transient error
    (a lock timeout, a serialization failure) does not send a good message there.
    """
    try:
        return commit_batch(db, batch, on_transitions)
    except DatabaseUnavailable:
        raise  # the server is away (restarting, say): no message is to blame
    except StoreError as err:
        if not usable(db):
            raise
        return _split(db, batch, err, clock, on_transitions)


def _split(db: Store, batch: list[Item], err: StoreError, clock,
           on_transitions: Callable[[Tx, list], int] | None = None) -> Committed:
    if len(batch) == 1:
        try:
            return commit_batch(db, batch, on_transitions)  # once more alone: transients pass
        except DatabaseUnavailable:
            raise
        except StoreError as again:
            if not usable(db):
                raise
            return _quarantine(db, batch[0], str(again), clock)
    done = Committed()
    mid = len(batch) // 2
    for part in (batch[:mid], batch[mid:]):
        try:
            done.merge(commit_batch(db, part, on_transitions))
        except DatabaseUnavailable:
            raise
        except StoreError as part_err:
            if not usable(db):
                raise
            done.merge(_split(db, part, part_err, clock, on_transitions))
    return done


def _quarantine(db: Store, item: Item, reason: str, clock) -> Committed:
    env = item.env
    entry = quarantine.Entry(
        id=env.id if env else f"topic:{item.topic[:200]}", store=env.store if env else "?",
        region=env.region if env else "?", kind=env.kind if env else "?",
        seq=env.seq if env else 0, topic=item.topic, reason=reason, payload=item.raw)
    with db.transaction() as tx:
        quarantine.add(tx, clock, [entry])
    return Committed(received=1, quarantined=[(item, reason)])
