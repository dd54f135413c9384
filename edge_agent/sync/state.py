"""The sync client's state in the state database's meta table: session counter and status.

The session number is incremented and committed before each connection attempt, so the Will
registered with that connection and the birth sent on it carry a number no earlier connection
used, even across crashes. The status (connected, since, last ack, hub online) is written for
`edge-agent status`, which reads it from disk.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

SESSION_KEY = "sync.session"
STATUS_KEY = "sync.status"


def _get(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def _put(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT INTO meta (key, value) VALUES (?, ?)"
               " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


def next_session(db: sqlite3.Connection) -> int:
    """Increment the session counter, commit, and return the new number."""
    db.execute("BEGIN IMMEDIATE")
    try:
        current = _get(db, SESSION_KEY)
        session = (int(current) if current and current.isdigit() else 0) + 1
        _put(db, SESSION_KEY, str(session))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return session


def current_session(db: sqlite3.Connection) -> int:
    """Return the last session number committed (0 if the agent never connected)."""
    value = _get(db, SESSION_KEY)
    return int(value) if value and value.isdigit() else 0


def write_status(db: sqlite3.Connection, status: dict[str, Any]) -> None:
    """Save the sync status (one autocommitted statement)."""
    _put(db, STATUS_KEY, json.dumps(status, separators=(",", ":")))


def read_status(db: sqlite3.Connection) -> dict[str, Any] | None:
    """Return the sync status last saved, or None if sync never ran."""
    value = _get(db, STATUS_KEY)
    if value is None:
        return None
    try:
        status = json.loads(value)
    except ValueError:
        return None
    return status if isinstance(status, dict) else None


def model_version(db: sqlite3.Connection) -> str | None:
    """Return the model version the scorer recorded in meta (`model_version`), if any."""
    return _get(db, "model_version")
