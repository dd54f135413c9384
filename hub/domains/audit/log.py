"""Appending to the audit log and reading it back.

Each entry's hash is SHA-256 over the previous entry's hash, a newline, and the canonical JSON
(a compact array, UTF-8) of the entry's stored columns in a fixed order. Writers serialize on
the head row, so the chain never forks however many workers append at once.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from hub.errors import Invalid
from hub.store.base import Tx

COLUMNS = ("seq", "ts", "actor_kind", "actor", "role", "scope", "action", "object", "store",
           "region", "detail", "source", "prev_hash", "hash")
MAX_DETAIL_BYTES = 65536
MAX_FIELD = 256

Clock = Callable[[], float]


def canonical(value: Any) -> bytes:
    """Compact JSON with sorted keys, UTF-8: the bytes hashed and signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def format_ts(epoch: float) -> str:
    """Epoch seconds as ISO 8601 UTC with microseconds (sorts as text)."""
    dt = datetime.fromtimestamp(epoch, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """The hash of an entry given its stored columns (all but prev_hash and hash)."""
    body = [row["seq"], row["ts"], row["actor_kind"], row["actor"], row["role"], row["scope"],
            row["action"], row["object"], row["store"], row["region"], row["detail"],
            row["source"]]
    return hashlib.sha256(prev_hash.encode("ascii", "replace") + b"\n" +
                          canonical(body)).hexdigest()


def _postgres(tx: Tx) -> bool:
    """Whether a transaction is PostgreSQL's (its driver's placeholder is %s)."""
    dialect = getattr(tx, "dialect", None)
    return dialect == "postgresql" if dialect else tx.placeholder == "%s"


def parse_since(text: str | None) -> str | None:
    """An ISO 8601 date or time (naive means UTC) as the log's timestamp text, for filters."""
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as err:
        raise Invalid(f"since: expected an ISO 8601 date or time, got {text[:64]!r}") from err
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:  # 0001-01-01T00:00+01:00 is a valid spelling of a time before year 1 in UTC
        utc = dt.astimezone(timezone.utc).replace(tzinfo=None)
        # isoformat, not strftime: %Y drops the leading zeros of a year below 1000 here, and
        # the filter compares text ("999-..." would sort after "2026-...").
        return utc.isoformat(timespec="microseconds") + "Z"
    except (OverflowError, ValueError) as err:
        raise Invalid(f"since: {text[:64]!r} is outside the years 1-9999 in UTC") from err


def _text(name: str, value: Any, limit: int = MAX_FIELD, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise Invalid(f"audit {name} must be a string of 1-{limit} characters")
    return value


def record(tx: Tx, clock: Clock, actor: Any, action: str, obj: str,
           detail: dict[str, Any] | None = None, source: str | None = None) -> int:
    """Append one entry in the caller's transaction; return its seq.

    `actor` is a hub.domains.access.Actor. `detail` is a JSON object (at most 64 KiB canonical;
    a value JSON cannot hold is recorded as its text, NaN is refused); a
    "store" (and "region") in it, or an object "store:NAME", files the entry under that store
    for `audit list --store`. For a system actor, detail carries the decision that caused the
    action (store, device, model version, score, threshold, explanation).
    """
    _text("action", action, 64)
    _text("object", obj)
    _text("source", source, optional=True)
    if detail is not None and not isinstance(detail, dict):
        raise Invalid("audit detail must be a JSON object")
    try:  # values JSON cannot hold (a datetime, a set) are recorded as their text
        detail_text = None if detail is None else json.dumps(
            detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
            allow_nan=False, default=str)
    except (TypeError, ValueError, RecursionError) as err:
        raise Invalid(f"audit detail is not JSON: {err}") from err
    if detail_text is not None and len(detail_text.encode("utf-8")) > MAX_DETAIL_BYTES:
        raise Invalid(f"audit detail larger than {MAX_DETAIL_BYTES} bytes")
    store = (detail or {}).get("store")
    if store is None and obj.startswith("store:"):
        store = obj[len("store:"):]
    region = (detail or {}).get("region")
    store = store if isinstance(store, str) and store else None
    region = region if isinstance(region, str) and region else None
    now = clock()
    if not isinstance(now, (int, float)) or not math.isfinite(now):
        raise Invalid("the clock gave no usable time")
    scope = canonical({"regions": sorted(actor.regions),
                       "stores": sorted(actor.stores)}).decode("utf-8")
    lock = " FOR UPDATE" if _postgres(tx) else ""
    tx.execute(f"SELECT seq, hash FROM audit_head WHERE id = 1{lock}")
    head = tx.fetchone()
    if head is None:
        raise Invalid("the audit log has no head row (migrations not run)")
    prev_seq, prev_hash = int(head[0]), head[1]
    row = {"seq": prev_seq + 1, "ts": format_ts(now), "actor_kind": actor.kind,
           "actor": actor.name, "role": actor.role, "scope": scope, "action": action,
           "object": obj, "store": store, "region": region, "detail": detail_text,
           "source": source}
    digest = entry_hash(prev_hash, row)
    tx.execute("INSERT INTO audit_log (seq, ts, actor_kind, actor, role, scope, action, object,"
               " store, region, detail, source, prev_hash, hash)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (*(row[c] for c in COLUMNS[:12]), prev_hash, digest))
    tx.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (row["seq"], digest))
    return row["seq"]


def _row(values: tuple) -> dict[str, Any]:
    return dict(zip(COLUMNS, values))


def head(tx: Tx) -> tuple[int, str]:
    """The head row: (last seq, its hash), as the log says (verify checks it)."""
    tx.execute("SELECT seq, hash FROM audit_head WHERE id = 1")
    row = tx.fetchone()
    return (0, "0" * 64) if row is None else (int(row[0]), row[1])


def entries(tx: Tx, *, since: str | None = None, actor: str | None = None,
            store: str | None = None, after: int = 0, limit: int = 1000,
            stores: frozenset[str] | None = None,
            regions: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """Entries in seq order after `after`, filtered; at most `limit`.

    `stores`/`regions` (a scoped reader's scope) keep only entries filed under them.
    """
    sql = f"SELECT {', '.join(COLUMNS)} FROM audit_log WHERE seq > ?"
    params: list[Any] = [int(after)]
    if since:
        sql += " AND ts >= ?"
        params.append(since)
    if actor:
        sql += " AND actor = ?"
        params.append(actor)
    if store:
        sql += " AND store = ?"
        params.append(store)
    if stores is not None or regions is not None:
        clauses = []
        for col, values in (("store", stores or ()), ("region", regions or ())):
            if values:
                clauses.append(f"{col} IN ({', '.join('?' for _ in values)})")
                params.extend(sorted(values))
        sql += f" AND ({' OR '.join(clauses)})" if clauses else " AND 1 = 0"
    sql += " ORDER BY seq LIMIT ?"
    params.append(int(limit))
    tx.execute(sql, params)
    return [_public(_row(r)) for r in tx.fetchall()]


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["scope"] = json.loads(row["scope"])
    out["detail"] = None if row["detail"] is None else json.loads(row["detail"])
    return out


def iter_raw(db: Any, page: int = 5000) -> Iterator[dict[str, Any]]:
    """Every entry as stored (text columns untouched), in seq order, a page a transaction."""
    after = -(1 << 62)
    while True:
        with db.read() as tx:
            tx.execute(f"SELECT {', '.join(COLUMNS)} FROM audit_log WHERE seq > ?"
                       " ORDER BY seq LIMIT ?", (after, page))
            rows = tx.fetchall()
        for r in rows:
            yield _row(r)
        if len(rows) < page:
            return
        after = rows[-1][0]
