"""The storage interface both adapters implement, and the schema they share."""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator, Sequence

# One schema for both databases: TEXT, BIGINT, INTEGER and DOUBLE PRECISION mean the same on
# SQLite and PostgreSQL. Timestamps from agents are normalized ISO 8601 text (they sort);
# timestamps the hub makes are epoch seconds.
SCHEMA = (
    # Every message from a store, once: the id is the idempotency key.
    """CREATE TABLE IF NOT EXISTS messages (
        id TEXT PRIMARY KEY, store TEXT NOT NULL, region TEXT NOT NULL, seq BIGINT NOT NULL,
        kind TEXT NOT NULL, ts TEXT NOT NULL, received DOUBLE PRECISION NOT NULL,
        envelope TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS messages_store_seq ON messages (store, seq)",
    # One row a store: sessions seen (birth and death), online or not since when, seq accounting.
    """CREATE TABLE IF NOT EXISTS stores (
        store TEXT PRIMARY KEY, region TEXT NOT NULL,
        birth_session BIGINT NOT NULL DEFAULT -1, death_session BIGINT NOT NULL DEFAULT -1,
        online INTEGER NOT NULL DEFAULT 0, changed DOUBLE PRECISION, last_seen DOUBLE PRECISION,
        agent TEXT, first_seq BIGINT, max_seq BIGINT, received BIGINT NOT NULL DEFAULT 0)""",
    # One row a device: its latest reading and its latest decision.
    """CREATE TABLE IF NOT EXISTS devices (
        store TEXT NOT NULL, device TEXT NOT NULL, kind TEXT, ts TEXT, vals TEXT,
        stale INTEGER, reason TEXT, decision TEXT, score DOUBLE PRECISION,
        threshold DOUBLE PRECISION, model TEXT, decision_ts TEXT, explanation TEXT,
        PRIMARY KEY (store, device))""",
    # One row an alert instance (a raise and its clear); id = hash of store, key and since.
    """CREATE TABLE IF NOT EXISTS alerts (
        id TEXT PRIMARY KEY, store TEXT NOT NULL, region TEXT NOT NULL, alert TEXT NOT NULL,
        device TEXT NOT NULL, what TEXT NOT NULL, severity TEXT NOT NULL, state TEXT NOT NULL,
        since TEXT NOT NULL, raised_ts TEXT, cleared_ts TEXT, seq BIGINT NOT NULL,
        explanation TEXT, decision TEXT, acked DOUBLE PRECISION, acked_by TEXT)""",
    "CREATE INDEX IF NOT EXISTS alerts_store_alert ON alerts (store, alert)",
    # The alert feed's outbox and its dedupe memory: one row a state transition, ever.
    """CREATE TABLE IF NOT EXISTS feed (
        key TEXT PRIMARY KEY, store TEXT NOT NULL, region TEXT NOT NULL, alert TEXT NOT NULL,
        state TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, seq BIGINT NOT NULL,
        status TEXT NOT NULL,
        owner TEXT, claimed DOUBLE PRECISION, sent DOUBLE PRECISION, payload TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS feed_status ON feed (status)",
    "CREATE INDEX IF NOT EXISTS feed_store_alert ON feed (store, alert, at)",
    # Rejected messages, counted by reason.
    """CREATE TABLE IF NOT EXISTS rejects (
        reason TEXT PRIMARY KEY, count BIGINT NOT NULL, last_topic TEXT, last_detail TEXT,
        last_at DOUBLE PRECISION)""",
)


class Tx:
    """One transaction's cursor; SQL uses `?` placeholders on both databases."""

    def __init__(self, cursor: Any, placeholder: str = "?"):
        self.cursor = cursor
        self.placeholder = placeholder

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> "Tx":
        self.cursor.execute(self._sql(sql), tuple(params))
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> "Tx":
        rows = [tuple(r) for r in rows]
        if rows:
            self.cursor.executemany(self._sql(sql), rows)
        return self

    def fetchall(self) -> list[tuple]:
        return list(self.cursor.fetchall())

    def fetchone(self) -> tuple | None:
        return self.cursor.fetchone()

    @property
    def rowcount(self) -> int:
        return self.cursor.rowcount


class Store:
    """A fleet database: transactions, the insert-only-new primitive and dialect names."""

    url: str
    least = "MIN"      # two-argument minimum: MIN on SQLite, LEAST on PostgreSQL
    greatest = "MAX"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """Run statements in one write transaction; commit on success, roll back on error."""
        raise NotImplementedError

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        """Run read-only statements on a consistent snapshot."""
        raise NotImplementedError

    def insert_new_messages(self, tx: Tx, rows: Sequence[tuple]) -> set[str]:
        """Insert message rows (id first) whose id is not stored yet; return the ids inserted."""
        raise NotImplementedError

    def lock_router(self, tx: Tx) -> None:
        """Serialize alert routing between hub workers inside this transaction."""

    def close(self) -> None:
        raise NotImplementedError

    def create_schema(self) -> None:
        with self.transaction() as tx:
            for statement in SCHEMA:
                tx.execute(statement)
