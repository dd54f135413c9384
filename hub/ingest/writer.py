"""The writer's side of ingest: one batch of decoded messages into the domains, one transaction.

New messages (by id) go to the fleet domain, their alert transitions to the alerts domain
(instances, then feed rows), and the batch's rejects are counted by reason, all in the same
transaction; the consumer acknowledges the batch only after it commits.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from edge_protocol.envelope import Envelope
from hub.bus.consumer import Item
from hub.domains import alerts, fleet
from hub.store import Store, Tx


def apply(db: Store, tx: Tx, envs: Sequence[Envelope], received: float) -> list[Envelope]:
    """Apply new envelopes to every domain; return the alert transitions (seq order)."""
    transitions = fleet.apply(db, tx, envs, received)
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
    rejected: Counter = field(default_factory=Counter)
    last: dict = field(default_factory=dict)  # reason -> the last Item rejected for it


def commit_batch(db: Store, batch: list[Item]) -> Committed:
    """Store one batch in one transaction (raise StoreError if it cannot commit)."""
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
    # Each message keeps its own arrival time: ordering by it shows the arrival order.
    arrived = {item.env.id: item.received for item in reversed(batch) if item.env}
    rows = [(e.id, e.store, e.region, e.seq, e.kind, e.ts, arrived[e.id],
             raw[e.id].decode()) for e in valid.values()]
    last = done.last
    with db.transaction() as tx:
        new_ids = db.insert_new_messages(tx, rows)
        new = [e for e in valid.values() if e.id in new_ids]
        transitions = apply(db, tx, new, received)
        done.routed = alerts.record(tx, transitions, received) if transitions else 0
        tx.executemany(
            "INSERT INTO rejects (reason, count, last_topic, last_detail, last_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (reason) DO UPDATE SET"
            " count = rejects.count + excluded.count, last_topic = excluded.last_topic,"
            " last_detail = excluded.last_detail, last_at = excluded.last_at",
            [(code, n, _clean(last[code].topic[:200]), _clean(last[code].error.detail[:200]),
              last[code].received) for code, n in done.rejected.items()])
    done.stored = len(new)
    done.duplicates = len(valid) - len(new) + sum(1 for i in batch if i.env is not None) \
        - len(valid)
    done.readings = sum(len(e.body["readings"]) for e in new if e.kind == "telemetry")
    return done


def _clean(text: str) -> str:
    """A reject's topic or detail quotes hostile input: no NUL (PostgreSQL refuses it) and no
    lone surrogate (not UTF-8); other characters are escaped where they are shown."""
    return text.replace("\0", "\\0").encode("utf-8", "backslashreplace").decode("utf-8")
