"""The PostgreSQL adapter (psycopg 3): the fleet store for several hub workers at chain scale."""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Sequence

import psycopg

from hub.errors import StoreError
from hub.store.base import Store, Tx

_ROUTER_LOCK = 0x45444745  # pg_advisory_xact_lock key that serializes alert routing


class PostgresStore(Store):
    """The fleet store in a PostgreSQL database (which must exist; tables are created)."""

    dialect = "postgresql"
    least = "LEAST"
    greatest = "GREATEST"

    def __init__(self, url: str, *, create: bool = True):
        self.url = url
        try:
            self.db = psycopg.connect(url, autocommit=True, connect_timeout=5)
        except psycopg.Error as err:
            raise StoreError(f"cannot connect to the hub database: {str(err).strip()}") from err
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Tx]:
        with self._lock:
            try:
                with self.db.transaction(), self.db.cursor() as cur:
                    yield Tx(cur, "%s")
            except psycopg.Error as err:
                raise StoreError(f"hub database: {str(err).strip()}") from err

    def transaction(self):
        return self._tx()

    def read(self):
        return self._tx()

    def insert_new_messages(self, tx: Tx, rows: Sequence[tuple]) -> set[str]:
        if not rows:
            return set()
        cols = list(zip(*rows))
        tx.cursor.execute(
            "INSERT INTO messages (id, store, region, seq, kind, ts, received, envelope)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[],"
            " %s::text[], %s::text[], %s::float8[], %s::text[])"
            " ON CONFLICT (id) DO NOTHING RETURNING id", [list(c) for c in cols])
        return {r[0] for r in tx.cursor.fetchall()}

    def schema_lock(self, tx: Tx) -> None:
        # Two workers starting together would race on CREATE TABLE IF NOT EXISTS.
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_ROUTER_LOCK + 1,))

    def has_table(self, tx: Tx, name: str) -> bool:
        tx.execute("SELECT to_regclass(?) IS NOT NULL", (name,))
        return bool(tx.fetchone()[0])

    def lock_router(self, tx: Tx) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_ROUTER_LOCK,))

    def close(self) -> None:
        with self._lock:
            self.db.close()
