"""The storage interface both adapters implement.

The tables belong to the domains (hub/domains/*/schema.py) and are created and upgraded by
hub/store/migrate.py; this layer knows transactions and dialects, not tables.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator, Sequence

from hub.errors import StoreError


class DatabaseUnavailable(StoreError):
    """The database server is away (connection refused or lost): no statement and no message
    is to blame, and a later transaction may work again (the adapter reconnects)."""


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

    dialect = "sqlite"  # or "postgresql": picks a migration statement's dialect form

    def schema_lock(self, tx: Tx) -> None:
        """Serialize schema migrations between hub workers inside this transaction."""

    def has_table(self, tx: Tx, name: str) -> bool:
        raise NotImplementedError
