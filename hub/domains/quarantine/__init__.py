"""Quarantine: a message that passed every check of the decoder and still made its batch's
commit fail (a bug, a constraint the checks do not know) is split out of the batch by
hub.ingest and kept here with the database's reason, so the rest of the stream commits.

    add(tx, clock, entries)        in the ingest's transaction; bounded to MAX_ROWS rows
    entries(db) / entry(db, id)    what `edge-hub quarantine list|show` print
    drop(db, id)                   `edge-hub quarantine drop`: remove entries (or all)
"""

from __future__ import annotations

import time

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from hub.domains import audit
from hub.errors import NotFound
from hub.store import Store, Tx

MAX_ROWS = 10_000        # the oldest go first beyond this: a flood cannot fill the disk
MAX_REASON = 500         # characters of the database's error kept


@dataclass(frozen=True)
class Entry:
    """One message to quarantine (from hub.ingest)."""

    id: str
    store: str
    region: str
    kind: str
    seq: int
    topic: str
    reason: str
    payload: bytes


def _text(value: str | bytes, limit: int | None = None) -> str:
    """Text any database holds: valid UTF-8 (bad bytes escaped), no NUL."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    value = value.replace("\0", "\\0").encode("utf-8", "backslashreplace").decode("utf-8")
    return value if limit is None else value[:limit]


def add(tx: Tx, clock: Callable[[], float], entries: Sequence[Entry]) -> int:
    """Keep these messages with their reasons (a message seen again counts `times`)."""
    now = clock()
    tx.executemany(
        "INSERT INTO quarantine (id, store, region, kind, seq, topic, reason, payload, at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
        " times = quarantine.times + 1, at = excluded.at, reason = excluded.reason",
        [(_text(e.id, 64), _text(e.store, 64), _text(e.region, 64), _text(e.kind, 32), e.seq,
          _text(e.topic, 300), _text(e.reason, MAX_REASON), _text(e.payload), now)
         for e in entries])
    tx.execute("SELECT COUNT(*) FROM quarantine")
    over = tx.fetchone()[0] - MAX_ROWS
    if over > 0:
        tx.execute("DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine"
                   " ORDER BY at, id LIMIT ?)", (over,))
    return len(entries)


_COLUMNS = ("id", "store", "region", "kind", "seq", "topic", "reason", "at", "times")


def entries(db: Store, store: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Quarantined messages, newest first (without their payloads)."""
    sql = f"SELECT {', '.join(_COLUMNS)} FROM quarantine"
    params: list[Any] = []
    if store:
        sql += " WHERE store = ?"
        params.append(store)
    with db.read() as tx:
        tx.execute(sql + " ORDER BY at DESC, id LIMIT ?", [*params, limit])
        return [dict(zip(_COLUMNS, r)) for r in tx.fetchall()]


def _resolve(tx: Tx, ident: str) -> str:
    """The one id that `ident` is (or is the unique prefix of)."""
    tx.execute("SELECT id FROM quarantine WHERE id = ?", (ident,))
    if tx.fetchone():
        return ident
    if len(ident) >= 4 and all(c in "0123456789abcdef-" for c in ident):
        tx.execute("SELECT id FROM quarantine WHERE id LIKE ? ORDER BY id LIMIT 2",
                   (ident + "%",))
        found = [r[0] for r in tx.fetchall()]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise NotFound(f"quarantine id {ident!r} is ambiguous: give more characters")
    raise NotFound(f"no quarantined message {ident!r} (see `edge-hub quarantine list`)")


def entry(db: Store, ident: str) -> dict[str, Any]:
    """One quarantined message with its payload (an id or a unique prefix of one)."""
    with db.read() as tx:
        full = _resolve(tx, ident)
        tx.execute(f"SELECT {', '.join(_COLUMNS)}, payload FROM quarantine WHERE id = ?",
                   (full,))
        row = tx.fetchone()
    return dict(zip((*_COLUMNS, "payload"), row))


def drop(db: Store, ident: str | None, clock: Callable[[], float] = time.time,
         actor: Any = None, source: str | None = None) -> list[str]:
    """Remove one quarantined message (an id or unique prefix), or all with None; return the
    ids. Recorded in the audit log as `quarantine.drop` by `actor` in the same transaction."""
    with db.transaction() as tx:
        if ident is None:
            tx.execute("SELECT id FROM quarantine ORDER BY id")
            ids = [r[0] for r in tx.fetchall()]
            tx.execute("DELETE FROM quarantine")
        else:
            ids = [_resolve(tx, ident)]
            tx.execute("DELETE FROM quarantine WHERE id = ?", (ids[0],))
        if actor is not None and ids:
            audit.record(tx, clock, actor, "quarantine.drop",
                         f"quarantine:{ids[0] if ident is not None else '*'}",
                         {"ids": ids[:1000], "count": len(ids)}, source)
    return ids


def count(db: Store) -> int:
    with db.read() as tx:
        tx.execute("SELECT COUNT(*) FROM quarantine")
        return int(tx.fetchone()[0])


__all__ = ["Entry", "MAX_ROWS", "add", "entries", "entry", "drop", "count"]
