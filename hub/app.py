"""The hub's one composition root: every domain's migrations, the store, ingest and the worker.

    open_store(url, create)   the database with every domain's migrations applied (or checked)
    Hub                       one worker: ingest + alert routing + the retained hub/state
    serve()                   `edge-hub serve`: run one worker until SIGTERM
    store_detail()            the fleet's store view with its open alerts (two domains joined)

Cross-domain wiring happens here and nowhere else; the CLI and the API sit on top of it.
"""

from __future__ import annotations

import gc
import json
import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from edge_common.output import escape
from edge_protocol import envelope, topics
from edge_protocol.errors import ProtocolError
from edge_protocol.timestamps import format_ts, utcnow
from hub import store as _store
from hub.domains import alerts, audit, fleet
from hub.domains.access import Actor, Scope, authorize, scope
from hub.domains.access.schema import MIGRATIONS as _ACCESS
from hub.domains.alerts.schema import MIGRATIONS as _ALERTS
from hub.domains.approvals.schema import MIGRATIONS as _APPROVALS
from hub.domains.audit.schema import MIGRATIONS as _AUDIT
from hub.domains.commands.schema import MIGRATIONS as _COMMANDS
from hub.domains.fleet.schema import MIGRATIONS as _FLEET
from hub.domains.flags.schema import MIGRATIONS as _FLAGS
from hub.domains.quarantine.schema import MIGRATIONS as _QUARANTINE
from hub.domains.rollout.schema import MIGRATIONS as _ROLLOUT
from hub.domains.tickets.schema import MIGRATIONS as _TICKETS
from hub.errors import HubError, NotFound, StoreError
from hub.ingest import Ingest, Settings
from hub.store import Store

log = logging.getLogger("hub.serve")

# Every domain's migrations; a new domain appends its schema.MIGRATIONS here.
ALL_MIGRATIONS = (*_FLEET, *_ALERTS, *_ACCESS, *_AUDIT, *_QUARANTINE, *_TICKETS, *_APPROVALS,
                  *_COMMANDS, *_FLAGS, *_ROLLOUT)


def open_store(url: str, *, create: bool = True) -> Store:
    """Open the hub database; with create, make it and apply every domain's migrations, else
    refuse one whose schema is newer than this hub (hub.store.SchemaTooNew)."""
    return _store.open_store(url, create=create, migrations=ALL_MIGRATIONS)


def store_detail(db: Store, store: str) -> dict[str, Any]:
    """One store: fleet state, devices, seq gaps, its open alerts, and its flags, bundles and
    command refusals (hub.control)."""
    from hub.control import store_control

    detail = fleet.store_detail(db, store, open_alerts=alerts.open_alerts)
    detail.update(store_control(db, store))
    return detail

@dataclass(frozen=True)
class Retention:
    """How long the hub keeps what stores sent (seconds; None keeps it forever), and how much
    one background step may delete (a bounded batch per table, so ingest never waits long)."""

    readings_s: float | None = 7 * 86400.0     # telemetry messages
    messages_s: float | None = 30 * 86400.0    # every other kind of message
    feed_s: float | None = 30 * 86400.0        # alert feed rows sent or superseded
    unseen_s: float | None = 30 * 86400.0      # a store not heard from is marked unseen
    batch: int = 5000
    every_s: float = 60.0


def retention_step(db: Store, policy: Retention, clock=time.time) -> dict[str, int]:
    """One bounded round of retention (`serve` runs one every `policy.every_s`): old
    messages and readings (and scoring_errors rows, as old as the messages), old feed rows,
    stores unseen for long marked. Returns the counts;
    a count equal to `policy.batch` means more is left for the next round."""
    now = clock()
    done = {"messages": 0, "feed": 0, "unseen": 0, "scoring_errors": 0}
    with db.transaction() as tx:
        kinds = {} if policy.readings_s is None else {"telemetry": now - policy.readings_s}
        other = None if policy.messages_s is None else now - policy.messages_s
        if kinds or other is not None:
            done["messages"] = fleet.prune_messages(tx, kinds, other, policy.batch)
        if other is not None:  # the scoring_errors events' rows go with the messages
            done["scoring_errors"] = fleet.prune_scoring_errors(tx, other, policy.batch)
        if policy.feed_s is not None:
            done["feed"] = alerts.prune(tx, now - policy.feed_s, policy.batch)
        if policy.unseen_s is not None:
            done["unseen"] = fleet.mark_unseen(tx, now - policy.unseen_s, now)
    return done


def prune_stores(db: Store, unseen_s: float, dry_run: bool = False,
                 clock=time.time, actor: Any = None,
                 source: str | None = None) -> list[dict[str, Any]]:
    """Remove the stores not heard from for `unseen_s` seconds with their devices, messages,
    alerts and feed rows (`edge-hub stores prune`); return what was (or would be) removed.
    Recorded in the audit log as `stores.prune` by `actor`, in the same transaction."""
    with db.transaction() as tx:
        gone = fleet.unseen_stores(tx, clock() - unseen_s)
        names = [g[0] for g in gone]
        if names and not dry_run:
            fleet.drop_stores(tx, names)
            alerts.drop_stores(tx, names)
            if actor is not None:
                audit.record(tx, clock, actor, "stores.prune", "stores",
                             {"stores": names[:1000], "count": len(names),
                              "unseen_s": unseen_s}, source)
    return [{"store": s, "region": r, "last_seen": seen} for s, r, seen in gone]


# The collector's thresholds for a hub worker (tune_gc): CPython's default (700, 10, 10) runs a
# young collection every 700 container allocations, and a hub worker makes about eight a
# message (orjson's dicts and lists, the envelope, the hand-over item), so a flood paid for a
# collection every ~90 messages, each scanning the batches waiting for the writer: 12% of a
# worker's CPU on bench/hub_ingest.py's drain. Nearly everything a message allocates is freed
# by its reference count; the cycle collector only has to run now and then.
GC_THRESHOLDS = (20_000, 50, 100)


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Tune the cycle collector for a long-running worker (`edge-hub serve` calls it once its
    modules are loaded): what exists now moves to the permanent generation (gc.freeze, so
    collections no longer walk it), and young collections run every 20,000 allocations."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


def sd_notify(*fields: str) -> bool:
    """systemd's notify protocol without libsystemd (READY=1, WATCHDOG=1, STATUS=...): one
    datagram to $NOTIFY_SOCKET; nothing outside systemd. Never blocks, never raises."""
    import os

    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto("\n".join(fields).encode("utf-8", "replace"), address)
        return True
    except (OSError, ValueError):
        return False


STATE_EVERY_S = 1.0  # the state answers births at most this often (it goes to every store)
HOLD_REASON = "database"  # the reason a worker that cannot commit gives (edge_protocol)


def state_payload(online: bool, worker: str, reason: str | None = None) -> bytes:
    return envelope.encode_hub_state(online, format_ts(utcnow()), worker, reason)


def default_client_id() -> str:
    return f"edge-hub-{socket.gethostname()}"[:64]


class Hub:
    """One worker: ingest + alert routing + the retained hub/state message.

    The state says online while the worker can commit. Its writer not committing for
    `settings.hold_after_s` (the database unreachable, every commit failing, or one commit
    hanging) makes it say `online: false` with reason "database" (the hold): stores stop
    sending and keep their rows, rather than fill the broker's bounded queue for this worker
    (past it Mosquitto drops what it acknowledged). Its first commit after that says online.

    Several workers share the one retained state. The rule (docs/sync.md, "Several workers"):
    a hold is never overridden by a healthy worker's answer to a birth or to another's hold;
    a held worker says its hold again whenever it sees another worker say online (or leave);
    a worker that commits again says online only if the latest state it saw is not another
    worker's hold (that worker will say online when it commits), and, if its own hold shows up
    after it said nothing, says online then. Whatever the order, while any worker holds the
    last word is a hold, and once none does it is online. Only a (re)connection says online
    over another's hold: a live holder answers it at once, and a holder that died without its
    Will (a broker crash) must not hold the stores for ever.
    """

    def __init__(self, db: Store, settings: Settings):
        self.db = db
        self.settings = settings
        self.state_topic = topics.hub_state_topic(settings.prefix)
        self.ingest = Ingest(db, settings,
                             will=(self.state_topic, state_payload(False, settings.client_id)),
                             on_connected=self._connected, on_birth=self._birth_seen,
                             on_ready=self._ready)
        self.ingest.client.message_callback_add(self.state_topic, self._on_state)
        self._state_lock = threading.Lock()
        self._state_at = float("-inf")  # when our state was last published (monotonic)
        self._state_timer: threading.Timer | None = None
        self._stopping = False
        self.held = False  # this worker says "not accepting": its writer cannot commit
        self._held_at = 0  # the writer's commit count when the hold began
        self._seen: dict[str, Any] = {}  # the latest hub state the broker passed us
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _state_now(self) -> bytes:
        if self.held:
            return state_payload(False, self.settings.client_id, HOLD_REASON)
        return state_payload(True, self.settings.client_id)

    def _other_holds(self) -> bool:
        seen = self._seen
        return (seen.get("online") is False and seen.get("reason") == HOLD_REASON
                and seen.get("worker") != self.settings.client_id)

    def _publish_state(self, lane_too: bool = False) -> None:
        payload = self._state_now()
        self.ingest.client.publish(self.state_topic, payload, qos=1, retain=True)
        if lane_too and self.ingest.lane is not None:
            # A hold also goes out on the priority lane: the bulk lane's network thread may be
            # waiting for room in the hand-over (the writer stalled, its bytes bound reached)
            # and send nothing until the writer commits. Should this copy land after a later
            # online of ours, our own hold seen while released says online again (_on_state).
            self.ingest.lane.publish(self.state_topic, payload, qos=1, retain=True)

    def _connected(self, ingest: Ingest) -> None:
        """The bulk lane (re)connected: watch the hub's state topic on it. (Subscribed here,
        before the stream's SUBACK and so before READY: the embedded amqtt broker once failed
        a store's session, "dictionary changed size during iteration", subscribed later.)"""
        ingest.client.subscribe(self.state_topic, qos=1)

    def _ready(self, ingest: Ingest) -> None:
        """Every lane's subscription acknowledged, on each (re)connection: stores may send now
        (or, held, not). Said before that, what a store sent ahead of the priority lane's
        SUBACK reached the bulk lane alone and was overtaken by what followed it."""
        self._say_state(over_hold=True)

    def _say_state(self, over_hold: bool = False) -> None:
        with self._state_lock:
            if self._stopping:
                return
            self._state_at = time.monotonic()
            self._state_timer = None
            if not self.held and not over_hold and self._other_holds():
                return  # another worker cannot commit: its hold stands
            self._publish_state()

    def _birth_seen(self) -> None:
        """A store connected: say our state again, live, so it knows we are subscribed.

        After a broker crash the retained "online" is stale and the broker drops what stores
        send until this worker subscribes again; a store therefore sends history only after a
        hub state delivered live on its connection (docs/protocol.md). Every store gets this
        message, so it goes out at most once a second however many births arrive.
        """
        with self._state_lock:
            if self._stopping or self._state_timer is not None:
                return  # one is due already
            delay = self._state_at + STATE_EVERY_S - time.monotonic()
            if delay > 0:
                self._state_timer = threading.Timer(delay, self._say_state)
                self._state_timer.daemon = True
                self._state_timer.start()
                return
        self._say_state()

    def _on_state(self, client, userdata, msg) -> None:
        # Several workers share one retained state (the rule in the class's docstring).
        try:
            state = envelope.decode_hub_state(msg.payload)
        except ProtocolError:
            state = {}
        if msg.qos:
            client.ack(msg.mid, msg.qos)
        if not isinstance(state, dict):
            state = {}
        with self._state_lock:
            self._seen = state
            if self._stopping or self.ingest._stop.is_set():
                return
            ours = state.get("worker") == self.settings.client_id
            hold = state.get("online") is False and state.get("reason") == HOLD_REASON
            if ours:
                if hold and not self.held:
                    self._publish_state()  # our hold, seen after we commit again: online
                return
            if state.get("online") is False and not hold:
                self._publish_state()  # another worker's Will or stop: say ours
            elif state.get("online") is True and self.held:
                self._publish_state()  # another says online while this one cannot commit

    def _watch_commits(self) -> None:
        """The hold: say not accepting once the writer has not committed for hold_after_s,
        and online again at its next commit."""
        after = self.settings.hold_after_s
        while not self._watch_stop.wait(max(0.01, min(0.25, after / 4))):
            if not self.held:
                # The count before the stall: a commit between the two reads releases the
                # hold at the next look (held on a later count, with the stores held and
                # nothing left to commit, it would never be released).
                mark = self.ingest.committed
                stalled = self.ingest.stalled_s()
                if stalled >= after:
                    self._hold(stalled, mark)
            elif self.ingest.committed != self._held_at:
                self._release()

    def _hold(self, stalled: float, mark: int) -> None:
        with self._state_lock:
            if self._stopping or self.held:
                return
            self.held = True
            self._held_at = mark
            self.ingest.counts["holds"] += 1
            self._publish_state(lane_too=True)
        log.error("cannot commit for %.1f s: the hub's state says not accepting (reason "
                  "database); stores keep their rows until a commit goes through", stalled,
                  extra={"worker": self.settings.client_id, "holds": self.ingest.counts["holds"]})

    def _release(self) -> None:
        with self._state_lock:
            if self._stopping or not self.held:
                return
            self.held = False
            other = self._other_holds()
            if not other:
                self._publish_state()
        log.warning("commits go through again: the hub's state says online"
                    if not other else "commits go through again; another worker's hold stands",
                    extra={"worker": self.settings.client_id})

    def start(self) -> "Hub":
        self.ingest.start()
        self._watcher = threading.Thread(target=self._watch_commits, name="hub-hold",
                                         daemon=True)
        self._watcher.start()
        return self

    def stop(self) -> None:
        """Say offline (retained), disconnect cleanly and commit what was received."""
        self._watch_stop.set()
        with self._state_lock:
            self._stopping = True  # no "online" may follow the "offline" below
            if self._state_timer is not None:
                self._state_timer.cancel()
        try:
            info = self.ingest.client.publish(self.state_topic,
                                              state_payload(False, self.settings.client_id),
                                              qos=1, retain=True)
            info.wait_for_publish(2)
        except (RuntimeError, ValueError):
            pass  # not connected: the Will says offline for us
        self.ingest.stop()
        if self._watcher is not None:
            self._watcher.join(2)


def serve(db: Store, settings: Settings, embedded: bool = False,
          stats_every: float = 30.0, services: Sequence[Any] = (),
          checkpoints: "Checkpointer | None" = None,
          retention: Retention | None = Retention(), ring: Any = None) -> int:
    """Run until SIGTERM or SIGINT; return the exit code.

    `services` are started after the worker and stopped before it (the HTTP API of
    `serve --api`: objects with start() and stop()). `checkpoints` signs the audit log's head
    at its interval; its checkpoints are also published retained on `checkpoints.topic`.
    `retention` prunes old rows in bounded rounds (docs/hub-defences.md).
    """
    broker = None
    if embedded:
        from hub.bus.broker import EmbeddedBroker

        broker = EmbeddedBroker(settings.host, settings.port).start()
        log.info("embedded broker: MQTT 3.1.1, plain subscription, one worker "
                 "(amqtt has no shared subscriptions)")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    hub = Hub(db, settings)
    commander = None
    tickets = None
    try:
        hub.start()
        from hub.control import start_commander

        # Commands, flags, bundles; rollouts too when the worker holds the key ring.
        commander = start_commander(db, settings, ring)
    except BaseException:
        db.close()
        if broker:
            broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise
    started: list[Any] = []
    if settings.tickets is not None and settings.tickets.enabled:
        # Ticket delivery and approvals: a thread of this worker on its own connection.
        from hub.ticketing import TicketService

        def publish(topic: str, payload: bytes) -> None:
            hub.ingest.feed_client.publish(topic, payload, qos=1)
        tickets = TicketService(open_store(db.url, create=False), settings.tickets,
                                settings.client_id, publish, settings.prefix).start()
    try:
        for service in services:
            service.start()
            started.append(service)
        if checkpoints is not None and checkpoints.topic:
            topic = checkpoints.topic
            checkpoints.publish = lambda payload: hub.ingest.client.publish(
                topic, payload, qos=1, retain=True)
        log.info("hub started", extra={"worker": settings.client_id, "db": _safe(db.url),
                                       "subscription": hub.ingest.topic_filter})
        while not (stop.is_set() or hub.ingest.failed.is_set()):
            if hub.ingest.ready.wait(0.1):
                print(ready_line(settings.client_id), flush=True)
                break
        last = time.monotonic()
        pruned_at = float("-inf")
        # Under systemd (Type=notify, WatchdogSec): ready once subscribed, then a ping every
        # half second while the writer thread lives; a worker that failed exits instead.
        sd_notify("READY=1", f"STATUS=ingesting as {settings.client_id}")
        while not stop.wait(0.5):
            if hub.ingest.failed.is_set() or (tickets and tickets.failed.is_set()):
                log.error("hub worker failed; exiting for its supervisor to restart it")
                return 1
            if hub.ingest.writer is not None and hub.ingest.writer.is_alive():
                sd_notify("WATCHDOG=1")
            if checkpoints is not None:
                checkpoints.tick()
            if time.monotonic() - last >= stats_every:
                last = time.monotonic()
                log.info("hub stats", extra=hub.ingest.stats())
            if retention is not None and time.monotonic() - pruned_at >= retention.every_s:
                pruned_at = time.monotonic()
                try:
                    done = retention_step(db, retention)
                except StoreError as err:  # the writer's retry and give-up decide for the db
                    log.warning("retention failed; will try again", extra={"error": str(err)})
                else:
                    if any(done.values()):
                        log.info("retention", extra=done)
                        if max(done.values()) >= retention.batch:
                            pruned_at = float("-inf")  # more is left: the next round soon
    finally:
        sd_notify("STOPPING=1")
        for service in reversed(started):
            service.stop()
        if tickets is not None:
            tickets.stop()
            tickets.db.close()
            log.info("ticket delivery stopped", extra=tickets.stats())
        if commander is not None:
            commander.stop()
        hub.stop()
        if broker:
            broker.stop()
        log.info("hub stopped", extra=hub.ingest.stats())
        db.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def ready_line(worker: str) -> str:
    """The one line `edge-hub serve` prints on stdout once every lane's subscription is
    acknowledged, so what stores send from then on reaches this worker (docs/architecture.md,
    "Readiness"): `READY edge-hub worker=<client id>`. Tests and supervisors wait for it."""
    return f"READY edge-hub worker={escape(worker)}"


def _safe(url: str) -> str:
    """A database URL without its password, for logs."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}@{host}"
    return url



# Scoped views: what the API serves and the CLI prints with --db, filtered by the caller's role
# and scope (hub.domains.access). Cross-domain (fleet, alerts, audit), so they live here.
# The fleet summary is aggregated in the database: a chain's 10,000 stores cost a GROUP BY and
# the rows of what needs attention, not a query a store.


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


def _in(tx, column: str, values: list[str]) -> tuple[str, list[Any]]:
    """`column` among `values`: one array parameter on PostgreSQL (one plan, however many
    values), an IN list on SQLite (whose statements take up to 32,766 parameters)."""
    if getattr(tx, "placeholder", "?") == "%s":
        return f"{column} = ANY(?)", [list(values)]
    return f"{column} IN ({', '.join('?' for _ in values)})", list(values)


def _states(tx, where: str, params: list[Any], risky: set[tuple[str, str]],
            raised: list[tuple], names: list[str] | None = None) -> list[dict[str, Any]]:
    """Store rows (already selected by `where`) with their devices, risk and alerts."""
    tx.execute(_STORE_COLS + " WHERE 1 = 1" + where + " ORDER BY s.region, s.store", params)
    stores = tx.fetchall()
    # Devices a store: one grouped query over the same stores (not a query a store); for
    # stores named in a list, through the devices' primary key.
    if names is not None:
        clause, values = _in(tx, "store", names)
        tx.execute(f"SELECT store, COUNT(*) FROM devices WHERE {clause} GROUP BY store", values)
    else:
        tx.execute("SELECT d.store, COUNT(*) FROM devices d JOIN stores s ON s.store = d.store"
                   " WHERE 1 = 1" + where + " GROUP BY d.store", params)
    counts: dict[str, int] = dict(tx.fetchall())
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


def fleet_summary(db, actor: Actor, *, region: str | None = None, all_stores: bool = False,
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
                   [*fleet.AT_RISK, *params])
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
        else:  # only the stores needing attention, by name
            wanted = sorted(attention, key=lambda st: (region_of[st], st))
            shown = len(wanted)
            wanted = wanted[:limit]
            listed = []
            if wanted:
                inside = set(wanted)
                clause, names = _in(tx, "s.store", wanted)
                listed = _states(tx, " AND " + clause, names, risky,
                                 [a for a in raised if a[0] in inside], wanted)
    ordered = [regions[name] for name in sorted(regions)]
    total = {k: sum(r[k] for r in ordered) for k in keys}
    out = {"total": total, "regions": ordered, "stores": listed,
           "listed": "all" if all_stores else "attention", "truncated": shown > len(listed),
           "region": region}
    if cache is not None:
        cache.put(key, out)
    return out


def scoped_store_detail(db, actor: Actor, store: str) -> dict[str, Any]:
    """One store: state, devices, open alerts, seq gaps (inside the caller's scope)."""
    _authorize_store(db, actor, "fleet.read", store)
    return store_detail(db, store)


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


def scoped_devices(db, actor: Actor, *, at_risk: bool = False, region: str | None = None,
                   store: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Devices with their latest reading and decision, inside the caller's scope."""
    sc = scope(actor, "fleet.read")
    if store is not None:
        _authorize_store(db, actor, "fleet.read", store)
    _check_region(db, actor, "fleet.read", region, sc)
    rows = fleet.devices(db, at_risk=at_risk, region=region, store=store)
    if sc is not None:
        rows = [d for d in rows if sc.admits(d["store"], d["region"])]
    return rows[:limit]


def scoped_alerts(db, actor: Actor, *, open_only: bool = False, store: str | None = None,
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


def ack_alert(db, actor: Actor, clock: Callable[[], float], alert_id: str,
              source: str | None) -> dict[str, Any]:
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


def scoped_rejects(db, actor: Actor) -> dict[str, int]:
    """Rejected messages by reason (chain-wide: not tied to a store)."""
    authorize(actor, "fleet.read")
    with db.read() as tx:
        tx.execute("SELECT reason, count FROM rejects ORDER BY reason")
        return {r: int(c) for r, c in tx.fetchall()}


# Audit checkpoints in a running worker -----------------------------------------------------

_audit_log = logging.getLogger("hub.audit")


class Checkpointer:
    """Signed checkpoints of the audit log at an interval, written to a file and published
    retained on MQTT (hub/domains/audit/checkpoint.py wired into a running worker).

        cp = Checkpointer(db, ring, interval=300, path="/mnt/worm/audit.json", topic="...")
        cp.tick()        # from the worker's loop: makes one when due, else does nothing

    Several workers may tick at once: each checkpoint is made in a transaction and the table
    keeps one per seq, so they agree; whichever exports last exports the newest.
    """

    def __init__(self, db, ring: Any, interval: float, path: str = "",
                 publish: Callable[[bytes], Any] | None = None,
                 clock: Callable[[], float] = time.time, topic: str = ""):
        self.db, self.ring, self.interval = db, ring, interval
        self.path, self.publish, self.clock, self.topic = path, publish, clock, topic
        self._next = 0.0  # monotonic time of the next look

    def tick(self, now: float | None = None) -> dict[str, Any] | None:
        """Make, export and publish a checkpoint if one is due; return it (or None)."""
        from hub.domains.audit import checkpoint

        if self.interval <= 0:
            return None
        now = time.monotonic() if now is None else now
        if now < self._next:
            return None
        self._next = now + min(self.interval, 10.0)
        try:
            with self.db.transaction() as tx:
                if not checkpoint.due(tx, self.clock, self.interval):
                    return None
                cp = checkpoint.make(tx, self.clock, self.ring)
        except HubError as err:
            _audit_log.warning("audit checkpoint not made: %s", err)
            return None
        self.export(cp)
        return cp

    def export(self, cp: dict[str, Any]) -> None:
        from hub.domains.audit import checkpoint

        if self.path:
            try:
                checkpoint.write_file(self.path, cp)
            except OSError as err:
                _audit_log.warning("audit checkpoint not written to %s: %s", self.path, err)
        if self.publish is not None:
            try:
                self.publish(json.dumps(cp, sort_keys=True).encode())
            except (OSError, RuntimeError, ValueError) as err:
                _audit_log.warning("audit checkpoint not published: %s", err)
        _audit_log.info("audit checkpoint", extra={"seq": cp["checkpoint"]["seq"],
                                            "kid": cp["sig"]["kid"]})
