"""The outbox: everything the agent publishes is first committed here, then sent in priority order.

Rows are envelopes of DESIGN.md, already serialized. Each gets a uuid7 `id` and a per-store `seq`
that is committed in the same transaction as the row, so a seq is never reused, even across a
crash. The sync client takes rows with `begin_batch()` and removes them with `ack()` only after
the broker acknowledged them. Budgets by bytes and by age drop telemetry first and alerts and
decisions last; every drop is counted by kind.

An Outbox is not thread-safe: the agent uses it from one database thread.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from edge_agent.reading import format_ts, utcnow
from edge_protocol.envelope import VERSION, uuid7

# Priority classes: lower is sent first and dropped last. Alerts and decisions share a class so
# that they leave in seq order.
CLASSES = {"critical": 0, "event": 1, "telemetry": 2}
KIND_CLASS = {"alert": "critical", "decision": "critical", "event": "event",
              "telemetry": "telemetry"}
CLASS_NAMES = {v: k for k, v in CLASSES.items()}
ENVELOPE_VERSION = VERSION  # the envelope is edge_protocol's


@dataclass(frozen=True)
class Row:
    """One committed envelope waiting to be published."""

    seq: int
    id: str
    kind: str
    prio: int
    created: float
    payload: bytes


@dataclass(frozen=True)
class Budget:
    """How much the outbox may hold before it drops rows (telemetry first)."""

    max_bytes: int = 64 * 1024 * 1024
    max_age_s: float = 7 * 86400.0


class Outbox:
    """The SQLite outbox on an open state-database connection."""

    def __init__(self, db: sqlite3.Connection, store: str, region: str,
                 budget: Budget = Budget()):
        self.db = db
        self.store = store
        self.region = region
        self.budget = budget
        self._last_seq = int(self._meta("last_seq", "0"))
        self._bytes = self.db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0]

    def _meta(self, key: str, default: str) -> str:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    @property
    def last_seq(self) -> int:
        """The last seq committed."""
        return self._last_seq

    def enqueue(self, kind: str, body: Mapping[str, Any]) -> Row:
        """Commit one envelope and return its row."""
        return self.enqueue_many([(kind, body)])[0]

    def enqueue_many(self, items: Iterable[tuple[str, Mapping[str, Any]]],
                     also: Callable[[sqlite3.Connection], None] | None = None) -> list[Row]:
        """Commit several envelopes in one transaction (one fsync) and return their rows.

        `also` runs more statements inside the same transaction (device state, feature windows),
        so what the envelopes say and what the agent remembers are committed together.
        """
        rows: list[Row] = []
        seq = self._last_seq
        now = time.time()
        ts = format_ts(utcnow())
        for kind, body in items:
            seq += 1
            env_id = uuid7()
            envelope = {"v": ENVELOPE_VERSION, "id": env_id, "seq": seq, "store": self.store,
                        "region": self.region, "ts": ts, "kind": kind, "body": body}
            payload = json.dumps(envelope, separators=(",", ":"), allow_nan=False).encode()
            prio = CLASSES[KIND_CLASS.get(kind, "event")]
            rows.append(Row(seq, env_id, kind, prio, now, payload))
        if not rows and also is None:
            return rows
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if also is not None:
                also(self.db)
            self.db.executemany(
                "INSERT INTO outbox (seq, id, kind, prio, created, size, payload)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.seq, r.id, r.kind, r.prio, r.created, len(r.payload), r.payload)
                 for r in rows])
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (str(seq),))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self._last_seq = seq
        self._bytes += sum(len(r.payload) for r in rows)
        if self._bytes > self.budget.max_bytes:
            self.enforce_budget()
        return rows

    def begin_batch(self, limit: int = 100, exclude: Iterable[int] = (),
                    max_bytes: int | None = None) -> list[Row]:
        """Return up to `limit` rows to send, highest priority first, oldest first within a class.

        `exclude` holds the seqs already in flight. The rows stay in the outbox until ack().
        """
        exclude = set(exclude)
        out: list[Row] = []
        size = 0
        cur = self.db.execute(
            "SELECT seq, id, kind, prio, created, payload FROM outbox ORDER BY prio, seq")
        for seq, env_id, kind, prio, created, payload in cur:
            if seq in exclude:
                continue
            if max_bytes is not None and out and size + len(payload) > max_bytes:
                break
            out.append(Row(seq, env_id, kind, prio, created, bytes(payload)))
            size += len(payload)
            if len(out) >= limit:
                break
        cur.close()
        return out

    def rows_after(self, after: Mapping[int, int], limit: int = 100) -> list[Row]:
        """Return up to `limit` rows to send, by priority, skipping each class's seqs up to after[prio].

        The sync client keeps, per class, the highest seq it has in flight, so it never reads
        those rows again; a new alert (a higher seq in a higher class) still comes out first.
        """
        out: list[Row] = []
        for prio in sorted(CLASS_NAMES):
            if len(out) >= limit:
                break
            cur = self.db.execute(
                "SELECT seq, id, kind, prio, created, payload FROM outbox"
                " WHERE prio = ? AND seq > ? ORDER BY seq LIMIT ?",
                (prio, after.get(prio, 0), limit - len(out)))
            out.extend(Row(seq, env_id, kind, p, created, bytes(payload))
                       for seq, env_id, kind, p, created, payload in cur)
        return out

    def ack(self, seqs: Iterable[int]) -> int:
        """Remove rows the broker acknowledged; return how many were removed."""
        seqs = list(seqs)
        if not seqs:
            return 0
        self.db.execute("BEGIN IMMEDIATE")
        try:
            freed = removed = 0
            for i in range(0, len(seqs), 500):
                chunk = seqs[i:i + 500]
                marks = ",".join("?" * len(chunk))
                freed += self.db.execute(
                    f"SELECT COALESCE(SUM(size), 0) FROM outbox WHERE seq IN ({marks})",
                    chunk).fetchone()[0]
                # Count every chunk: SELECT changes() would tell only the last one.
                removed += self.db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})",
                                           chunk).rowcount
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self._bytes -= freed
        return removed

    def drop(self, rows: Iterable[Row]) -> int:
        """Remove rows that can never be sent (too large for the wire) and count them as drops."""
        rows = list(rows)
        if not rows:
            return 0
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                self.db.execute("DELETE FROM outbox WHERE seq = ?", (row.seq,))
                self.db.execute(
                    "INSERT INTO drops (kind, count, bytes) VALUES (?, 1, ?) ON CONFLICT(kind)"
                    " DO UPDATE SET count = count + 1, bytes = bytes + excluded.bytes",
                    (row.kind, len(row.payload)))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self._bytes = self.db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0]
        return len(rows)

    def enforce_budget(self, now: float | None = None) -> dict[str, int]:
        """Drop what is over budget, telemetry first, and count every drop; return drops by kind."""
        now = time.time() if now is None else now
        dropped: dict[str, list[int]] = {}
        self.db.execute("BEGIN IMMEDIATE")
        try:
            # Telemetry past its age.
            cutoff = now - self.budget.max_age_s
            old = self.db.execute(
                "SELECT seq, kind, size FROM outbox WHERE prio = ? AND created < ?",
                (CLASSES["telemetry"], cutoff)).fetchall()
            victims = list(old)
            total = self.db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0]
            total -= sum(r[2] for r in victims)
            if total > self.budget.max_bytes:
                taken = {r[0] for r in victims}
                # Oldest first within the lowest class, then the next class up.
                cur = self.db.execute("SELECT seq, kind, size FROM outbox ORDER BY prio DESC, seq")
                for seq, kind, size in cur:
                    if total <= self.budget.max_bytes:
                        break
                    if seq in taken:
                        continue
                    victims.append((seq, kind, size))
                    total -= size
                cur.close()
            for seq, kind, size in victims:
                d = dropped.setdefault(kind, [0, 0])
                d[0] += 1
                d[1] += size
            for i in range(0, len(victims), 500):
                chunk = [v[0] for v in victims[i:i + 500]]
                self.db.execute(
                    f"DELETE FROM outbox WHERE seq IN ({','.join('?' * len(chunk))})", chunk)
            for kind, (count, size) in dropped.items():
                self.db.execute(
                    "INSERT INTO drops (kind, count, bytes) VALUES (?, ?, ?) ON CONFLICT(kind)"
                    " DO UPDATE SET count = count + excluded.count, bytes = bytes + excluded.bytes",
                    (kind, count, size))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self._bytes = self.db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0]
        return {k: v[0] for k, v in dropped.items()}

    def stats(self, now: float | None = None) -> dict[str, Any]:
        """Return depth and bytes by class, the oldest row's age, drops by kind and the last seq."""
        return outbox_stats(self.db, now)


def outbox_stats(db: sqlite3.Connection, now: float | None = None) -> dict[str, Any]:
    """Read the outbox figures from a (possibly read-only) state-database connection."""
    now = time.time() if now is None else now
    classes = {name: {"rows": 0, "bytes": 0} for name in CLASSES}
    for prio, rows, size in db.execute(
            "SELECT prio, COUNT(*), COALESCE(SUM(size), 0) FROM outbox GROUP BY prio"):
        classes[CLASS_NAMES.get(prio, str(prio))] = {"rows": rows, "bytes": size}
    oldest = db.execute("SELECT MIN(created) FROM outbox").fetchone()[0]
    drops = {kind: {"count": c, "bytes": b}
             for kind, c, b in db.execute("SELECT kind, count, bytes FROM drops ORDER BY kind")}
    last_seq = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
    return {
        "rows": sum(c["rows"] for c in classes.values()),
        "bytes": sum(c["bytes"] for c in classes.values()),
        "oldest_age_s": None if oldest is None else round(max(0.0, now - oldest), 3),
        "classes": classes,
        "drops": drops,
        "last_seq": int(last_seq[0]) if last_seq else 0,
    }
