"""The hub's one composition root: every domain's migrations, the store, ingest and the worker.

    open_store(url, create)   the database with every domain's migrations applied (or checked)
    Hub                       one worker: ingest + alert routing + the retained hub/state
    serve()                   `edge-hub serve`: run one worker until SIGTERM
    store_detail()            the fleet's store view with its open alerts (two domains joined)

Cross-domain wiring happens here and nowhere else; the CLI and the API sit on top of it.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from edge_protocol import envelope, topics
from edge_protocol.errors import ProtocolError
from edge_protocol.timestamps import format_ts, utcnow
from hub import store as _store
from hub.domains import alerts, fleet
from hub.domains.alerts.schema import MIGRATIONS as _ALERTS
from hub.domains.fleet.schema import MIGRATIONS as _FLEET
from hub.domains.quarantine.schema import MIGRATIONS as _QUARANTINE
from hub.ingest import Ingest, Settings
from hub.errors import StoreError
from hub.store import Store

log = logging.getLogger("hub.serve")

# Every domain's migrations; a new domain appends its schema.MIGRATIONS here.
ALL_MIGRATIONS = (*_FLEET, *_ALERTS, *_QUARANTINE)


def open_store(url: str, *, create: bool = True) -> Store:
    """Open the hub database; with create, make it and apply every domain's migrations, else
    refuse one whose schema is newer than this hub (hub.store.SchemaTooNew)."""
    return _store.open_store(url, create=create, migrations=ALL_MIGRATIONS)


def store_detail(db: Store, store: str) -> dict[str, Any]:
    """One store: fleet state, devices, seq gaps and its open alerts."""
    return fleet.store_detail(db, store, open_alerts=alerts.open_alerts)

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
    messages and readings, old feed rows, stores unseen for long marked. Returns the counts;
    a count equal to `policy.batch` means more is left for the next round."""
    now = clock()
    done = {"messages": 0, "feed": 0, "unseen": 0}
    with db.transaction() as tx:
        kinds = {} if policy.readings_s is None else {"telemetry": now - policy.readings_s}
        other = None if policy.messages_s is None else now - policy.messages_s
        if kinds or other is not None:
            done["messages"] = fleet.prune_messages(tx, kinds, other, policy.batch)
        if policy.feed_s is not None:
            done["feed"] = alerts.prune(tx, now - policy.feed_s, policy.batch)
        if policy.unseen_s is not None:
            done["unseen"] = fleet.mark_unseen(tx, now - policy.unseen_s, now)
    return done


def prune_stores(db: Store, unseen_s: float, dry_run: bool = False,
                 clock=time.time) -> list[dict[str, Any]]:
    """Remove the stores not heard from for `unseen_s` seconds with their devices, messages,
    alerts and feed rows (`edge-hub stores prune`); return what was (or would be) removed."""
    with db.transaction() as tx:
        gone = fleet.unseen_stores(tx, clock() - unseen_s)
        names = [g[0] for g in gone]
        if names and not dry_run:
            fleet.drop_stores(tx, names)
            alerts.drop_stores(tx, names)
    return [{"store": s, "region": r, "last_seen": seen} for s, r, seen in gone]


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


def state_payload(online: bool, worker: str) -> bytes:
    return envelope.encode_hub_state(online, format_ts(utcnow()), worker)


def default_client_id() -> str:
    return f"edge-hub-{socket.gethostname()}"[:64]


class Hub:
    """One worker: ingest + alert routing + the retained hub/state message."""

    def __init__(self, db: Store, settings: Settings):
        self.db = db
        self.settings = settings
        self.state_topic = topics.hub_state_topic(settings.prefix)
        self.ingest = Ingest(db, settings,
                             will=(self.state_topic, state_payload(False, settings.client_id)),
                             on_connected=self._connected, on_birth=self._birth_seen)
        self.ingest.client.message_callback_add(self.state_topic, self._on_state)
        self._state_lock = threading.Lock()
        self._state_at = float("-inf")  # when our state was last published (monotonic)
        self._state_timer: threading.Timer | None = None
        self._stopping = False

    def _connected(self, ingest: Ingest) -> None:
        client = ingest.client
        client.subscribe(self.state_topic, qos=1)
        self._say_online()  # after our SUBSCRIBE on this connection: stores may send now

    def _say_online(self) -> None:
        with self._state_lock:
            if self._stopping:
                return
            self._state_at = time.monotonic()
            self._state_timer = None
            self.ingest.client.publish(self.state_topic,
                                       state_payload(True, self.settings.client_id), qos=1,
                                       retain=True)

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
                self._state_timer = threading.Timer(delay, self._say_online)
                self._state_timer.daemon = True
                self._state_timer.start()
                return
        self._say_online()

    def _on_state(self, client, userdata, msg) -> None:
        # Several workers share one retained state: when another worker's Will says offline
        # while this one runs, say online again.
        try:
            state = envelope.decode_hub_state(msg.payload)
        except ProtocolError:
            state = {}
        if msg.qos:
            client.ack(msg.mid, msg.qos)
        if (isinstance(state, dict) and state.get("online") is False
                and state.get("worker") != self.settings.client_id
                and not self.ingest._stop.is_set()):
            client.publish(self.state_topic, state_payload(True, self.settings.client_id),
                           qos=1, retain=True)

    def start(self) -> "Hub":
        self.ingest.start()
        return self

    def stop(self) -> None:
        """Say offline (retained), disconnect cleanly and commit what was received."""
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


def serve(db: Store, settings: Settings, embedded: bool = False,
          stats_every: float = 30.0, retention: Retention | None = Retention()) -> int:
    """Run until SIGTERM or SIGINT; return the exit code."""
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
    try:
        hub.start()
    except BaseException:
        db.close()
        if broker:
            broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise
    try:
        log.info("hub started", extra={"worker": settings.client_id, "db": _safe(db.url),
                                       "subscription": hub.ingest.topic_filter})
        last = time.monotonic()
        pruned_at = float("-inf")
        # Under systemd (Type=notify, WatchdogSec): ready once subscribed, then a ping every
        # half second while the writer thread lives; a worker that failed exits instead.
        sd_notify("READY=1", f"STATUS=ingesting as {settings.client_id}")
        while not stop.wait(0.5):
            if hub.ingest.failed.is_set():
                log.error("hub worker failed; exiting for its supervisor to restart it")
                return 1
            if hub.ingest.writer is not None and hub.ingest.writer.is_alive():
                sd_notify("WATCHDOG=1")
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
        hub.stop()
        if broker:
            broker.stop()
        log.info("hub stopped", extra=hub.ingest.stats())
        db.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _safe(url: str) -> str:
    """A database URL without its password, for logs."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}@{host}"
    return url

