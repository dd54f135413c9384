"""Open the agent's state database: WAL, fsync on commit, and versioned forward migrations.

The schema version lives in `PRAGMA user_version`. Each entry of MIGRATIONS takes the database
from version i to i+1 inside one transaction, so an upgrade never starts empty and a crash during
a migration leaves the previous version intact.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Callable

from edge_agent.errors import StateError

log = logging.getLogger(__name__)

DB_NAME = "agent.db"
FAULT_NAME = "agent.fault"


def identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """Return (device, inode) of a file, or None when it does not exist (any more)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def write_fault(state_dir: str | os.PathLike[str], reason: str) -> None:
    """Leave why the agent stopped itself where `status` finds it (one JSON object)."""
    import json
    import time

    path = Path(state_dir) / FAULT_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"ts": time.time(), "reason": reason}))
    os.replace(tmp, path)


def read_fault(state_dir: str | os.PathLike[str]) -> dict | None:
    """Return the fault the agent left ({"ts", "reason"}), or None."""
    import json

    try:
        data = json.loads((Path(state_dir) / FAULT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("reason"), str) \
            or not isinstance(data.get("ts"), (int, float)) or isinstance(data.get("ts"), bool):
        return None
    return {"ts": float(data["ts"]), "reason": data["reason"][:500]}


def take_fault(state_dir: str | os.PathLike[str]) -> str | None:
    """At start: return the previous run's fault reason, if any, and remove the file."""
    fault = read_fault(state_dir)
    try:
        (Path(state_dir) / FAULT_NAME).unlink()
    except OSError:
        pass
    return fault["reason"] if fault else None


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run statements one by one (executescript would commit the migration's transaction)."""
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _v1(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            prio INTEGER NOT NULL,
            created REAL NOT NULL,
            size INTEGER NOT NULL,
            payload BLOB NOT NULL
        );
        CREATE INDEX outbox_by_prio ON outbox (prio, seq);
        CREATE TABLE drops (
            kind TEXT PRIMARY KEY,
            count INTEGER NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE device_state (
            device TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            reading TEXT NOT NULL,
            last_good TEXT,
            failures INTEGER NOT NULL DEFAULT 0,
            timeouts INTEGER NOT NULL DEFAULT 0,
            updated REAL NOT NULL
        );
        INSERT INTO meta (key, value) VALUES ('last_seq', '0');
        """
    )


def _v2(db: sqlite3.Connection) -> None:
    # Health scoring: each device's feature windows (JSON, bounded) and its current decision
    # and raised alerts, so a restart neither loses a week of windows nor re-raises alerts.
    _script(
        db,
        """
        CREATE TABLE feature_windows (
            device TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            windows TEXT NOT NULL,
            updated REAL NOT NULL
        );
        CREATE TABLE health (
            device TEXT PRIMARY KEY,
            decision TEXT NOT NULL,
            score REAL,
            alerts TEXT NOT NULL DEFAULT '{}',
            body TEXT NOT NULL,
            updated REAL NOT NULL
        );
        """
    )


def _v3(db: sqlite3.Connection) -> None:
    # Signed commands and flags (edge_agent/control): the command ids seen until they expire,
    # refusals counted by reason, a bounded log of commands, hub keys learned through a signed
    # rotation. The seq high-water mark and the flags document live in meta.
    _script(
        db,
        """
        CREATE TABLE control_seen (
            id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            expires REAL NOT NULL
        );
        CREATE INDEX control_seen_expires ON control_seen (expires);
        CREATE TABLE control_rejects (
            reason TEXT PRIMARY KEY,
            count INTEGER NOT NULL DEFAULT 0,
            last_at REAL,
            last_detail TEXT
        );
        CREATE TABLE control_log (
            n INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            command TEXT,
            seq INTEGER,
            action TEXT,
            device TEXT,
            status TEXT NOT NULL,
            reason TEXT,
            detail TEXT
        );
        CREATE TABLE control_keys (
            kid TEXT PRIMARY KEY,
            public TEXT NOT NULL,
            learned REAL NOT NULL
        );
        """
    )


# MIGRATIONS[i] takes the schema from version i to i + 1. Append; never edit a released step.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: str | os.PathLike[str], *, readonly: bool = False,
            migrate: bool = True) -> sqlite3.Connection:
    """Open (and create, and migrate) the state database at `path`."""
    path = Path(path)
    try:
        if readonly:
            if not path.exists():
                raise StateError(f"no state database at {path} (has the agent run yet?)")
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0,
                                 check_same_thread=False, isolation_level=None)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=10.0, check_same_thread=False,
                                 isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when it returns, so a power cut loses nothing committed.
            # Batched commits make it as fast as NORMAL (PROTOCOLS.md, section 7).
            db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(f"{path} has schema version {version}, newer than this agent's "
                             f"{SCHEMA_VERSION}: downgrade is not supported")
        if version < SCHEMA_VERSION and not readonly and migrate:
            _migrate(db, version, path)
        elif version < SCHEMA_VERSION and readonly:
            raise StateError(f"{path} has schema version {version}; run the agent once to "
                             f"migrate it to {SCHEMA_VERSION}")
        return db
    except sqlite3.DatabaseError as err:
        raise StateError(f"cannot open state database {path}: {err}") from err


def _migrate(db: sqlite3.Connection, version: int, path: Path) -> None:
    for target in range(version + 1, SCHEMA_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[target - 1](db)
            db.execute(f"PRAGMA user_version={target}")
            db.execute("COMMIT")
        except BaseException as err:
            db.execute("ROLLBACK")
            if not isinstance(err, Exception):
                raise
            raise StateError(f"cannot migrate {path} to schema version {target}: "
                             f"{type(err).__name__}: {err}; it stays at version {target - 1}, "
                             f"unchanged") from err
        log.info("state database migrated", extra={"path": str(path), "version": target})
