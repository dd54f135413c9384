"""The PostgreSQL adapter (psycopg 3): the fleet store for several hub workers at chain scale."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Iterator, Sequence

import psycopg

from hub.errors import StoreError
from hub.store.base import DatabaseUnavailable, Store, Tx

log = logging.getLogger("hub.store")

RECONNECT_EVERY_S = 0.5  # at most one connection attempt this often while the server is away
_ROUTER_LOCK = 0x45444745  # pg_advisory_xact_lock key that serializes alert routing


class PostgresStore(Store):
    """The fleet store in a PostgreSQL database (which must exist; tables are created).

    One connection, shared by the worker's threads under a lock. When the server restarts or
    the network drops it, the connection breaks: the transaction that finds out raises
    DatabaseUnavailable (no message is to blame), and the next one connects again, at most
    once every RECONNECT_EVERY_S, so a server that is back is used again without a restart
    of the hub. A transaction whose BEGIN finds the connection broken (the server restarted
    while this worker was idle) reconnects and begins again at once.
    """

    dialect = "postgresql"
    least = "LEAST"
    greatest = "GREATEST"

    def __init__(self, url: str, *, create: bool = True):
        self.url = url
        self.reconnects = 0  # connections made again after one broke
        self._next_attempt = 0.0
        self._lock = threading.RLock()
        self.db = self._connect()

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        except psycopg.Error as err:
            raise DatabaseUnavailable(
                f"cannot connect to the hub database: {_one_line(err)}") from err

    def _reconnect(self) -> None:
        """Replace a broken connection (raise DatabaseUnavailable if the server is away)."""
        now = time.monotonic()
        if now < self._next_attempt:
            raise DatabaseUnavailable("the hub database connection is lost; reconnecting")
        with contextlib.suppress(Exception):
            self.db.close()
        self._next_attempt = now + RECONNECT_EVERY_S
        self.db = self._connect()
        self.reconnects += 1
        log.warning("reconnected to the hub database", extra={"reconnects": self.reconnects})

    def _broken(self) -> bool:
        return self.db.closed or self.db.broken

    def _begin(self) -> tuple[contextlib.ExitStack, psycopg.Cursor]:
        for attempt in (1, 2):
            if self._broken():
                self._reconnect()
            stack = contextlib.ExitStack()
            try:
                stack.enter_context(self.db.transaction())
                return stack, stack.enter_context(self.db.cursor())
            except psycopg.Error as err:
                with contextlib.suppress(Exception):
                    stack.close()
                if not self._broken():
                    raise StoreError(f"hub database: {_one_line(err)}") from err
                if attempt == 2:
                    raise DatabaseUnavailable(
                        f"the hub database connection is lost: {_one_line(err)}") from err
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Tx]:
        with self._lock:
            stack, cur = self._begin()
            try:
                with stack:
                    yield Tx(cur, "%s")
            except psycopg.Error as err:
                if self._broken():
                    # The outcome of a COMMIT cut off is unknown; the caller retries, and the
                    # messages table drops what did commit by id.
                    raise DatabaseUnavailable(
                        f"the hub database connection is lost: {_one_line(err)}") from err
                raise StoreError(f"hub database: {_one_line(err)}") from err

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


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]
