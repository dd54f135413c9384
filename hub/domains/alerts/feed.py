"""Alert routing: every alert raised or cleared is republished once on the regional feed.

Each transition gets a feed row in the ingest transaction (its key hashes store, alert key,
state and since, so a replayed or re-raised transition finds the row already there: never sent
twice, across hub restarts). The Router then claims pending rows, holds back a flapping alert
(more than `max_flaps` transitions within `window_s`) until it has been stable for `stable_s`,
collapses what was held to its latest state, and skips a transition whose state is the one
last sent for that alert. A collapsed flap is the exception: it is sent with its `flapping`
marker even in the state last sent, so the feed learns that the alert flapped however ingest's
batches fell (docs/protocol.md, "Flapping"); only a flap that ends cleared before the feed ever
showed the alert raised stays quiet. A row is `sent` after the broker's PUBACK; a claim whose worker died
before the PUBACK is retried after `reclaim_s` (at least once; the feed's `id` lets a consumer
drop the rare repeat).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from edge_protocol import topics
from edge_protocol.envelope import Envelope
from edge_protocol.errors import ProtocolError
from edge_protocol.timestamps import normalize_ts, parse_ts
from hub.domains.alerts.instances import alert_id
from hub.store import Store, Tx

FEED_VERSION = 1


@dataclass(frozen=True)
class FlapPolicy:
    """When an alert counts as flapping and how long it must be stable to be sent."""

    max_flaps: int = 4
    window_s: float = 300.0
    stable_s: float = 60.0
    reclaim_s: float = 30.0


def feed_key(store: str, alert: str, state: str, since: str) -> str:
    return hashlib.sha1(f"{store}\0{alert}\0{state}\0{since}".encode()).hexdigest()[:20]


REGIONAL_FAMILIES = ("failed", "predicted_failure")


def regional(body: dict) -> bool:
    """True when an alert belongs on the regional feed (docs/alerts.md).

    The feed carries what a regional manager must act on: `failed`, `predicted_failure` and
    escalated attention. Store-level attention (paper, cover, toner...) stays in the store's
    views (`edge-hub alerts`, `store`). An alert without `family` comes from an agent older
    than the families and goes on the feed as it always did.
    """
    family = body.get("family")
    if family is None:
        return True
    return family in REGIONAL_FAMILIES or body.get("escalated") is True


def record(tx: Tx, transitions: Sequence[Envelope], received: float) -> int:
    """Add a pending feed row for each regional transition not seen before; return how many
    were offered."""
    rows = []
    for env in transitions:
        b = env.body
        if not regional(b):
            continue
        try:
            at = min(parse_ts(b["ts"]).timestamp(), received)
        except ProtocolError:  # validated upstream; a bad ts would only lose its own time
            at = received
        key = feed_key(env.store, b["alert"], b["state"], b["since"])
        payload = {"v": FEED_VERSION, "id": key,
                   "alert_id": alert_id(env.store, b["alert"], _norm(b["since"])),
                   "store": env.store, "region": env.region, "device": b["device"],
                   "alert": b["alert"], "what": b["what"], "state": b["state"],
                   "severity": b["severity"], "since": b["since"], "ts": b["ts"],
                   "seq": env.seq, "explanation": list(b["explanation"]),
                   "decision": b.get("decision"), "flapping": None}
        for extra in ("family", "audience", "escalated", "supersedes"):
            if b.get(extra) is not None:
                payload[extra] = b[extra]
        rows.append((key, env.store, env.region, b["alert"], b["state"], at, env.seq,
                     json.dumps(payload, separators=(",", ":"))))
    tx.executemany("INSERT INTO feed (key, store, region, alert, state, at, seq, status,"
                   " payload) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)"
                   " ON CONFLICT (key) DO NOTHING", rows)
    return len(rows)


def _norm(ts: str) -> str:
    return normalize_ts(ts)


@dataclass(frozen=True)
class Outgoing:
    """One feed message claimed for publishing."""

    key: str
    topic: str
    payload: bytes


class Router:
    """Decides what the feed sends; the caller publishes what step() returns."""

    def __init__(self, db: Store, owner: str, policy: FlapPolicy = FlapPolicy(),
                 prefix: str = topics.DEFAULT_PREFIX, clock: Callable[[], float] = time.time):
        self.db = db
        self.owner = owner
        self.policy = policy
        self.prefix = prefix
        self.clock = clock
        self.held = 0

    def step(self, now: float | None = None) -> list[Outgoing]:
        """Claim what can be sent now; mark superseded what never needs sending."""
        now = self.clock() if now is None else now
        p = self.policy
        out: list[Outgoing] = []
        held = 0
        with self.db.transaction() as tx:
            self.db.lock_router(tx)
            tx.execute("UPDATE feed SET status = 'pending', owner = NULL"
                       " WHERE status = 'sending' AND claimed < ?", (now - p.reclaim_s,))
            tx.execute("SELECT key, store, alert, state, at, payload FROM feed"
                       " WHERE status = 'pending' ORDER BY store, alert, seq")
            groups: dict[tuple[str, str], list[tuple]] = {}
            for row in tx.fetchall():
                groups.setdefault((row[1], row[2]), []).append(row)
            for (store, alert), rows in groups.items():
                latest = max(r[4] for r in rows)
                tx.execute("SELECT COUNT(*) FROM feed WHERE store = ? AND alert = ? AND at >= ?",
                           (store, alert, latest - p.window_s))
                transitions = tx.fetchone()[0]
                flapping = transitions > p.max_flaps
                if flapping and now - latest < p.stable_s:
                    held += len(rows)
                    continue
                tx.execute("SELECT state FROM feed WHERE store = ? AND alert = ?"
                           " AND status IN ('sent', 'sending') ORDER BY seq DESC LIMIT 1",
                           (store, alert))
                last = tx.fetchone()
                last_state = last[0] if last else None
                if flapping:
                    superseded, send = rows[:-1], rows[-1:]
                else:
                    superseded, send = [], rows
                for key, _s, _a, state, _at, payload in send:
                    # A collapsed flap is sent even in the state last sent: the feed learns
                    # the alert flapped, wherever ingest's batch boundaries fell. Only a flap
                    # that ends cleared and was never shown raised stays quiet.
                    if flapping:
                        quiet = last_state is None and state == "cleared"
                    else:
                        quiet = state == last_state
                    if quiet:
                        superseded.append((key,))
                        continue
                    body = json.loads(payload)
                    if flapping:
                        body["flapping"] = {"transitions": transitions, "window_s": p.window_s}
                    body["hub_ts"] = round(now, 3)
                    out.append(Outgoing(key, topics.alert_feed_topic(body["region"], store,
                                                                   self.prefix),
                                        json.dumps(body, separators=(",", ":")).encode()))
                    last_state = state
                tx.executemany("UPDATE feed SET status = 'superseded' WHERE key = ?",
                               [(r[0],) for r in superseded])
            tx.executemany("UPDATE feed SET status = 'sending', owner = ?, claimed = ?"
                           " WHERE key = ?", [(self.owner, now, o.key) for o in out])
        self.held = held
        return out

    def mark_sent(self, keys: Sequence[str], now: float | None = None) -> None:
        """Record the broker's PUBACK for feed messages."""
        if not keys:
            return
        now = self.clock() if now is None else now
        with self.db.transaction() as tx:
            tx.executemany("UPDATE feed SET status = 'sent', sent = ? WHERE key = ?",
                           [(now, k) for k in keys])

    def counts(self) -> dict[str, int]:
        """Feed rows by status."""
        with self.db.read() as tx:
            tx.execute("SELECT status, COUNT(*) FROM feed GROUP BY status")
            return dict(tx.fetchall())


def prune(tx: Tx, before: float, limit: int) -> int:
    """Delete up to `limit` feed rows sent or superseded before `before` (epoch); return how
    many. A pruned row's key is forgotten: keep them longer than a store replays (days)."""
    tx.execute("DELETE FROM feed WHERE key IN (SELECT key FROM feed WHERE at < ?"
               " AND status IN ('sent', 'superseded') LIMIT ?)", (before, limit))
    return max(0, tx.rowcount)


def drop_stores(tx: Tx, stores: Sequence[str]) -> None:
    """Remove stores' alert instances and feed rows (the alerts' part of a prune)."""
    for table in ("feed", "alerts"):
        tx.executemany(f"DELETE FROM {table} WHERE store = ?", [(s,) for s in stores])
