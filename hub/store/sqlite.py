"""The SQLite adapter: one file in WAL mode, synchronous FULL, batched transactions."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

from hub.errors import NoDatabase, StoreError
from hub.store.base import Store, Tx

_OPEN_PATIENCE_S = 30.0  # how long a starting worker waits for another to finish setting up


class SqliteStore(Store):
    """The fleet store in one SQLite file; safe to share between threads and hub processes."""

    def __init__(self, path: str, *, create: bool = True):
        self.path = Path(path).expanduser()
        self.url = str(self.path)
        if not create and not self.path.exists():
            raise NoDatabase(f"no hub database at {self.path} (start `edge-hub serve` first, "
                             "or pass --db / set EDGE_HUB_DB)")
        self._lock = threading.RLock()
        # Workers started together on a new file race to switch it to WAL, and SQLite answers
        # the loser "database is locked" at once, without waiting its busy timeout: retry.
        deadline = time.monotonic() + _OPEN_PATIENCE_S
        while True:
            try:
                self._open(create)
                break
            except StoreError as err:
                with contextlib.suppress(Exception):
                    self.db.close()
                if "locked" not in str(err) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def _open(self, create: bool) -> None:
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), isolation_level=None,
                                      check_same_thread=False, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            # FULL: the hub acknowledges a message to the broker only after its commit, so the
            # commit must survive a power cut. Batched, it costs little (one fsync a batch).
            self.db.execute("PRAGMA synchronous=FULL")
        except (sqlite3.Error, OSError) as err:
            raise StoreError(f"cannot open the hub database {self.path}: {err}") from err

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._lock:
            cur = self.db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                yield Tx(cur)
                cur.execute("COMMIT")
            except sqlite3.Error as err:
                with contextlib.suppress(sqlite3.Error):
                    cur.execute("ROLLBACK")
                raise StoreError(f"hub database {self.path}: {err}") from err
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        with self._lock:
            cur = self.db.cursor()
            try:
                cur.execute("BEGIN")
                yield Tx(cur)
            except sqlite3.Error as err:
                raise StoreError(f"hub database {self.path}: {err}") from err
            finally:
                with contextlib.suppress(sqlite3.Error):
                    cur.execute("COMMIT")
                cur.close()

    def insert_new_messages(self, tx: Tx, rows: Sequence[tuple]) -> set[str]:
        """Insert the rows whose id is not stored yet; return those ids (rows: unique ids).

        Inside BEGIN IMMEDIATE no other writer runs, and a new row's rowid is above every
        rowid before it: when INSERT OR IGNORE changed fewer rows than it was given (a
        redelivery), the rows above the old maximum are the ones it inserted.
        """
        if not rows:
            return set()
        tx.execute("SELECT COALESCE(MAX(rowid), 0) FROM messages")
        top = tx.fetchone()[0]
        changes = self.db.total_changes
        tx.cursor.executemany("INSERT OR IGNORE INTO messages (id, store, region, seq, kind, ts,"
                              " received, envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        if self.db.total_changes - changes == len(rows):
            return {r[0] for r in rows}
        tx.execute("SELECT id FROM messages WHERE rowid > ?", (top,))
        return {r[0] for r in tx.fetchall()}

    def has_table(self, tx: Tx, name: str) -> bool:
        tx.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return tx.fetchone() is not None

    def close(self) -> None:
        with self._lock:
            self.db.close()
