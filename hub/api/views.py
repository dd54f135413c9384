"""What the API reads and changes, scoped by the caller's role: one function per endpoint.

Each function takes the store, the actor and the request's (already checked) arguments, calls
`authorize`/`scope` from the access domain, and returns plain JSON-able data. The fleet summary
is one aggregate query (by store, then folded by region), so the chain-wide view of 10,000
stores costs one pass over the fleet tables, not a query a store.
"""

from __future__ import annotations

import json
import threading
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


class FleetCache:
    """Fleet summaries kept for `max_age` seconds, one per (scope, region, all, limit) asked,
    so a chain's people looking at the fleet together do not each pay for reading it. 0 reads
    the database on every request."""

    MAX_VIEWS = 256

    def __init__(self, max_age: float = 1.0):
        self.max_age = max_age
        self._lock = threading.Lock()
        self._views: dict[Any, tuple[float, dict[str, Any]]] = {}

    def get(self, key: Any) -> dict[str, Any] | None:
        if self.max_age <= 0:
            return None
        with self._lock:
            hit = self._views.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.max_age:
                return hit[1]
            return None

    def put(self, key: Any, view: dict[str, Any]) -> None:
        if self.max_age <= 0:
            return
        with self._lock:
            now = time.monotonic()
            if len(self._views) >= self.MAX_VIEWS:
                self._views = {k: v for k, v in self._views.items()
                               if now - v[0] < self.max_age}
                if len(self._views) >= self.MAX_VIEWS:
                    self._views.clear()
            self._views[key] = (now, view)


_STORE_COLS = ("SELECT s.store, s.region, s.online, s.birth_session, s.death_session,"
               " s.changed, s.last_seen, s.first_seq, s.max_seq, s.received FROM stores s")
_KNOWN = "(s.birth_session >= 0 OR s.death_session >= 0)"


def _states(tx, where: str, params: list[Any], risky: set[tuple[str, str]],
            raised: list[tuple]) -> list[dict[str, Any]]:
    """Store rows (already selected by `where`) with their devices, risk and alerts."""
    tx.execute(_STORE_COLS + " WHERE 1 = 1" + where + " ORDER BY s.region, s.store", params)
    stores = tx.fetchall()
    counts: dict[str, int] = {}
    names = [r[0] for r in stores]
    for i in range(0, len(names), 500):
        chunk = names[i:i + 500]
        tx.execute("SELECT store, COUNT(*) FROM devices WHERE store IN"
                   f" ({', '.join('?' for _ in chunk)}) GROUP BY store", chunk)
        counts.update(tx.fetchall())
    risky = set(risky)
    open_alerts: dict[str, int] = {}
    critical: dict[str, int] = {}
    for store, _, device, severity in raised:
        risky.add((store, device))
        open_alerts[store] = open_alerts.get(store, 0) + 1
        if severity == "critical":
            critical[store] = critical.get(store, 0) + 1
    at_risk: dict[str, int] = {}
    for store, _ in risky:
        at_risk[store] = at_risk.get(store, 0) + 1
    out = []
    for (store, region, online, birth_s, death_s, changed, last_seen, first, mx,
         received) in stores:
        known = birth_s >= 0 or death_s >= 0
        span = 0 if first is None else mx - first + 1
        state = None if not known else bool(online)
        row = {"store": store, "region": region, "online": state, "since": changed,
               "last_seen": last_seen, "devices": int(counts.get(store, 0)),
               "at_risk": at_risk.get(store, 0), "open_alerts": open_alerts.get(store, 0),
               "critical_alerts": critical.get(store, 0),
               "missing": max(0, span - (received or 0))}
        row["attention"] = _reasons(row)
        out.append(row)
    return out


def _reasons(row: dict[str, Any]) -> list[str]:
    reasons = []
    if row["online"] is False:
        reasons.append("offline")
    if row["at_risk"]:
        reasons.append("devices at risk")
    if row["critical_alerts"]:
        reasons.append("critical alerts")
    return reasons


def fleet(db, actor: Actor, *, region: str | None = None, all_stores: bool = False,
          limit: int = 1000, cache: FleetCache | None = None) -> dict[str, Any]:
    """Stores summarised by region, and the stores that need attention (or all, with all).

    Aggregated in the database: the regions' counts are one GROUP BY over the stores; only
    the devices at risk, the raised alerts and the stores listed are read row by row.
    """
    sc = scope(actor, "fleet.read")
    _check_region(db, actor, "fleet.read", region, sc)
    key = (None if sc is None else (sc.regions, sc.stores), region, all_stores, limit)
    if cache is not None:
        done = cache.get(key)
        if done is not None:
            return done
    where, params = _scope_sql(sc)
    if region is not None:
        where += " AND s.region = ?"
        params.append(region)
    alert_where, alert_params = _scope_sql(sc, "store", "region")
    if region is not None:
        alert_where += " AND region = ?"
        alert_params.append(region)
    keys = ("stores", "online", "offline", "unknown", "at_risk", "open_alerts",
            "critical_alerts", "attention")
    regions: dict[str, dict[str, Any]] = {}

    def acc(name: str) -> dict[str, Any]:
        r = regions.get(name)
        if r is None:
            r = regions[name] = {"region": name, **dict.fromkeys(keys, 0)}
        return r

    with db.read() as tx:
        tx.execute("SELECT s.region, s.online, CASE WHEN " + _KNOWN + " THEN 1 ELSE 0 END,"
                   " COUNT(*) FROM stores s WHERE 1 = 1" + where +
                   " GROUP BY s.region, s.online, CASE WHEN " + _KNOWN + " THEN 1 ELSE 0 END",
                   params)
        for name, online, known, n in tx.fetchall():
            r = acc(name)
            r["stores"] += n
            r["unknown" if not known else "online" if online else "offline"] += n
        tx.execute("SELECT d.store, s.region, d.device FROM devices d JOIN stores s"
                   " ON s.store = d.store WHERE d.decision IN (?, ?)" + where,
                   [*AT_RISK, *params])
        risky_rows = tx.fetchall()
        tx.execute("SELECT store, region, device, severity FROM alerts WHERE state = 'raised'"
                   + alert_where, alert_params)
        raised = tx.fetchall()
        tx.execute("SELECT s.store, s.region FROM stores s WHERE s.online = 0 AND " + _KNOWN
                   + where, params)
        offline = tx.fetchall()
        risky = {(st, dev) for st, _, dev in risky_rows}
        region_of = {st: rg for st, rg, _ in risky_rows}
        seen_risk: set[tuple[str, str]] = set()
        for st, rg, dev in risky_rows:
            seen_risk.add((st, dev))
        for st, rg, dev, severity in raised:
            region_of[st] = rg
            seen_risk.add((st, dev))
            acc(rg)["open_alerts"] += 1
            if severity == "critical":
                acc(rg)["critical_alerts"] += 1
        for st, dev in seen_risk:
            acc(region_of[st])["at_risk"] += 1
        critical_stores = {st for st, _, _, sev in raised if sev == "critical"}
        attention = {st for st, _ in seen_risk} | critical_stores | {st for st, _ in offline}
        for st, rg in offline:
            region_of[st] = rg
        for st in attention:
            acc(region_of[st])["attention"] += 1
        if all_stores:
            listed = _states(tx, where, params, risky, raised)
            shown = len(listed)
            listed = listed[:limit]
        else:
            wanted = sorted(attention, key=lambda st: (region_of[st], st))
            shown = len(wanted)
            wanted = wanted[:limit]
            listed = []
            for i in range(0, len(wanted), 500):
                chunk = wanted[i:i + 500]
                inside = set(chunk)
                listed += _states(tx, f" AND s.store IN ({', '.join('?' for _ in chunk)})",
                                  chunk, risky, [a for a in raised if a[0] in inside])
            listed.sort(key=lambda s: (s["region"], s["store"]))
    ordered = [regions[name] for name in sorted(regions)]
    total = {k: sum(r[k] for r in ordered) for k in keys}
    out = {"total": total, "regions": ordered, "stores": listed,
           "listed": "all" if all_stores else "attention", "truncated": shown > len(listed),
           "region": region}
    if cache is not None:
        cache.put(key, out)
    return out


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
