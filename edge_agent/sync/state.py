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
INSTANCE_KEY = "sync.instance"
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


def instance_id(db: sqlite3.Connection) -> str:
    """This state database's own id, made once (a time-ordered UUID): sessions and seqs count
    within it, so the hub takes a store back at session 1 when its state database is new."""
    from edge_protocol.envelope import uuid7

    value = _get(db, INSTANCE_KEY)
    if value:
        return value
    db.execute("BEGIN IMMEDIATE")
    try:
        value = _get(db, INSTANCE_KEY) or uuid7()
        _put(db, INSTANCE_KEY, value)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return value


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


def status_from_disk(config: Any, running: bool) -> dict[str, Any] | None:
    """The sync part of `edge-agent status`, read from the state database.

    None when sync is disabled and never ran. If the agent is not running, the saved status
    may still say connected (it was killed, or the power went): it is shown as not connected.
    """
    saved = None
    if config.state_path.exists():
        from edge_agent.state import db as statedb

        db = statedb.connect(config.state_path, readonly=True)
        try:
            saved = read_status(db)
        finally:
            db.close()
    if not config.sync.enabled and not saved:
        return None
    out = {"enabled": config.sync.enabled, "broker": f"{config.sync.host}:{config.sync.port}",
           "connected": False, "since": None, "session": None, "hub_online": False,
           "last_ack": None, "last_error": None}
    if saved:
        out.update({k: saved.get(k) for k in ("connected", "since", "session", "hub_online",
                                              "last_ack", "last_error")})
    if not running and out["connected"]:
        out.update(connected=False, hub_online=False, last_error="agent not running")
    return out


def status_line(sync: dict[str, Any]) -> str:
    """One line of text for the sync status."""
    if not sync["enabled"]:
        return "sync: disabled"
    last_ack = sync["last_ack"] or "never"
    if sync["connected"]:
        hub = "hub online" if sync["hub_online"] else "hub offline (outbox held)"
        trouble = f"; last error: {sync['last_error']}" if sync["last_error"] else ""
        return (f"sync: connected to {sync['broker']} since {sync['since']} "
                f"(session {sync['session']}), {hub}, last ack {last_ack}{trouble}")
    since = f" since {sync['since']}" if sync["since"] else ""
    why = f": {sync['last_error']}" if sync["last_error"] else ""
    return f"sync: not connected to {sync['broker']}{since}{why}; last ack {last_ack}"
