"""Fleet state: what the stores' messages mean (online, devices, alerts, seq gaps) and its views.

`apply()` turns a batch of new, validated envelopes into fleet rows inside the ingest
transaction; it tolerates any arrival order (several hub workers share one stream), so every
update is guarded: a reading or decision older than the stored one, or an alert transition with
a lower seq than the stored one, changes nothing. The rest of the module reads the fleet for the
CLI.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterable, Sequence

from edge_protocol.envelope import Envelope
from edge_protocol.timestamps import normalize_ts as _norm_ts
from hub.errors import NotFound
from hub.store import Store, Tx

AT_RISK = ("predicted_failure", "failed")
SESSION_KINDS = ("birth", "death")  # session messages, not outbox rows: outside seq accounting


def apply(db: Store, tx: Tx, envs: Sequence[Envelope], received: float) -> list[Envelope]:
    """Apply new envelopes to the fleet tables; return the alert envelopes, in seq order.

    The alert envelopes are the alerts domain's to apply (hub.domains.alerts.apply).
    """
    _account(db, tx, envs, received)
    for env in envs:
        if env.kind == "birth":
            _birth(db, tx, env, received)
        elif env.kind == "death":
            _death(db, tx, env, received)
    _telemetry(tx, [e for e in envs if e.kind == "telemetry"])
    _decisions(tx, [e for e in envs if e.kind == "decision"])
    return sorted((e for e in envs if e.kind == "alert"), key=lambda e: (e.store, e.seq))


def _account(db: Store, tx: Tx, envs: Sequence[Envelope], received: float) -> None:
    """Upsert each store's region, last seen and seq range and count (for gaps)."""
    per: dict[str, list[Any]] = {}
    for env in envs:
        acc = per.setdefault(env.store, [env.region, None, None, 0])
        acc[0] = env.region
        if env.kind in SESSION_KINDS:
            continue
        acc[1] = env.seq if acc[1] is None else min(acc[1], env.seq)
        acc[2] = env.seq if acc[2] is None else max(acc[2], env.seq)
        acc[3] += 1
    lo, hi = db.least, db.greatest
    tx.executemany(
        "INSERT INTO stores (store, region, first_seq, max_seq, received, last_seen)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (store) DO UPDATE SET region = excluded.region,"
        f" first_seq = {lo}(COALESCE(stores.first_seq, excluded.first_seq),"
        "                   COALESCE(excluded.first_seq, stores.first_seq)),"
        f" max_seq = {hi}(COALESCE(stores.max_seq, excluded.max_seq),"
        "                 COALESCE(excluded.max_seq, stores.max_seq)),"
        " received = stores.received + excluded.received,"
        f" last_seen = {hi}(COALESCE(stores.last_seen, 0), excluded.last_seen)",
        [(s, a[0], a[1], a[2], a[3], received) for s, a in sorted(per.items())])


def _birth(db: Store, tx: Tx, env: Envelope, received: float) -> None:
    """A birth brings a store online unless a newer session has been seen (by birth or death)."""
    session = env.body["session"]
    agent = {k: v for k, v in env.body.items() if k != "inventory"}
    newer = "excluded.birth_session >= stores.birth_session AND " \
            "excluded.birth_session >= stores.death_session"
    tx.execute(
        "INSERT INTO stores (store, region, birth_session, online, changed, last_seen, agent)"
        " VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT (store) DO UPDATE SET"
        f" changed = CASE WHEN {newer} AND stores.online = 0 THEN excluded.changed"
        "            ELSE COALESCE(stores.changed, excluded.changed) END,"
        f" online = CASE WHEN {newer} THEN 1 ELSE stores.online END,"
        " agent = CASE WHEN excluded.birth_session >= stores.birth_session THEN excluded.agent"
        "         ELSE stores.agent END,"
        f" birth_session = {db.greatest}(stores.birth_session, excluded.birth_session)",
        (env.store, env.region, session, received, received, json.dumps(agent)))
    tx.executemany(
        "INSERT INTO devices (store, device, kind) VALUES (?, ?, ?)"
        " ON CONFLICT (store, device) DO UPDATE SET kind = excluded.kind",
        [(env.store, item["id"], item["kind"]) for item in env.body["inventory"]])


def _death(db: Store, tx: Tx, env: Envelope, received: float) -> None:
    """A death takes a store offline unless its session is older than the last birth's."""
    current = "excluded.death_session >= stores.birth_session"
    tx.execute(
        "INSERT INTO stores (store, region, death_session, online, changed, last_seen)"
        " VALUES (?, ?, ?, 0, ?, ?) ON CONFLICT (store) DO UPDATE SET"
        f" changed = CASE WHEN {current} AND stores.online = 1 THEN excluded.changed"
        "            ELSE stores.changed END,"
        f" online = CASE WHEN {current} THEN 0 ELSE stores.online END,"
        f" death_session = {db.greatest}(stores.death_session, excluded.death_session)",
        (env.store, env.region, env.body["session"], received, received))


def _telemetry(tx: Tx, envs: Iterable[Envelope]) -> None:
    """Keep each device's newest reading (by its own timestamp)."""
    newest: dict[tuple[str, str], tuple[str, dict]] = {}
    norm: dict[str, str] = {}  # a batch repeats its timestamps: each is checked once
    for env in envs:
        for r in env.body["readings"]:
            ts = norm.get(r["ts"])
            if ts is None:
                ts = norm[r["ts"]] = _norm_ts(r["ts"])
            key = (env.store, r["device"])
            if key not in newest or ts >= newest[key][0]:
                newest[key] = (ts, r)
    latest = [(store, device, r["kind"], ts, json.dumps(r.get("values", {})),
               int(bool(r.get("stale"))), r.get("reason"))
              for (store, device), (ts, r) in newest.items()]
    tx.executemany(
        "INSERT INTO devices (store, device, kind, ts, vals, stale, reason)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store, device) DO UPDATE SET"
        " kind = excluded.kind, ts = excluded.ts, vals = excluded.vals, stale = excluded.stale,"
        " reason = excluded.reason WHERE devices.ts IS NULL OR excluded.ts >= devices.ts",
        latest)


def _decisions(tx: Tx, envs: Iterable[Envelope]) -> None:
    """Keep each device's newest decision (by the decision's timestamp)."""
    latest: dict[tuple[str, str], tuple] = {}
    for env in envs:
        b = env.body
        ts = _norm_ts(b["ts"])
        key = (env.store, b["device"])
        if key not in latest or ts >= latest[key][6]:
            latest[key] = (env.store, b["device"], b["decision"], b.get("score"),
                           b.get("threshold"), b.get("model"), ts, json.dumps(b["explanation"]))
    tx.executemany(
        "INSERT INTO devices (store, device, decision, score, threshold, model, decision_ts,"
        " explanation) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store, device) DO UPDATE SET"
        " decision = excluded.decision, score = excluded.score, threshold = excluded.threshold,"
        " model = excluded.model, decision_ts = excluded.decision_ts,"
        " explanation = excluded.explanation"
        " WHERE devices.decision_ts IS NULL OR excluded.decision_ts >= devices.decision_ts",
        latest.values())


# Views for the CLI ---------------------------------------------------------------------------

def _store_row(r: tuple, now: float) -> dict[str, Any]:
    (store, region, online, changed, last_seen, birth_s, death_s, agent, first, mx, received,
     devices, at_risk, open_alerts) = r
    span = 0 if first is None else mx - first + 1
    # A store heard from only through outbox messages (its birth came before this hub
    # started, and was not retained) has an unknown session state: None, not offline.
    known = birth_s >= 0 or death_s >= 0
    return {"store": store, "region": region, "online": bool(online) if known else None,
            "since": changed, "since_age_s": None if changed is None else round(now - changed, 1),
            "last_seen": last_seen, "session": max(birth_s, death_s),
            "agent": json.loads(agent) if agent else None,
            "seq": {"first": first, "last": mx, "received": received,
                    "missing": max(0, span - received)},
            "devices": devices, "at_risk": at_risk, "open_alerts": open_alerts}


_STORES = (
    "SELECT s.store, s.region, s.online, s.changed, s.last_seen, s.birth_session,"
    " s.death_session, s.agent, s.first_seq, s.max_seq, s.received,"
    " (SELECT COUNT(*) FROM devices d WHERE d.store = s.store),"
    " (SELECT COUNT(*) FROM devices d WHERE d.store = s.store AND (d.decision IN (?, ?)"
    "   OR EXISTS (SELECT 1 FROM alerts a WHERE a.store = d.store AND a.device = d.device"
    "              AND a.state = 'raised'))),"
    " (SELECT COUNT(*) FROM alerts a WHERE a.store = s.store AND a.state = 'raised')"
    " FROM stores s")


def stores(db: Store, region: str | None = None,
           clock: Callable[[], float] = time.time) -> list[dict[str, Any]]:
    """Every store (optionally of one region), by region then store."""
    now = clock()
    where, params = (" WHERE s.region = ?", [region]) if region else ("", [])
    with db.read() as tx:
        tx.execute(_STORES + where + " ORDER BY s.region, s.store", [*AT_RISK, *params])
        return [_store_row(r, now) for r in tx.fetchall()]


def store_detail(db: Store, store: str,
                 open_alerts: Callable[[Store, str], list[dict]] | None = None,
                 clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """One store: its state, devices, open alerts and the seq ranges it has not received.

    `open_alerts(db, store)` comes from the alerts domain (hub.app wires it); without it the
    detail has no "alerts" key.
    """
    now = clock()
    with db.read() as tx:
        tx.execute(_STORES + " WHERE s.store = ?", [*AT_RISK, store])
        row = tx.fetchone()
        if row is None:
            raise NotFound(f"unknown store {store!r}")
        out = _store_row(row, now)
        tx.execute(
            "SELECT prev + 1, seq - 1 FROM (SELECT seq, LAG(seq) OVER (ORDER BY seq) AS prev"
            " FROM messages WHERE store = ? AND kind NOT IN ('birth', 'death')) g"
            " WHERE seq > prev + 1 ORDER BY seq LIMIT 50", (store,))
        out["gaps"] = [[a, b] for a, b in tx.fetchall()]
    out["devices"] = devices(db, store=store)
    if open_alerts is not None:
        out["alerts"] = open_alerts(db, store)
    return out


def _select(db: Store, sql: str, filters: dict[str, Any], order: str) -> list[tuple]:
    """Run `sql` (ending in a WHERE) with each filter whose value is set, in that order."""
    params: list[Any] = []
    for clause, value in filters.items():
        if value:
            sql += f" AND {clause}"
            if "?" in clause:
                params.append(value)
    with db.read() as tx:
        tx.execute(f"{sql} ORDER BY {order}", params)
        return tx.fetchall()


def devices(db: Store, *, at_risk: bool = False, region: str | None = None,
            store: str | None = None) -> list[dict[str, Any]]:
    """Devices with their latest reading and decision, optionally only those at risk."""
    sql = ("SELECT d.store, s.region, d.device, d.kind, d.ts, d.vals, d.stale, d.reason,"
           " d.decision, d.score, d.threshold, d.model, d.decision_ts, d.explanation,"
           " (SELECT COUNT(*) FROM alerts a WHERE a.store = d.store AND a.device = d.device"
           "  AND a.state = 'raised')"
           " FROM devices d JOIN stores s ON s.store = d.store WHERE 1 = 1")
    rows = _select(db, sql, {"s.region = ?": region, "d.store = ?": store},
                   "s.region, d.store, d.device")
    out = []
    for (st, rg, dev, kind, ts, vals, stale, reason, decision, score, threshold, model, dts,
         expl, open_alerts) in rows:
        risky = decision in AT_RISK or open_alerts > 0
        if at_risk and not risky:
            continue
        out.append({"store": st, "region": rg, "device": dev, "kind": kind, "ts": ts,
                    "values": json.loads(vals) if vals else {}, "stale": bool(stale),
                    "reason": reason, "decision": decision, "score": score,
                    "threshold": threshold, "model": model, "decision_ts": dts,
                    "explanation": json.loads(expl) if expl else [],
                    "open_alerts": open_alerts, "at_risk": risky})
    return out


def rejects(db: Store) -> dict[str, int]:
    """Rejected messages counted by reason."""
    with db.read() as tx:
        tx.execute("SELECT reason, count FROM rejects ORDER BY reason")
        return {r: c for r, c in tx.fetchall()}


def message_count(db: Store, store: str | None = None) -> int:
    """How many distinct messages are stored (of one store)."""
    with db.read() as tx:
        if store:
            tx.execute("SELECT COUNT(*) FROM messages WHERE store = ?", (store,))
        else:
            tx.execute("SELECT COUNT(*) FROM messages")
        return tx.fetchone()[0]
