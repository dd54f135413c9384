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
    """The fleet's per-store states, read at most once per `max_age` seconds and shared by
    every caller (each filters it to its scope). 0 reads the database on every request.

    The chain-wide view of 10,000 stores costs four plain queries (tens of milliseconds on a
    busy machine); a chain's people looking at it together need not each pay for it.
    """

    MAX_VIEWS = 256  # summaries kept per snapshot (one per scope and query asked)

    def __init__(self, max_age: float = 1.0):
        self.max_age = max_age
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._rows: list[dict[str, Any]] = []
        self._views: dict[Any, dict[str, Any]] = {}

    def rows(self, db) -> tuple[list[dict[str, Any]], dict[Any, dict[str, Any]]]:
        """The per-store states, and the summaries already made from them."""
        with self._lock:
            if self.max_age > 0 and time.monotonic() - self._at < self.max_age:
                return self._rows, self._views
            rows = _read_states(db)
            self._rows, self._at, self._views = rows, time.monotonic(), {}
            return rows, self._views


def _read_states(db) -> list[dict[str, Any]]:
    """Every store's state, device counts and open alerts (four queries, no per-store ones)."""
    with db.read() as tx:
        tx.execute("SELECT store, region, online, birth_session, death_session, changed,"
                   " last_seen, first_seq, max_seq, received FROM stores"
                   " ORDER BY region, store")
        stores = tx.fetchall()
        tx.execute("SELECT store, COUNT(*) FROM devices GROUP BY store")
        counts = dict(tx.fetchall())
        tx.execute("SELECT store, device FROM devices WHERE decision IN (?, ?)", AT_RISK)
        risky = set(tx.fetchall())
        tx.execute("SELECT store, device, severity FROM alerts WHERE state = 'raised'")
        raised = tx.fetchall()
    open_alerts: dict[str, int] = {}
    critical: dict[str, int] = {}
    for store, device, severity in raised:
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
        s = {"store": store, "region": region, "online": state, "since": changed,
             "last_seen": last_seen, "devices": int(counts.get(store, 0)),
             "at_risk": at_risk.get(store, 0), "open_alerts": open_alerts.get(store, 0),
             "critical_alerts": critical.get(store, 0),
             "missing": max(0, span - (received or 0))}
        reasons = []
        if state is False:
            reasons.append("offline")
        if s["at_risk"]:
            reasons.append("devices at risk")
        if s["critical_alerts"]:
            reasons.append("critical alerts")
        s["attention"] = reasons
        out.append(s)
    return out


_NO_CACHE = FleetCache(0)


def fleet(db, actor: Actor, *, region: str | None = None, all_stores: bool = False,
          limit: int = 1000, cache: FleetCache | None = None) -> dict[str, Any]:
    """Stores summarised by region, and the stores that need attention (or all, with all)."""
    sc = scope(actor, "fleet.read")
    _check_region(db, actor, "fleet.read", region, sc)
    rows, views = (cache or _NO_CACHE).rows(db)
    key = (None if sc is None else (sc.regions, sc.stores), region, all_stores, limit)
    done = views.get(key)
    if done is not None:
        return done
    regions: dict[str, dict[str, Any]] = {}
    listed: list[dict[str, Any]] = []
    keys = ("stores", "online", "offline", "unknown", "devices", "at_risk", "open_alerts",
            "critical_alerts", "attention")
    total = dict.fromkeys(keys, 0)
    shown = 0
    for s in rows:
        if region is not None and s["region"] != region:
            continue
        if sc is not None and not sc.admits(s["store"], s["region"]):
            continue
        r = regions.get(s["region"])
        if r is None:
            r = regions[s["region"]] = {"region": s["region"], **dict.fromkeys(keys, 0)}
        state = "unknown" if s["online"] is None else "online" if s["online"] else "offline"
        for acc in (r, total):
            acc["stores"] += 1
            acc[state] += 1
            acc["devices"] += s["devices"]
            acc["at_risk"] += s["at_risk"]
            acc["open_alerts"] += s["open_alerts"]
            acc["critical_alerts"] += s["critical_alerts"]
            acc["attention"] += bool(s["attention"])
        if all_stores or s["attention"]:
            shown += 1
            if len(listed) < limit:
                listed.append(s)
    out = {"total": total, "regions": list(regions.values()), "stores": listed,
           "listed": "all" if all_stores else "attention", "truncated": shown > len(listed),
           "region": region}
    if cache is not None and cache.max_age > 0 and len(views) < FleetCache.MAX_VIEWS:
        views[key] = out
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
