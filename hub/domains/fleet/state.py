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

from edge_protocol.bodies import SCORING_ERRORS_EVENT, TS_CACHE
from edge_protocol.envelope import Envelope
from edge_protocol.errors import ProtocolError
from edge_protocol.timestamps import normalize_ts as _norm_ts
from hub.domains import audit
from hub.errors import NotFound
from hub.store import Store, Tx

AT_RISK = ("predicted_failure", "failed")
SESSION_KINDS = ("birth", "death")  # session messages, not outbox rows: outside seq accounting


def apply(db: Store, tx: Tx, envs: Sequence[Envelope], received: float,
          since: float | None = None, refused: list | None = None) -> list[Envelope]:
    """Apply new envelopes to the fleet tables; return the alert envelopes, in seq order.

    `received` is when the batch arrived (its last message), `since` its first message's
    arrival. A birth or death whose session, or a message whose seq, leaps absurdly far above
    the store's is not applied and is appended to `refused` as (envelope, reason code,
    detail), for the writer to quarantine. The alert envelopes are the alerts domain's to
    apply (hub.domains.alerts.apply).
    Sessions go first: a birth of a new agent instance restarts the store's seq accounting,
    and the batch's messages count in the new one.
    """
    for env in envs:
        if env.kind in SESSION_KINDS:
            why = _absurd_session(tx, env)
            if why:
                if refused is not None:
                    refused.append((env, "implausible_session", why))
                continue
        if env.kind == "birth":
            _birth(db, tx, env, received, received if since is None else since)
        elif env.kind == "death":
            _death(db, tx, env, received)
    leaps = _absurd_seqs(tx, envs)
    if leaps:
        if refused is not None:
            refused.extend((e, "implausible_seq", why) for e, why in leaps)
        out = {e.id for e, _ in leaps}
        envs = [e for e in envs if e.id not in out]
    _account(db, tx, envs, received)
    _telemetry(tx, [e for e in envs if e.kind == "telemetry"], received)
    _decisions(tx, [e for e in envs if e.kind == "decision"], received)
    _scoring_errors(tx, [e for e in envs if e.kind == "event"
                         and e.body.get("event") == SCORING_ERRORS_EVENT], received)
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
        f" last_seen = {hi}(COALESCE(stores.last_seen, 0), excluded.last_seen), unseen = NULL",
        [(s, a[0], a[1], a[2], a[3], received) for s, a in sorted(per.items())])


MAX_SESSION_LEAP = 2**20  # a million connections more than the last one seen: not a store


def _absurd_session(tx: Tx, env: Envelope) -> str | None:
    """Why this birth or death's session is absurd for its store's instance, or None.

    A new instance starts again at its own session (see _birth), so only a leap within the
    instance the store's sessions count in is judged.
    """
    tx.execute("SELECT instance, birth_session, death_session FROM stores WHERE store = ?",
               (env.store,))
    row = tx.fetchone()
    if row is None:
        return None
    known, b, d = row
    instance = env.body.get("instance")
    if instance is not None and known is not None and instance != known:
        return None
    last = max(b, d)
    session = env.body["session"]
    if last >= 0 and session > last + MAX_SESSION_LEAP:
        return f"session {session} leaps more than {MAX_SESSION_LEAP} above {last}"
    return None


MAX_SEQ_LEAP = 2**32  # four billion messages beyond the last one seen: not a store's outbox


def _absurd_seqs(tx: Tx, envs: Sequence[Envelope]) -> list[tuple[Envelope, str]]:
    """The outbox messages whose seq leaps more than MAX_SEQ_LEAP above their store's last
    (one query a batch; a store without a last seq, new or forgotten, has nothing to leap)."""
    top: dict[str, int] = {}
    for env in envs:
        if env.kind not in SESSION_KINDS and env.seq > top.get(env.store, -1):
            top[env.store] = env.seq
    if not top or max(top.values()) <= MAX_SEQ_LEAP:
        return []  # no seq in this batch could leap that far: skip the query
    stores = sorted(top)
    tx.execute("SELECT store, max_seq FROM stores WHERE max_seq IS NOT NULL AND store IN ("
               + ", ".join("?" for _ in stores) + ")", stores)
    last = dict(tx.fetchall())
    return [(env, f"seq {env.seq} leaps more than {MAX_SEQ_LEAP} above {last[env.store]}")
            for env in envs if env.kind not in SESSION_KINDS and env.store in last
            and env.seq > last[env.store] + MAX_SEQ_LEAP]


def _clamped(ts: str, received: float) -> float:
    """A message's own time as a newest-wins guard: never later than when it arrived.

    A store's clock may run ahead by up to the skew the decoder allows; with its raw ts as the
    guard, one such message would hide every correct one for that long once the clock is set
    right. Clamped to its arrival, it counts as "now" and the next message wins.
    """
    try:
        return min(TS_CACHE.epoch(ts), received)
    except (ProtocolError, OverflowError, OSError, ValueError):  # checked upstream
        return received


def _birth(db: Store, tx: Tx, env: Envelope, received: float, since: float) -> None:
    """A birth brings a store online unless a newer session has been seen (by birth), or its
    own or a newer one has ended (by death).

    Sessions count within one agent instance (its state database). A birth of another
    instance whose own time is later than the last accepted birth's (both clamped to their
    arrival) is a store whose state was lost and that is live again: it is taken back at its
    session, whatever the old one was, and its seq accounting restarts. An older instance's
    birth (a late redelivery) changes nothing.
    """
    session = env.body["session"]
    instance = env.body.get("instance")
    agent = {k: v for k, v in env.body.items() if k != "inventory"}
    at = _clamped(env.ts, received)
    tx.execute("SELECT instance, birth_at, birth_session, death_session FROM stores"
               " WHERE store = ?", (env.store,))
    row = tx.fetchone()
    if row is not None and instance is not None:
        known, last_at, b, d = row
        newer_lineage = instance != known and (known is not None or session < max(b, d))
        if newer_lineage:
            if last_at is not None and at <= last_at:
                return  # a birth of an instance older than the one we follow
            tx.execute(
                "UPDATE stores SET region = ?, instance = ?, birth_at = ?, birth_session = ?,"
                " death_session = -1, online = 1, changed = ?, last_seen = ?, agent = ?,"
                " first_seq = NULL, max_seq = NULL, received = 0, seq_since = ?, unseen = NULL"
                " WHERE store = ?",
                (env.region, instance, at, session, received, received, json.dumps(agent),
                 since, env.store))
            _inventory(tx, env)
            return
    # A death ends its session: a birth of the same session applied after it (another worker's,
    # or the priority lane's, out of order) does not bring the store back. Either order of
    # the two leaves the store offline.
    newer = "excluded.birth_session >= stores.birth_session AND " \
            "excluded.birth_session > stores.death_session"
    tx.execute(
        "INSERT INTO stores (store, region, birth_session, online, changed, last_seen, agent,"
        " instance, birth_at) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?) ON CONFLICT (store) DO UPDATE SET"
        f" changed = CASE WHEN {newer} AND stores.online = 0 THEN excluded.changed"
        "            ELSE COALESCE(stores.changed, excluded.changed) END,"
        f" online = CASE WHEN {newer} THEN 1 ELSE stores.online END,"
        " agent = CASE WHEN excluded.birth_session >= stores.birth_session THEN excluded.agent"
        "         ELSE stores.agent END,"
        f" instance = CASE WHEN {newer} THEN COALESCE(excluded.instance, stores.instance)"
        "            ELSE stores.instance END,"
        f" birth_at = CASE WHEN {newer} THEN {db.greatest}(COALESCE(stores.birth_at,"
        " excluded.birth_at), excluded.birth_at) ELSE stores.birth_at END,"
        " unseen = NULL,"
        f" birth_session = {db.greatest}(stores.birth_session, excluded.birth_session)",
        (env.store, env.region, session, received, received, json.dumps(agent), instance, at))
    _inventory(tx, env)


def _inventory(tx: Tx, env: Envelope) -> None:
    tx.executemany(
        "INSERT INTO devices (store, device, kind) VALUES (?, ?, ?)"
        " ON CONFLICT (store, device) DO UPDATE SET kind = excluded.kind",
        [(env.store, item["id"], item["kind"]) for item in env.body["inventory"]])


def _death(db: Store, tx: Tx, env: Envelope, received: float) -> None:
    """A death takes a store offline unless its session is older than the last birth's, or it
    is another agent instance's than the one the store's sessions now count in."""
    current = "excluded.death_session >= stores.birth_session AND" \
              " (excluded.instance IS NULL OR stores.instance IS NULL" \
              "  OR excluded.instance = stores.instance)"
    tx.execute(
        "INSERT INTO stores (store, region, death_session, online, changed, last_seen, instance)"
        " VALUES (?, ?, ?, 0, ?, ?, ?) ON CONFLICT (store) DO UPDATE SET"
        f" changed = CASE WHEN {current} AND stores.online = 1 THEN excluded.changed"
        "            ELSE stores.changed END,"
        f" online = CASE WHEN {current} THEN 0 ELSE stores.online END,"
        f" death_session = CASE WHEN {current} THEN"
        f" {db.greatest}(stores.death_session, excluded.death_session)"
        "  ELSE stores.death_session END",
        (env.store, env.region, env.body["session"], received, received,
         env.body.get("instance")))


def _telemetry(tx: Tx, envs: Iterable[Envelope], received: float) -> None:
    """Keep each device's newest reading (by its own timestamp, clamped to its arrival)."""
    newest: dict[tuple[str, str], tuple[float, str, str, dict]] = {}
    norm: dict[str, tuple[float, str]] = {}  # a batch repeats its timestamps: each done once
    for env in envs:
        for r in env.body["readings"]:
            known = norm.get(r["ts"])
            if known is None:
                known = norm[r["ts"]] = (_clamped(r["ts"], received), _norm_ts(r["ts"]))
            key = (env.store, r["device"])
            if key not in newest or known >= newest[key][:2]:
                newest[key] = (*known, r)
    latest = [(store, device, r["kind"], ts, json.dumps(r.get("values", {})),
               int(bool(r.get("stale"))), r.get("reason"), at)
              for (store, device), (at, ts, r) in newest.items()]
    tx.executemany(
        "INSERT INTO devices (store, device, kind, ts, vals, stale, reason, reading_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store, device) DO UPDATE SET"
        " kind = excluded.kind, ts = excluded.ts, vals = excluded.vals, stale = excluded.stale,"
        " reason = excluded.reason, reading_at = excluded.reading_at"
        " WHERE devices.reading_at IS NULL OR excluded.reading_at > devices.reading_at"
        " OR (excluded.reading_at = devices.reading_at AND excluded.ts >= devices.ts)",
        latest)


def _scoring_errors(tx: Tx, envs: Iterable[Envelope], received: float) -> None:
    """Keep each scoring_errors event (checked field by field upstream) as one row."""
    tx.executemany(
        "INSERT INTO scoring_errors (id, store, at, total, new, reasons, errors, model)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        [(e.id, e.store, _clamped(e.ts, received), sum(e.body["total"].values()),
          sum(e.body["errors"].values()), json.dumps(e.body["total"], sort_keys=True),
          json.dumps(e.body["errors"], sort_keys=True), e.body.get("model")) for e in envs])


def scoring_errors(tx: Tx, stores: Sequence[str], since: float, until: float
                   ) -> tuple[int, dict[str, int]]:
    """Devices the stores' agents left without a model score in (since, until], by when their
    scoring_errors event was made: (how many, the same by reason).

    Each event says what its agent counted since its previous event (`errors`) and since its
    state database was made (`total`), by reason. A store's event in the window adds, for each
    reason, the larger of its `errors` and its growth of `total` over the store's event before
    it (so an event lost on the way still counts through the next one's total); after a total
    lower than the one before (a new state database) it adds its `errors`. An agent that sends
    no such event (older than it) adds nothing.
    """
    reasons: dict[str, int] = {}
    for i in range(0, len(stores), 500):  # bounded IN lists
        part = list(stores[i:i + 500])
        marks = ",".join("?" * len(part))
        tx.execute(f"SELECT store, total, reasons, errors FROM scoring_errors WHERE store IN"
                   f" ({marks}) AND at > ? AND at <= ? ORDER BY store, at, id",
                   (*part, since, until))
        inside = tx.fetchall()
        tx.execute(f"SELECT s.store, s.total, s.reasons FROM scoring_errors s JOIN (SELECT store,"
                   f" MAX(at) AS at FROM scoring_errors WHERE store IN ({marks}) AND at <= ?"
                   f" GROUP BY store) p ON s.store = p.store AND s.at = p.at", (*part, since))
        before = {store: (int(total), json.loads(why)) for store, total, why in tx.fetchall()}
        for store, total, why, new in inside:
            total, now_by, new_by = int(total), json.loads(why), json.loads(new)
            prev = before.get(store)
            for reason in set(now_by) | set(new_by):
                add = int(new_by.get(reason, 0))
                if prev is not None and total >= prev[0]:
                    add = max(add, int(now_by.get(reason, 0)) - int(prev[1].get(reason, 0)))
                if add > 0:
                    reasons[reason] = reasons.get(reason, 0) + add
            before[store] = (total, now_by)
    return sum(reasons.values()), dict(sorted(reasons.items()))


SCORING_WINDOW_S = 24 * 3600.0


def store_scoring_errors(tx: Tx, store: str, now: float) -> dict[str, Any]:
    """A store's scoring errors for its view (`edge-hub store`, GET /v1/stores/{store}).

    `total` and `by_reason`: what its agent counted since its state database was made, as its
    latest scoring_errors event said; `last_24h` and `last_24h_by_reason`: what it added in
    the 24 h before `now` (scoring_errors(), the rollout gate's count); `model` and `reported`:
    that latest event's model and time. All zero, empty and null for a store that sent none.
    """
    tx.execute("SELECT total, reasons, model, at FROM scoring_errors WHERE store = ?"
               " ORDER BY at DESC, id DESC LIMIT 1", (store,))
    row = tx.fetchone()
    recent, recent_by = scoring_errors(tx, [store], now - SCORING_WINDOW_S, now)
    by_reason = {k: int(v) for k, v in sorted(json.loads(row[1]).items())} if row else {}
    return {"total": int(row[0]) if row else 0, "by_reason": by_reason, "last_24h": recent,
            "last_24h_by_reason": recent_by, "model": row[2] if row else None,
            "reported": float(row[3]) if row else None}


def prune_scoring_errors(tx: Tx, before: float, limit: int) -> int:
    """Delete up to `limit` scoring_errors rows made before `before` (retention)."""
    return _delete_table_some(tx, "scoring_errors", "at < ?", (before,), limit)


def _delete_table_some(tx: Tx, table: str, where: str, params: tuple, limit: int) -> int:
    if limit <= 0:
        return 0
    tx.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {where}"
               " LIMIT ?)", (*params, limit))
    return max(0, tx.rowcount)


def _decisions(tx: Tx, envs: Iterable[Envelope], received: float) -> None:
    """Keep each device's newest decision (by its timestamp, clamped to its arrival)."""
    latest: dict[tuple[str, str], tuple] = {}
    for env in envs:
        b = env.body
        ts = _norm_ts(b["ts"])
        at = _clamped(b["ts"], received)
        key = (env.store, b["device"])
        if key not in latest or (at, ts) >= (latest[key][8], latest[key][6]):
            latest[key] = (env.store, b["device"], b["decision"], b.get("score"),
                           b.get("threshold"), b.get("model"), ts, json.dumps(b["explanation"]),
                           at)
    tx.executemany(
        "INSERT INTO devices (store, device, decision, score, threshold, model, decision_ts,"
        " explanation, decision_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (store, device) DO UPDATE SET"
        " decision = excluded.decision, score = excluded.score, threshold = excluded.threshold,"
        " model = excluded.model, decision_ts = excluded.decision_ts,"
        " explanation = excluded.explanation, decision_at = excluded.decision_at"
        " WHERE devices.decision_at IS NULL OR excluded.decision_at > devices.decision_at"
        " OR (excluded.decision_at = devices.decision_at"
        "     AND excluded.decision_ts >= devices.decision_ts)",
        latest.values())


# Views for the CLI ---------------------------------------------------------------------------

def _store_row(r: tuple, now: float) -> dict[str, Any]:
    (store, region, online, changed, last_seen, birth_s, death_s, agent, first, mx, received,
     devices, at_risk, open_alerts, instance, unseen) = r
    span = 0 if first is None else mx - first + 1
    # A store heard from only through outbox messages (its birth came before this hub
    # started, and was not retained) has an unknown session state: None, not offline.
    known = birth_s >= 0 or death_s >= 0
    return {"store": store, "region": region, "online": bool(online) if known else None,
            "since": changed, "since_age_s": None if changed is None else round(now - changed, 1),
            "last_seen": last_seen, "session": max(birth_s, death_s), "instance": instance,
            "unseen_since": unseen,
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
    " (SELECT COUNT(*) FROM alerts a WHERE a.store = s.store AND a.state = 'raised'),"
    " s.instance, s.unseen"
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
        # Gaps since the seq accounting (re)started; `seq - prev > 1`, not `seq > prev + 1`:
        # prev + 1 overflows a BIGINT when an old database holds seq 2^63-1 twice.
        tx.execute(
            "SELECT prev + 1, seq - 1 FROM (SELECT seq, LAG(seq) OVER (ORDER BY seq) AS prev"
            " FROM messages WHERE store = ? AND kind NOT IN ('birth', 'death')"
            " AND received >= COALESCE((SELECT seq_since FROM stores WHERE store = ?), 0)) g"
            " WHERE seq - prev > 1 ORDER BY seq LIMIT 50", (store, store))
        out["gaps"] = [[a, b] for a, b in tx.fetchall()]
        out["scoring_errors"] = store_scoring_errors(tx, store, now)
    out["devices"] = devices(db, store=store)
    if open_alerts is not None:
        out["alerts"] = open_alerts(db, store)
    return out


def forget_session(db: Store, store: str, clock: Callable[[], float] = time.time,
                   actor: Any = None, source: str | None = None) -> dict:
    """Forget a store's sessions, agent instance and seq accounting (`edge-hub store STORE
    --forget-session`): its next birth, whatever its session, brings it online. Recorded in
    the audit log as `store.forget_session` by `actor` (hub.domains.access.Actor) in the same
    transaction. Returns the state forgotten."""
    keys = ("birth_session", "death_session", "instance", "first_seq", "max_seq", "received")
    with db.transaction() as tx:
        tx.execute("SELECT birth_session, death_session, instance, first_seq, max_seq, received"
                   " FROM stores WHERE store = ?", (store,))
        row = tx.fetchone()
        if row is None:
            raise NotFound(f"unknown store {store!r}")
        now = clock()
        tx.execute("UPDATE stores SET birth_session = -1, death_session = -1, instance = NULL,"
                   " birth_at = NULL, online = 0, changed = ?, first_seq = NULL,"
                   " max_seq = NULL, received = 0, seq_since = ? WHERE store = ?",
                   (now, now, store))
        if actor is not None:
            audit.record(tx, clock, actor, "store.forget_session", f"store:{store}",
                         {"store": store, "forgotten": dict(zip(keys, row))}, source)
    keys = ("birth_session", "death_session", "instance", "first_seq", "max_seq", "received")
    return dict(zip(keys, row))


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


# Retention ------------------------------------------------------------------------------------

def prune_messages(tx: Tx, kinds_before: dict[str, float], other_before: float | None,
                   limit: int) -> int:
    """Delete up to `limit` stored messages older (by arrival) than their kind's cut-off
    (`kinds_before`: kind -> epoch; the rest: `other_before`, None keeps them); return how many.

    The ids go with them: a redelivery older than the retention would be stored again, so keep
    messages longer than the broker keeps a hub's session (7 days by default).
    """
    removed = 0
    for kind, before in sorted(kinds_before.items()):
        removed += _delete_some(tx, "messages WHERE kind = ? AND received < ?", (kind, before),
                                limit - removed)
    if other_before is not None and removed < limit:
        known = sorted(kinds_before)
        marks = ", ".join("?" for _ in known) or "''"
        removed += _delete_some(tx, f"messages WHERE kind NOT IN ({marks}) AND received < ?",
                                (*known, other_before), limit - removed)
    return removed


def _delete_some(tx: Tx, where: str, params: tuple, limit: int) -> int:
    if limit <= 0:
        return 0
    tx.execute(f"DELETE FROM messages WHERE id IN (SELECT id FROM {where} LIMIT ?)",
               (*params, limit))
    return max(0, tx.rowcount)


def mark_unseen(tx: Tx, before: float, now: float) -> int:
    """Mark stores not heard from since `before` as unseen (from now); return how many."""
    tx.execute("UPDATE stores SET unseen = ? WHERE unseen IS NULL"
               " AND COALESCE(last_seen, 0) < ?", (now, before))
    return max(0, tx.rowcount)


def unseen_stores(tx: Tx, before: float) -> list[tuple[str, str, float | None]]:
    """(store, region, last seen) of the stores not heard from since `before`."""
    tx.execute("SELECT store, region, last_seen FROM stores WHERE 1 = 1"
               " AND COALESCE(last_seen, 0) < ? ORDER BY region, store", (before,))
    return tx.fetchall()


def drop_stores(tx: Tx, stores: Sequence[str]) -> None:
    """Remove stores with their devices and messages (the fleet's part of a prune)."""
    for table in ("messages", "devices", "scoring_errors", "stores"):
        tx.executemany(f"DELETE FROM {table} WHERE store = ?", [(s,) for s in stores])
