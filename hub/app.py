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

from typing import Any

from edge_protocol import envelope, topics
from edge_protocol.errors import ProtocolError
from edge_protocol.timestamps import format_ts, utcnow
from hub import store as _store
from hub.domains import alerts, fleet
from hub.domains.alerts.schema import MIGRATIONS as _ALERTS
from hub.domains.audit import MIGRATIONS as _AUDIT  # the stand-in's until U's lands
from hub.domains.commands.schema import MIGRATIONS as _COMMANDS
from hub.domains.fleet.schema import MIGRATIONS as _FLEET
from hub.domains.flags.schema import MIGRATIONS as _FLAGS
from hub.domains.rollout.schema import MIGRATIONS as _ROLLOUT
from hub.ingest import Ingest, Settings
from hub.store import Store

log = logging.getLogger("hub.serve")

# Every domain's migrations; a new domain appends its schema.MIGRATIONS here.
ALL_MIGRATIONS = (*_FLEET, *_ALERTS, *_AUDIT, *_COMMANDS, *_FLAGS, *_ROLLOUT)


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
          stats_every: float = 30.0) -> int:
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
    commander = None
    try:
        hub.start()
        from hub.control import start_commander

        commander = start_commander(db, settings)  # commands, flags, bundles, rollouts
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
        while not stop.wait(0.5):
            if hub.ingest.failed.is_set():
                log.error("hub worker failed; exiting for its supervisor to restart it")
                return 1
            if time.monotonic() - last >= stats_every:
                last = time.monotonic()
                log.info("hub stats", extra=hub.ingest.stats())
    finally:
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


def _safe(url: str) -> str:
    """A database URL without its password, for logs."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}@{host}"
    return url

