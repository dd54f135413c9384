"""What the control plane keeps in the state database (schema version 3).

Every function here runs on the agent's database thread with the agent's connection. The
sequence high-water mark and the command id are checked and recorded in one transaction
(`consume`), committed before the action runs: a crash during an action never lets the same
command, or an older one, run again. The same transaction adds an accepted command to
`control.pending` (meta), which its result's transaction removes; the agent acknowledges the
command to the broker only after that commit (docs/commands.md, "Delivery").
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

HIGH_SEQ = "control.high_seq"
FLAGS = "control.flags"
BUNDLES = "control.bundles"
PENDING = "control.pending"  # accepted commands not finished (JSON list, at most 32)
FETCH_TRIES = 8       # times a start asks the broker for one wanted bundle's content itself
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


def replay(db: sqlite3.Connection, cmd_id: str, seq: int) -> str | None:
    """Whether a command was taken before: 'replayed_id', 'replayed_seq' or None (a read)."""
    if db.execute("SELECT 1 FROM control_seen WHERE id = ?", (cmd_id,)).fetchone():
        return "replayed_id"
    if seq <= high_seq(db):
        return "replayed_seq"
    return None


def take(db: sqlite3.Connection, cmd_id: str, seq: int, expires: float, now: float) -> None:
    """Record a command's id and seq as taken (inside the caller's transaction)."""
    db.execute("DELETE FROM control_seen WHERE expires < ?", (now,))
    db.execute("INSERT INTO control_seen (id, seq, expires) VALUES (?, ?, ?)",
               (cmd_id, seq, expires))
    db.execute("DELETE FROM control_seen WHERE id IN (SELECT id FROM control_seen"
               " ORDER BY seq DESC LIMIT -1 OFFSET ?)", (SEEN_MAX,))
    _put(db, HIGH_SEQ, str(seq))


def consume(db: sqlite3.Connection, cmd_id: str, seq: int, expires: float,
            now: float, pending: dict[str, Any] | None = None) -> str | None:
    """Record a command as taken, or say why not: 'replayed_id' or 'replayed_seq'.

    With `pending` (an accepted command, edge_agent.control), it joins the commands waiting
    to run in the same transaction: once this commits, the command is the agent's to run
    (or to report interrupted) even if the process dies before its PUBACK or its action.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        why = replay(db, cmd_id, seq)
        if why:
            db.execute("ROLLBACK")
            return why
        take(db, cmd_id, seq, expires, now)
        if pending is not None:
            _put_pending(db, load_pending(db) + [pending])
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return None


def load_pending(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Accepted commands not finished yet, in the order taken: {"cmd": {...}, "started"}."""
    value = _get(db, PENDING)
    try:
        items = json.loads(value) if value else []
    except ValueError:
        return []
    return [i for i in items if isinstance(i, dict) and isinstance(i.get("cmd"), dict)] \
        if isinstance(items, list) else []


def _put_pending(db: sqlite3.Connection, items: list[dict[str, Any]]) -> None:
    _put(db, PENDING, json.dumps(items, separators=(",", ":"), sort_keys=True))


def start_pending(db: sqlite3.Connection, cmd_id: str) -> None:
    """Mark a pending command as started (committed before its action runs): one that is
    still pending and started at the next start was cut short, and is not run again."""
    db.execute("BEGIN IMMEDIATE")
    try:
        items = load_pending(db)
        for item in items:
            if item["cmd"].get("id") == cmd_id:
                item["started"] = True
        _put_pending(db, items)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def finish_pending(db: sqlite3.Connection, cmd_id: str) -> None:
    """Drop a command from the pending list (inside the transaction of its result)."""
    items = load_pending(db)
    left = [i for i in items if i["cmd"].get("id") != cmd_id]
    if len(left) != len(items):
        _put_pending(db, left)


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
    """Applied bundles by kind (version, sha256, path, last good), the desired version, and
    the bundles wanted and not applied yet (`wanted`, by kind: edge_agent/control/bundles.py).
    """
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
               "pending": [i["cmd"].get("id") for i in load_pending(db)],
               "recent": recent(db, 5),
               "bundles": {k: bundles.get(k) for k in ("model", "config")},
               "desired_version": bundles.get("desired_version"),
               "wanted": wanted_status(bundles.get("wanted"))}
    except sqlite3.OperationalError:
        return None
    return doc


WANTED_KEYS = ("name", "version", "sha256", "desired_version", "since", "staged", "asks",
               "rollback", "urgent")


def wanted_status(wanted: Any) -> dict[str, Any]:
    """What `edge-agent status` shows of the bundles wanted and not applied: by kind, the
    saved fields but the manifest ({} when nothing is waiting)."""
    if not isinstance(wanted, dict):
        return {}
    return {k: {**{f: w.get(f) for f in WANTED_KEYS}, "asks_max": FETCH_TRIES}
            for k, w in sorted(wanted.items()) if k in ("model", "config") and isinstance(w, dict)}
