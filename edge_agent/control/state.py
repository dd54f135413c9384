"""What the control plane keeps in the state database (schema version 3).

Every function here runs on the agent's database thread with the agent's connection. The
sequence high-water mark and the command id are checked and recorded in one transaction
(`consume`), committed before the action runs: a crash during an action never lets the same
command, or an older one, run again.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

HIGH_SEQ = "control.high_seq"
FLAGS = "control.flags"
BUNDLES = "control.bundles"
SEEN_MAX = 10000      # ids kept until their command expires; beyond this the oldest go first
LOG_MAX = 200         # rows of the command log kept
DETAIL_MAX = 300


def _get(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def _put(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT INTO meta (key, value) VALUES (?, ?)"
               " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


def high_seq(db: sqlite3.Connection) -> int:
    value = _get(db, HIGH_SEQ)
    return int(value) if value and value.isdigit() else 0


def consume(db: sqlite3.Connection, cmd_id: str, seq: int, expires: float,
            now: float) -> str | None:
    """Record a command as taken, or say why not: 'replayed_id' or 'replayed_seq'."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("SELECT 1 FROM control_seen WHERE id = ?", (cmd_id,)).fetchone():
            db.execute("ROLLBACK")
            return "replayed_id"
        if seq <= high_seq(db):
            db.execute("ROLLBACK")
            return "replayed_seq"
        db.execute("DELETE FROM control_seen WHERE expires < ?", (now,))
        db.execute("INSERT INTO control_seen (id, seq, expires) VALUES (?, ?, ?)",
                   (cmd_id, seq, expires))
        db.execute("DELETE FROM control_seen WHERE id IN (SELECT id FROM control_seen"
                   " ORDER BY seq DESC LIMIT -1 OFFSET ?)", (SEEN_MAX,))
        _put(db, HIGH_SEQ, str(seq))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return None


def count_reject(db: sqlite3.Connection, reason: str, detail: str, now: float) -> int:
    """Count one refusal; return the count for this reason."""
    db.execute("INSERT INTO control_rejects (reason, count, last_at, last_detail)"
               " VALUES (?, 1, ?, ?) ON CONFLICT(reason) DO UPDATE SET count = count + 1,"
               " last_at = excluded.last_at, last_detail = excluded.last_detail",
               (reason, now, detail[:DETAIL_MAX]))
    return db.execute("SELECT count FROM control_rejects WHERE reason = ?",
                      (reason,)).fetchone()[0]


def rejects(db: sqlite3.Connection) -> dict[str, int]:
    return {r: c for r, c in db.execute("SELECT reason, count FROM control_rejects"
                                        " ORDER BY reason")}


def log_row(db: sqlite3.Connection, *, command: str | None, seq: int | None,
            action: str | None, device: str | None, status: str, reason: str | None,
            detail: str, now: float | None = None) -> None:
    """Append to the command log (call inside a transaction or alone)."""
    db.execute("INSERT INTO control_log (at, command, seq, action, device, status, reason,"
               " detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (now or time.time(), command, seq, action, device, status, reason,
                detail[:DETAIL_MAX]))
    db.execute("DELETE FROM control_log WHERE n <= (SELECT MAX(n) FROM control_log) - ?",
               (LOG_MAX,))


def recent(db: sqlite3.Connection, limit: int = 10) -> list[dict[str, Any]]:
    rows = db.execute("SELECT at, command, seq, action, device, status, reason, detail"
                      " FROM control_log ORDER BY n DESC LIMIT ?", (limit,)).fetchall()
    keys = ("at", "command", "seq", "action", "device", "status", "reason", "detail")
    return [dict(zip(keys, r)) for r in rows]


def load_flags(db: sqlite3.Connection) -> dict[str, Any] | None:
    """The flags document last applied: {"version", "flags", "issued", "kid", "applied"}."""
    value = _get(db, FLAGS)
    if not value:
        return None
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def save_flags(db: sqlite3.Connection, doc: dict[str, Any]) -> None:
    _put(db, FLAGS, json.dumps(doc, separators=(",", ":"), sort_keys=True))


def load_bundles(db: sqlite3.Connection) -> dict[str, Any]:
    """Applied bundles by kind (version, sha256, path, last good) and the desired version."""
    value = _get(db, BUNDLES)
    try:
        doc = json.loads(value) if value else {}
    except ValueError:
        doc = {}
    return doc if isinstance(doc, dict) else {}


def save_bundles(db: sqlite3.Connection, doc: dict[str, Any]) -> None:
    _put(db, BUNDLES, json.dumps(doc, sort_keys=True))


def learned_keys(db: sqlite3.Connection) -> dict[str, str]:
    return {k: p for k, p in db.execute("SELECT kid, public FROM control_keys")}


def learn_keys(db: sqlite3.Connection, keys: dict[str, str], now: float) -> None:
    db.executemany("INSERT OR IGNORE INTO control_keys (kid, public, learned) VALUES (?, ?, ?)",
                   [(k, p, now) for k, p in keys.items()])


def status(db: sqlite3.Connection) -> dict[str, Any] | None:
    """The control part of `edge-agent status` (None before schema 3 or any control)."""
    try:
        bundles = load_bundles(db)
        doc = {"high_seq": high_seq(db), "rejects": rejects(db), "flags": load_flags(db),
               "recent": recent(db, 5),
               "bundles": {k: bundles.get(k) for k in ("model", "config")},
               "desired_version": bundles.get("desired_version")}
    except sqlite3.OperationalError:
        return None
    return doc
