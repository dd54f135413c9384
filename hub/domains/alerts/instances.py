"""Alert instances: one row a raise and its clear, written from the stores' alert messages.

`apply()` runs in the ingest transaction, after the fleet domain; an instance is keyed by
`alert_id(store, alert, since)`, and a transition with a lower seq than the stored one
changes nothing (several hub workers share one stream, in any order).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Callable, Sequence

from edge_protocol.envelope import Envelope
from edge_protocol.timestamps import normalize_ts as _norm_ts
from hub.errors import NotFound
from hub.store import Store, Tx


def alert_id(store: str, alert: str, since: str) -> str:
    """Return the short id of one alert instance (a raise and its clear)."""
    return hashlib.sha1(f"{store}\0{alert}\0{since}".encode()).hexdigest()[:12]


def apply(tx: Tx, transitions: Sequence[Envelope]) -> None:
    """Apply alert envelopes (in seq order per store) to the alert instances."""
    for env in transitions:
        _alert(tx, env)


def _alert(tx: Tx, env: Envelope) -> None:
    """Open an alert instance on raise; close the open one on clear (newer seq wins)."""
    b = env.body
    since, ts = _norm_ts(b["since"]), _norm_ts(b["ts"])
    row = (alert_id(env.store, b["alert"], since), env.store, env.region, b["alert"],
           b["device"], b["what"], b["severity"], b["state"], since,
           ts if b["state"] == "raised" else None, ts if b["state"] == "cleared" else None,
           env.seq, json.dumps(b["explanation"]), json.dumps(b.get("decision")))
    if b["state"] == "cleared":
        tx.execute("UPDATE alerts SET state = 'cleared', cleared_ts = ?, seq = ?"
                   " WHERE store = ? AND alert = ? AND state = 'raised' AND seq < ?",
                   (ts, env.seq, env.store, b["alert"], env.seq))
        if tx.rowcount:
            return
    tx.execute(
        "INSERT INTO alerts (id, store, region, alert, device, what, severity, state, since,"
        " raised_ts, cleared_ts, seq, explanation, decision)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
        " state = excluded.state, severity = excluded.severity,"
        " raised_ts = COALESCE(excluded.raised_ts, alerts.raised_ts),"
        " cleared_ts = excluded.cleared_ts, seq = excluded.seq,"
        " explanation = excluded.explanation, decision = excluded.decision"
        " WHERE excluded.seq > alerts.seq", row)



def _select(db: Store, sql: str, filters: dict[str, Any], order: str) -> list[tuple]:
    params: list[Any] = []
    for clause, value in filters.items():
        if value:
            sql += f" AND {clause}"
            if "?" in clause:
                params.append(value)
    with db.read() as tx:
        tx.execute(f"{sql} ORDER BY {order}", params)
        return tx.fetchall()


def alerts(db: Store, *, open_only: bool = False, store: str | None = None) -> list[dict]:
    """Alert instances, newest first."""
    sql = ("SELECT id, store, region, alert, device, what, severity, state, since, raised_ts,"
           " cleared_ts, seq, explanation, acked, acked_by FROM alerts WHERE 1 = 1")
    rows = _select(db, sql, {"state = 'raised'": open_only, "store = ?": store},
                   "since DESC, store, alert")
    keys = ("id", "store", "region", "alert", "device", "what", "severity", "state", "since",
            "raised_ts", "cleared_ts", "seq", "explanation", "acked", "acked_by")
    out = [dict(zip(keys, r)) for r in rows]
    for a in out:
        a["explanation"] = json.loads(a["explanation"]) if a["explanation"] else []
    return out


def ack(db: Store, alert: str, by: str,
        clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Record that someone acknowledged an alert instance; return it."""
    with db.transaction() as tx:
        tx.execute("UPDATE alerts SET acked = ?, acked_by = ? WHERE id = ?",
                   (clock(), by, alert))
        if not tx.rowcount:
            raise NotFound(f"unknown alert id {alert!r} (see `edge-hub alerts`)")
    return next(a for a in alerts(db) if a["id"] == alert)



def open_alerts(db: Store, store: str) -> list[dict]:
    """The alerts still raised at one store (for the fleet's store detail)."""
    return alerts(db, open_only=True, store=store)
