"""What the API reads and changes, scoped by the caller's role: one function per endpoint.

Each function takes the store, the actor and the request's (already checked) arguments, calls
`authorize`/`scope` from the access domain, and returns plain JSON-able data. The fleet summary
is one aggregate query (by store, then folded by region), so the chain-wide view of 10,000
stores costs one pass over the fleet tables, not a query a store.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from hub.domains import audit
from hub.domains.access import Actor, Scope, authorize, scope
from hub.errors import NotFound

AT_RISK = ("predicted_failure", "failed")
Clock = Callable[[], float]


def _scope_sql(sc: Scope | None, store_col: str = "s.store",
               region_col: str = "s.region") -> tuple[str, list[Any]]:
    """A WHERE fragment (starting with AND) keeping only rows inside a scope."""
    if sc is None:
        return "", []
    parts, params = [], []
    if sc.stores:
        parts.append(f"{store_col} IN ({', '.join('?' for _ in sc.stores)})")
        params += sorted(sc.stores)
    if sc.regions:
        parts.append(f"{region_col} IN ({', '.join('?' for _ in sc.regions)})")
        params += sorted(sc.regions)
    return (f" AND ({' OR '.join(parts)})" if parts else " AND 1 = 0"), params


_SUMMARY = (
    "SELECT s.store, s.region, s.online, s.birth_session, s.death_session, s.changed,"
    " s.last_seen, s.first_seq, s.max_seq, s.received,"
    " COALESCE(d.n, 0), COALESCE(d.risky, 0), COALESCE(a.open, 0), COALESCE(a.critical, 0)"
    " FROM stores s"
    " LEFT JOIN (SELECT dv.store, COUNT(*) AS n,"
    "   SUM(CASE WHEN dv.decision IN (?, ?) OR oa.device IS NOT NULL THEN 1 ELSE 0 END) AS risky"
    "   FROM devices dv LEFT JOIN (SELECT DISTINCT store, device FROM alerts"
    "     WHERE state = 'raised') oa ON oa.store = dv.store AND oa.device = dv.device"
    "   GROUP BY dv.store) d ON d.store = s.store"
    " LEFT JOIN (SELECT store, COUNT(*) AS open,"
    "   SUM(CASE WHEN severity = 'critical' THEN 1 ELSE 0 END) AS critical"
    "   FROM alerts WHERE state = 'raised' GROUP BY store) a ON a.store = s.store"
    " WHERE 1 = 1")


def _store_state(row: tuple, now: float) -> dict[str, Any]:
    (store, region, online, birth_s, death_s, changed, last_seen, first, mx, received,
     devices, at_risk, open_alerts, critical) = row
    known = birth_s >= 0 or death_s >= 0
    span = 0 if first is None else mx - first + 1
    state = None if not known else bool(online)
    out = {"store": store, "region": region, "online": state, "since": changed,
           "last_seen": last_seen, "devices": int(devices), "at_risk": int(at_risk),
           "open_alerts": int(open_alerts), "critical_alerts": int(critical),
           "missing": max(0, span - (received or 0))}
    reasons = []
    if state is False:
        reasons.append("offline")
    if out["at_risk"]:
        reasons.append("devices at risk")
    if out["critical_alerts"]:
        reasons.append("critical alerts")
    out["attention"] = reasons
    return out


def fleet(db, actor: Actor, *, region: str | None = None, all_stores: bool = False,
          limit: int = 1000) -> dict[str, Any]:
    """Stores summarised by region, and the stores that need attention (or all, with all)."""
    sc = scope(actor, "fleet.read")
    _check_region(db, actor, "fleet.read", region, sc)
    where, params = _scope_sql(sc)
    if region is not None:
        where += " AND s.region = ?"
        params.append(region)
    now = time.time()
    with db.read() as tx:
        tx.execute(_SUMMARY + where + " ORDER BY s.region, s.store", [*AT_RISK, *params])
        rows = tx.fetchall()
    regions: dict[str, dict[str, Any]] = {}
    listed: list[dict[str, Any]] = []
    total = {"stores": 0, "online": 0, "offline": 0, "unknown": 0, "devices": 0,
             "at_risk": 0, "open_alerts": 0, "critical_alerts": 0, "attention": 0}
    for row in rows:
        s = _store_state(row, now)
        r = regions.get(s["region"])
        if r is None:
            r = regions[s["region"]] = {"region": s["region"], **{k: 0 for k in total}}
        state = "unknown" if s["online"] is None else "online" if s["online"] else "offline"
        for acc in (r, total):
            acc["stores"] += 1
            acc[state] += 1
            acc["devices"] += s["devices"]
            acc["at_risk"] += s["at_risk"]
            acc["open_alerts"] += s["open_alerts"]
            acc["critical_alerts"] += s["critical_alerts"]
            acc["attention"] += bool(s["attention"])
        if (all_stores or s["attention"]) and len(listed) < limit:
            listed.append(s)
    shown = sum(1 for row in rows) if all_stores else total["attention"]
    return {"total": total, "regions": list(regions.values()), "stores": listed,
            "listed": "all" if all_stores else "attention",
            "truncated": shown > len(listed), "region": region}


def store_detail(db, actor: Actor, store: str) -> dict[str, Any]:
    """One store: state, devices, open alerts, seq gaps (inside the caller's scope)."""
    from hub import fleet as fleet_domain

    _authorize_store(db, actor, "fleet.read", store)
    return fleet_domain.store_detail(db, store)


def _check_region(db, actor: Actor, action: str, region: str | None,
                  sc: Scope | None) -> None:
    """A scoped caller may name a region of its own, or one holding one of its stores."""
    if region is None or sc is None or region in sc.regions:
        return
    if sc.stores:
        with db.read() as tx:
            tx.execute("SELECT 1 FROM stores WHERE region = ? AND store IN"
                       f" ({', '.join('?' for _ in sc.stores)}) LIMIT 1",
                       [region, *sorted(sc.stores)])
            if tx.fetchone():
                return
    authorize(actor, action, region=region)  # raises Forbidden: outside its scope


def _region_of(db, store: str) -> str:
    with db.read() as tx:
        tx.execute("SELECT region FROM stores WHERE store = ?", (store,))
        row = tx.fetchone()
    if row is None:
        raise NotFound(f"unknown store {store!r}")
    return row[0]


def _authorize_store(db, actor: Actor, action: str, store: str) -> str:
    """Authorize an action on a store (its region from the fleet tables); return the region."""
    region = _region_of(db, store)
    authorize(actor, action, store=store, region=region)
    return region


def devices(db, actor: Actor, *, at_risk: bool = False, region: str | None = None,
            store: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Devices with their latest reading and decision, inside the caller's scope."""
    from hub import fleet as fleet_domain

    sc = scope(actor, "fleet.read")
    if store is not None:
        _authorize_store(db, actor, "fleet.read", store)
    _check_region(db, actor, "fleet.read", region, sc)
    rows = fleet_domain.devices(db, at_risk=at_risk, region=region, store=store)
    if sc is not None:
        rows = [d for d in rows if sc.admits(d["store"], d["region"])]
    return rows[:limit]


def alerts(db, actor: Actor, *, open_only: bool = False, store: str | None = None,
           region: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Alert instances, newest first, inside the caller's scope."""
    sc = scope(actor, "alerts.read")
    if store is not None:
        _authorize_store(db, actor, "alerts.read", store)
    _check_region(db, actor, "alerts.read", region, sc)
    where, params = _scope_sql(sc, "store", "region")
    if open_only:
        where += " AND state = 'raised'"
    if store is not None:
        where += " AND store = ?"
        params.append(store)
    if region is not None:
        where += " AND region = ?"
        params.append(region)
    with db.read() as tx:
        return _alerts(tx, where, params, limit)


_ALERT_KEYS = ("id", "store", "region", "alert", "device", "what", "severity", "state", "since",
               "raised_ts", "cleared_ts", "seq", "explanation", "acked", "acked_by")


def _alerts(tx, where: str, params: list[Any], limit: int) -> list[dict[str, Any]]:
    tx.execute(f"SELECT {', '.join(_ALERT_KEYS)} FROM alerts WHERE 1 = 1{where}"
               " ORDER BY since DESC, store, alert LIMIT ?", [*params, limit])
    rows = [dict(zip(_ALERT_KEYS, r)) for r in tx.fetchall()]
    for a in rows:
        a["explanation"] = json.loads(a["explanation"]) if a["explanation"] else []
    return rows


def ack(db, actor: Actor, clock: Clock, alert_id: str, source: str | None) -> dict[str, Any]:
    """Acknowledge an alert instance inside the caller's scope; audited in the same transaction."""
    with db.transaction() as tx:
        tx.execute("SELECT store, region, acked FROM alerts WHERE id = ?", (alert_id,))
        row = tx.fetchone()
        if row is None:
            raise NotFound(f"unknown alert id {alert_id!r}")
        store, region, _ = row
        authorize(actor, "alerts.ack", store=store, region=region)
        now = clock()
        tx.execute("UPDATE alerts SET acked = ?, acked_by = ? WHERE id = ?",
                   (now, actor.name, alert_id))
        audit.record(tx, clock, actor, "alerts.ack", f"alert:{alert_id}",
                     {"store": store, "region": region}, source)
        return _alerts(tx, " AND id = ?", [alert_id], 1)[0]


def rejects(db, actor: Actor) -> dict[str, int]:
    """Rejected messages by reason (chain-wide: not tied to a store)."""
    authorize(actor, "fleet.read")
    with db.read() as tx:
        tx.execute("SELECT reason, count FROM rejects ORDER BY reason")
        return {r: int(c) for r, c in tx.fetchall()}
