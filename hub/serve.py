"""`edge-hub serve`: run one hub worker until SIGTERM, with its retained online/offline state."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time

from edge_agent import wire
from edge_agent.reading import format_ts, utcnow
from hub.ingest import Ingest, Settings
from hub.store import Store

log = logging.getLogger("hub.serve")

STATE_EVERY_S = 1.0  # the state answers births at most this often (it goes to every store)


def state_payload(online: bool, worker: str) -> bytes:
    return wire.encode_hub_state(online, format_ts(utcnow()), worker)


def default_client_id() -> str:
    return f"edge-hub-{socket.gethostname()}"[:64]


class Hub:
    """One worker: ingest + alert routing + the retained hub/state message."""

    def __init__(self, db: Store, settings: Settings):
        self.db = db
        self.settings = settings
        self.state_topic = wire.hub_state_topic(settings.prefix)
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
            state = wire.decode_hub_state(msg.payload)
        except wire.WireError:
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
        from hub.broker import EmbeddedBroker

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
        commander = start_commander(db, settings)
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


def start_commander(db: Store, settings: Settings):
    """Signed commands and flags out, results in (hub/commander.py), beside ingest."""
    from hub.commander import Commander, CommanderSettings

    ring = None
    try:  # rollouts re-sign desired states: they run when the worker can open the key ring
        from hub.keys import KeyRing, KeyringError, default_dir, passphrase_from

        ring = KeyRing.load(default_dir(), passphrase_from(None))
    except KeyringError as err:
        log.info("rollouts not advanced by this worker", extra={"why": str(err)})
    return Commander(db, CommanderSettings(
        host=settings.host, port=settings.port, client_id=settings.client_id,
        prefix=settings.prefix, shared=settings.shared, mqtt5=settings.mqtt5,
        keepalive=settings.keepalive, group=settings.group), ring=ring).start()


def _safe(url: str) -> str:
    """A database URL without its password, for logs."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}@{host}"
    return url

