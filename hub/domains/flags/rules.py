"""Feature flags and kill switches: settings by scope, one signed document per store.

A flag is on unless a setting says off at the chain, the store's region or the store itself
("off anywhere wins": a kill switch cannot be undone by a narrower scope; setting the flag on
at a scope removes that scope's off). Each change re-signs the document of every store whose
effective flags changed, with the store's next version; the hub worker publishes it retained
on the store's flags topic, so a store that is offline gets it when it reconnects, and an agent
refuses a version lower than the one it applied.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from edge_protocol import commands as proto
from hub.domains import audit
from hub.domains.access import authorize
from hub.errors import NotFound

Clock = Callable[[], float]
NAMES = proto.FLAG_NAMES
_SCOPE = re.compile(r"(chain|region:[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}|"
                    r"store:[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63})\Z")


def settings(tx: Any) -> dict[str, dict[str, bool]]:
    tx.execute("SELECT scope, name, value FROM flag_settings")
    out: dict[str, dict[str, bool]] = {}
    for scope, name, value in tx.fetchall():
        out.setdefault(scope, {})[name] = bool(value)
    return out


def effective(all_settings: dict[str, dict[str, bool]], store: str, region: str) -> dict[str, bool]:
    flags = {name: True for name in NAMES}
    for scope in ("chain", f"region:{region}", f"store:{store}"):
        for name, value in all_settings.get(scope, {}).items():
            if value is False:
                flags[name] = False
    return flags


def set_flag(tx: Any, clock: Clock, actor: Any, scope: str, name: str, value: bool,
             ring: Any, region_of: dict[str, str], source: str | None = None) -> list[str]:
    """Set a flag at a scope; re-sign the documents that change; return those stores.

    `region_of` maps every store the hub knows to its region (the fleet's; hub.control
    reads it), plus any that only have a flags document. `source` is where the request came
    from, for the audit log (api:ADDRESS, cli:HOST)."""
    if name not in NAMES:
        raise ValueError(f"unknown flag {name[:40]!r}; flags: {', '.join(NAMES)}")
    if not _SCOPE.match(scope):
        raise ValueError(f"bad scope {scope[:80]!r}")
    stores = dict(region_of)
    tx.execute("SELECT store, region FROM flag_docs")
    for s, r in tx.fetchall():
        stores.setdefault(s, r)
    kind, _, which = scope.partition(":")
    if kind == "store" and which not in stores:
        raise NotFound(f"store {which!r} has not reported yet (its region is unknown)")
    authorize(actor, "devices.act", store=which if kind == "store" else None,
              region=which if kind == "region" else (stores.get(which) if kind == "store"
                                                      else None))
    now = clock()
    tx.execute("INSERT INTO flag_settings (scope, name, value, actor, at) VALUES (?, ?, ?, ?, ?)"
               " ON CONFLICT (scope, name) DO UPDATE SET value = excluded.value,"
               " actor = excluded.actor, at = excluded.at",
               (scope, name, 1 if value else 0, actor.name, now))
    audit.record(tx, clock, actor, "flags.set", f"flag:{name}",
                 {"scope": scope, "name": name, "value": value,
                  **({"store": which, "region": stores[which]} if kind == "store" else {}),
                  **({"region": which} if kind == "region" else {})}, source)
    if kind == "store":
        targets = {which: stores[which]}
    elif kind == "region":
        targets = {s: r for s, r in stores.items() if r == which}
    else:
        targets = stores
    return refresh(tx, clock, ring, targets)


def refresh(tx: Any, clock: Clock, ring: Any, stores: dict[str, str]) -> list[str]:
    """Re-sign the documents of these stores whose effective flags differ from the last one."""
    now = clock()
    all_settings = settings(tx)
    changed = []
    for store, region in sorted(stores.items()):
        flags = effective(all_settings, store, region)
        tx.execute("SELECT version, flags FROM flag_docs WHERE store = ?", (store,))
        row = tx.fetchone()
        if row is not None and json.loads(row[1]) == flags:
            continue
        version = (int(row[0]) if row else 0) + 1
        doc = ring.sign_document(proto.flags_doc(store=store, region=region, version=version,
                                                 issued=now, flags=flags))
        payload = proto.encode(doc).decode("utf-8")
        if row is None:
            tx.execute("INSERT INTO flag_docs (store, region, version, flags, payload, changed)"
                       " VALUES (?, ?, ?, ?, ?, ?)",
                       (store, region, version, json.dumps(flags, sort_keys=True), payload, now))
        else:
            tx.execute("UPDATE flag_docs SET region = ?, version = ?, flags = ?, payload = ?,"
                       " changed = ?, published = NULL WHERE store = ?",
                       (region, version, json.dumps(flags, sort_keys=True), payload, now, store))
        changed.append(store)
    return changed


def to_publish(tx: Any, limit: int = 1000) -> list[tuple[str, str, int, bytes]]:
    """Documents not published yet: [(store, region, version, payload)]."""
    tx.execute("SELECT store, region, version, payload FROM flag_docs WHERE published IS NULL"
               " ORDER BY changed LIMIT ?", (limit,))
    return [(s, r, int(v), p.encode("utf-8")) for s, r, v, p in tx.fetchall()]


def published(tx: Any, clock: Clock, store: str, version: int) -> None:
    tx.execute("UPDATE flag_docs SET published = ? WHERE store = ? AND version = ?",
               (clock(), store, version))


def applied(tx: Any, clock: Clock, store: str, version: int) -> None:
    """A store reported applying a version (its cmd_result of type flags)."""
    tx.execute("UPDATE flag_docs SET applied_version = ?, applied_at = ? WHERE store = ?"
               " AND (applied_version IS NULL OR applied_version < ?)",
               (version, clock(), store, version))


def is_on(tx: Any, store: str, name: str, region: str | None = None) -> bool:
    """Whether a flag is on for a store now (what the hub itself obeys: `tickets` off means no
    ticket for the store). Read from the settings, so it holds before the store applied it."""
    if region is None:
        tx.execute("SELECT region FROM flag_docs WHERE store = ?", (store,))
        row = tx.fetchone()
        region = row[0] if row else ""
    return effective(settings(tx), store, region).get(name, True)


def for_store(tx: Any, store: str) -> dict[str, Any] | None:
    tx.execute("SELECT version, flags, published, applied_version, applied_at FROM flag_docs"
               " WHERE store = ?", (store,))
    row = tx.fetchone()
    if row is None:
        return None
    return {"version": int(row[0]), "flags": json.loads(row[1]), "published": row[2],
            "applied_version": row[3], "applied_at": row[4]}


def overview(tx: Any) -> dict[str, Any]:
    tx.execute("SELECT scope, name, value, actor, at FROM flag_settings ORDER BY scope, name")
    rows = [{"scope": s, "name": n, "value": bool(v), "actor": a, "at": at}
            for s, n, v, a, at in tx.fetchall()]
    tx.execute("SELECT COUNT(*), SUM(CASE WHEN applied_version = version THEN 1 ELSE 0 END)"
               " FROM flag_docs")
    total, current = tx.fetchone()
    return {"settings": rows, "stores": int(total or 0), "applied": int(current or 0)}
