"""The bus consumer: the stores' stream in, lanes, a bounded hand-over, ack after commit.

`Consumer` owns the MQTT side of a hub worker and knows nothing of the database: hub.ingest
subclasses it and supplies `decode` (edge_protocol, in the network thread) and `commit` (one
transaction into the domains), and the alert feed's `feed_step`/`feed_mark_sent`.

paho's network thread decodes and validates each PUBLISH (edge_protocol.decode) and hands it to a
bounded queue; one writer thread commits up to `batch_max` messages or `batch_s` of them in one
transaction (fleet state, alert feed rows and reject counts together) and only then sends the
PUBACKs (paho `manual_ack=True`). A hub killed at any instant therefore loses nothing: what was
not committed was not acknowledged, and the broker redelivers it to the persistent session; what
is redelivered after a commit is dropped by id. A full queue blocks the network thread, which
pushes back on the broker instead of growing memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_protocol import topics
from edge_protocol.envelope import Envelope
from edge_protocol.errors import ProtocolError
from hub.bus.mqttclient import BufferedClient
from hub.errors import BrokerError, StoreError

log = logging.getLogger("hub.ingest")


@dataclass
class ConsumerSettings:
    """How one consumer connects and batches."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "edge-hub"
    group: str = "hub"
    prefix: str = topics.DEFAULT_PREFIX
    shared: bool = True          # False: a plain subscription (one worker; brokers without v5)
    mqtt5: bool = True
    keepalive: int = 30
    session_expiry: int = 7 * 86400
    batch_max: int = 1000
    batch_bytes: int = 512 * 1024  # telemetry envelopes carry hundreds of readings each
    batch_s: float = 0.05
    priority_lane: bool = True   # a second connection for alerts, decisions, births, deaths
    queue_max: int = 4000
    queue_bytes: int = 64 * 1024 * 1024  # payload bytes waiting for the writer, at most
    route_every_s: float = 0.25
    # A batch that cannot commit (the database gone, not a bad message: hub.ingest splits
    # those out) is retried with a backoff for this long; then the worker exits 1 for its
    # supervisor to restart it, rather than stay alive ingesting nothing.
    give_up_s: float = 120.0
    username: str = ""           # MQTT credentials ([broker] username, password_file)
    password: str = field(default="", repr=False)


@dataclass(slots=True)
class Item:
    mid: int
    qos: int
    topic: str
    env: Envelope | None
    error: ProtocolError | None
    received: float
    raw: bytes = b""
    client: mqtt.Client | None = None  # the lane to acknowledge on
    urgent: bool = False  # from the priority lane: committed without waiting for a batch


class Handoff:
    """A bounded hand-over from the network threads to the writer, cheap per message.

    queue.Queue takes a lock and notifies per item; here a network thread only appends (a
    deque is thread-safe for that) and wakes the writer when it was idle; the writer takes a
    whole batch at once. Bounded in items and in payload bytes (messages may be 256 KiB).
    Urgent items (the priority lane's) wait in a queue of their own, taken before the bulk
    one and in the order they came (a birth and the death after it must not swap: issue 11).
    A full bulk queue does not hold them back: the lane's own Receive Maximum bounds them, and
    an alert must not wait behind a telemetry backlog.
    """

    def __init__(self, maxsize: int, max_bytes: int = 64 * 1024 * 1024):
        self.items: deque[Item] = deque()   # the bulk lane's, in arrival order
        self.urgent: deque[Item] = deque()  # the priority lane's, in arrival order
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.bytes = 0
        self._lock = threading.Lock()  # for the byte count: two lanes put, the writer takes
        self.wake = threading.Event()

    def put(self, item: Item, stop: threading.Event, front: bool = False) -> None:
        """Append an item; `front`: an urgent one, taken before every bulk item."""
        while (not front and (len(self.items) >= self.maxsize or self.bytes >= self.max_bytes)
               and not stop.is_set()):
            time.sleep(0.001)  # full: hold the network thread, so TCP pushes back on the broker
        with self._lock:
            self.bytes += len(item.raw)
        (self.urgent if front else self.items).append(item)
        if not self.wake.is_set():
            self.wake.set()

    def take(self, limit: int, wait_s: float, max_bytes: int) -> list[Item]:
        """Wait up to 0.1 s for a first item, then up to wait_s more to fill a batch.

        Urgent items are taken at once, as a batch of their own: an alert does not wait for a
        batch of telemetry to fill and commit. One that comes while a bulk batch fills ends
        the wait, and goes first in that batch.
        """
        if not self.items and not self.urgent:
            self.wake.clear()
            if not self.items and not self.urgent and not self.wake.wait(0.1):
                return []
        urgent = self.urgent
        if urgent:  # only this thread takes, so what is there stays there
            out = [urgent.popleft() for _ in range(min(limit, len(urgent)))]
            self._taken(sum(len(item.raw) for item in out))
            return out
        deadline = time.monotonic() + wait_s
        while (len(self.items) < limit and self.bytes < max_bytes and not urgent
               and time.monotonic() < deadline):
            time.sleep(min(0.005, wait_s))
        out = [urgent.popleft() for _ in range(min(limit, len(urgent)))]
        size = sum(len(item.raw) for item in out)
        popleft = self.items.popleft
        for _ in range(min(limit - len(out), len(self.items))):
            if size >= max_bytes:
                break
            item = popleft()
            out.append(item)
            size += len(item.raw)
        self._taken(size)
        return out

    def _taken(self, size: int) -> None:
        with self._lock:
            self.bytes -= size

    def qsize(self) -> int:
        return len(self.items) + len(self.urgent)

    def empty(self) -> bool:
        return not self.items and not self.urgent


@dataclass(frozen=True)
class Outgoing:
    """One feed message to publish; `key` comes back to feed_mark_sent after its PUBACK."""

    key: str
    topic: str
    payload: bytes


class Consumer:
    """The MQTT side of one hub worker: lanes, hand-over, writer thread, acks, feed publishing.

    Subclasses provide decode(), commit(), feed_step(), feed_mark_sent() and feed_held().
    """

    def __init__(self, settings: ConsumerSettings,
                 will: tuple[str, bytes] | None = None,
                 on_connected: Callable[["Consumer"], None] | None = None,
                 on_birth: Callable[[], None] | None = None,
                 on_ready: Callable[["Consumer"], None] | None = None):
        self.s = settings
        self.queue = Handoff(settings.queue_max, settings.queue_bytes)
        self.counts: Counter[str] = Counter()      # received, stored, duplicates, readings...
        self.rejects: Counter[str] = Counter()
        self._published: dict[int, str] = {}       # feed mid -> feed key, until PUBACK
        self._acked_feed: deque[int] = deque()     # feed mids PUBACKed; the writer maps them
        self._stop = threading.Event()
        self.failed = threading.Event()  # a thread died of a bug: the worker must exit
        self._connected = threading.Event()
        self.on_connected = on_connected  # each time the bulk lane connects (network thread)
        # Called (on a network thread) each time every lane has its subscription acknowledged
        # on its current connection: only then may stores send (the hub says online), or what
        # they send before the priority lane subscribed reaches the bulk lane alone, behind
        # its backlog, and is overtaken by what follows on the lane (issue 11).
        self.on_ready = on_ready
        self.on_birth = on_birth  # called (network thread) for every valid birth received
        self.writer: threading.Thread | None = None
        self._route_failures = 0  # alert routing rounds failed in a row (the database away)
        self._route_logged = float("-inf")
        # Since when (monotonic) the writer has not got a batch committed: the start of the
        # first attempt of the batch it keeps retrying, or of a commit still running; None
        # when the last attempt committed. Written by the writer thread, read by the hub's
        # hold (hub.app.Hub): one attribute, so a read sees one value or the other.
        self.stalled_since: float | None = None
        self.committed = 0  # batches committed (the hold's release waits for the next one)
        self.client = self._make_client(settings.client_id)
        if will:
            props = Properties(PacketTypes.WILLMESSAGE) if settings.mqtt5 else None
            self.client.will_set(will[0], will[1], qos=1, retain=True, properties=props)
        # The broker queues a subscriber's messages first in, first out: behind a store's
        # 24-hour telemetry backlog, a fresh alert would wait for all of it. A second
        # connection subscribes to the critical kinds only, so they arrive at once; both lanes
        # see them, and the second copy is dropped by id. amqtt (3.1.1) has no shared
        # subscriptions, so the embedded mode has one lane.
        self.lane = None
        if settings.priority_lane and settings.shared:
            self.lane = self._make_client(f"{settings.client_id}-p"[:64], priority=True)
        # Set once every lane's subscription has been acknowledged (SUBACK): from then on the
        # broker delivers what stores send to this worker. `edge-hub serve` says READY on it.
        self.ready = threading.Event()
        self._subscribed: set[bool] = set()  # lanes (priority?) subscribed on this connection
        self._sub_mid: dict[bool, int] = {}  # each lane's SUBSCRIBE, to know its SUBACK
        self._sub_lock = threading.Lock()
        self._store_topics: dict[str, bool] = {}
        # The alert feed goes out on the quiet lane: the bulk lane's loop is busy reading.
        self.feed_client = self.lane or self.client
        self.feed_client.on_publish = self._on_publish

    # What a subclass (hub.ingest.Ingest) provides ---------------------------------------------

    def decode(self, payload: bytes, topic_name: str) -> Envelope:
        """Decode and check one message (raise ProtocolError); runs on the network thread."""
        raise NotImplementedError

    def commit(self, batch: list[Item]) -> int:
        """Store one batch in one transaction; return how many alert transitions it had."""
        raise NotImplementedError

    def feed_step(self) -> list[Outgoing]:
        return []

    def feed_mark_sent(self, keys: list[str]) -> None:
        return None

    def feed_held(self) -> int:
        return 0

    def _make_client(self, client_id: str, priority: bool = False) -> mqtt.Client:
        s = self.s
        kwargs = {} if s.mqtt5 else {"clean_session": False}
        client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                protocol=mqtt.MQTTv5 if s.mqtt5 else mqtt.MQTTv311,
                                manual_ack=True, userdata={"priority": priority}, **kwargs)
        # The outgoing queue holds only feed messages and hub state: small and bounded here.
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(0.5, 2)  # the broker is near: come back quickly
        if s.username:
            client.username_pw_set(s.username, s.password or None)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    @property
    def clients(self) -> list[mqtt.Client]:
        return [self.client] + ([self.lane] if self.lane else [])

    # MQTT side (paho's network thread) -------------------------------------------------------

    @property
    def topic_filter(self) -> str:
        if self.s.shared:
            return topics.shared_subscription(self.s.prefix, self.s.group)
        return topics.store_filter(self.s.prefix)

    def priority_filters(self) -> list[str]:
        return topics.priority_filters(self.s.prefix, self.s.group)

    def start(self, timeout: float = 10.0) -> None:
        """Connect, subscribe and start the writer; raise BrokerError if the broker is away."""
        kwargs = {}
        if self.s.mqtt5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.s.session_expiry
            # Room for two batches unacknowledged: the broker keeps sending while we commit.
            props.ReceiveMaximum = min(65535, 2 * self.s.batch_max)
            kwargs = {"clean_start": False, "properties": props}
        if self.s.mqtt5 and self.lane is not None:
            lane_props = Properties(PacketTypes.CONNECT)
            lane_props.SessionExpiryInterval = self.s.session_expiry
            lane_props.ReceiveMaximum = 500
        try:
            for client in self.clients:
                if client is self.lane and self.s.mqtt5:
                    client.connect(self.s.host, self.s.port, self.s.keepalive,
                                   clean_start=False, properties=lane_props)
                else:
                    client.connect(self.s.host, self.s.port, self.s.keepalive, **kwargs)
        except (OSError, ValueError) as err:
            raise BrokerError(f"cannot reach the broker at {self.s.host}:{self.s.port}: "
                              f"{getattr(err, 'strerror', None) or err}") from err
        self.writer = threading.Thread(target=self._run, name="hub-writer", daemon=True)
        self.writer.start()
        for client in self.clients:
            client.loop_start()
        if not self._connected.wait(timeout):
            self.stop()
            raise BrokerError(f"the broker at {self.s.host}:{self.s.port} did not accept the "
                              "connection")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection", extra={"reason": str(reason_code)})
            return
        priority = userdata["priority"]
        with self._sub_lock:
            self._subscribed.discard(priority)
        # This callback runs on the lane's own network thread, which also handles its SUBACK:
        # the mid is recorded before the SUBACK can be seen.
        if priority:
            _, self._sub_mid[True] = client.subscribe([(f, 1) for f in self.priority_filters()])
            log.info("priority lane connected",
                     extra={"session_present": bool(flags.session_present)})
            return
        _, self._sub_mid[False] = client.subscribe(self.topic_filter, qos=1)
        log.info("connected", extra={"broker": f"{self.s.host}:{self.s.port}",
                                     "subscription": self.topic_filter,
                                     "priority_lane": self.lane is not None,
                                     "session_present": bool(flags.session_present)})
        self._connected.set()
        if self.on_connected:
            self.on_connected(self)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        # SUBACK: from here on the broker delivers (or shares) the stream with this worker.
        priority = userdata["priority"]
        if mid != self._sub_mid.get(priority):
            return  # another subscription on this client (the hub's own state topic)
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        complete = False
        if not refused:
            with self._sub_lock:
                self._subscribed.add(priority)
                complete = len(self._subscribed) == len(self.clients)
        if priority and refused:
            log.error("broker refused the priority lane's subscription",
                      extra={"reasons": ",".join(refused)})
        elif priority:
            log.info("priority lane subscribed")
        elif refused:
            log.error("broker refused the subscription", extra={"reasons": ",".join(refused)})
        else:
            log.info("subscribed", extra={"subscription": self.topic_filter})
        if complete:
            self.ready.set()
            if self.on_ready:
                self.on_ready(self)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._sub_lock:
            self._subscribed.discard(userdata["priority"])
        if userdata["priority"]:
            if not self._stop.is_set():
                log.warning("priority lane disconnected; reconnecting",
                            extra={"reason": str(reason_code)})
            return
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from the broker; reconnecting",
                        extra={"reason": str(reason_code)})

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        try:
            self._receive(client, userdata, msg)
        except Exception:
            log.exception("receiving a message failed; this worker stops",
                          extra={"topic": str(msg.topic)[:200]})
            self.failed.set()
            raise

    def _receive(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        env = err = None
        if not self._is_store_topic(msg.topic):
            # The hub's own feed and state, hub-to-agent topics: not ingest's business.
            self.counts["ignored"] += 1
            self._hand_over(Item(msg.mid, msg.qos, msg.topic, None, None, now, b"", client))
            return
        try:
            if msg.retain:
                # A store never publishes retained (docs/protocol.md); a retained copy is
                # stale or hostile, and would come back to every new hub: ignored, counted.
                raise ProtocolError("retained", "a retained message on a store topic")
            env = self.decode(msg.payload, msg.topic)
            if env.kind == "birth" and self.on_birth is not None:
                self.on_birth()
        except ProtocolError as e:
            if userdata["priority"]:
                # The bulk lane gets the same message and counts the reject once.
                self._hand_over(Item(msg.mid, msg.qos, msg.topic, None, None, now, b"", client))
                return
            err = e
        urgent = userdata["priority"]
        self._hand_over(Item(msg.mid, msg.qos, msg.topic, env, err, now,
                             msg.payload if env is not None else b"", client, urgent),
                        front=urgent)

    def _hand_over(self, item: Item, front: bool = False) -> None:
        self.queue.put(item, self._stop, front)

    def _is_store_topic(self, name: str) -> bool:
        known = self._store_topics.get(name)
        if known is None:
            known = self._store_topics[name] = self._classify_topic(name)
            if len(self._store_topics) > 65536:  # bounded: a broker may carry many topics
                self._store_topics.clear()
        return known

    def _classify_topic(self, name: str) -> bool:
        return topics.is_store_topic(name, self.s.prefix)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # No lock here: paho calls this holding its message lock, which publish() on the
        # writer thread takes too; with a lock around both, the embedded mode's single client
        # deadlocked (no more reads or acks). The writer matches mids to feed keys.
        self._acked_feed.append(mid)

    def publish_feed(self, outgoing: list[Outgoing]) -> None:
        for o in outgoing:
            info = self.feed_client.publish(o.topic, o.payload, qos=1)
            if info.rc == mqtt.MQTT_ERR_SUCCESS or info.rc == mqtt.MQTT_ERR_NO_CONN:
                self._published[info.mid] = o.key
            self.counts["feed_published"] += 1
            log.info("alert routed", extra={"topic": o.topic, "feed_id": o.key})

    # Writer thread ----------------------------------------------------------------------------

    def _take(self) -> list[Item]:
        return self.queue.take(self.s.batch_max, self.s.batch_s, self.s.batch_bytes)

    def _run(self) -> None:
        try:
            self._write_loop()
        except Exception:
            # A bug, not a database problem (those are retried): stop the worker loudly so its
            # supervisor restarts it; nothing uncommitted was acknowledged, so nothing is lost.
            log.exception("the writer failed; this worker stops")
            self.failed.set()

    def _write_loop(self) -> None:
        next_route = 0.0
        backoff = 0.1
        failing_since: float | None = None
        pending: list[Item] = []
        while True:
            if not pending:
                pending = self._take()
            if pending:
                if failing_since is None:
                    self.stalled_since = time.monotonic()  # a commit that hangs counts too
                try:
                    routed = self.commit(pending)
                except StoreError as err:
                    now = time.monotonic()
                    failing_since = now if failing_since is None else failing_since
                    if now - failing_since >= self.s.give_up_s:
                        log.error("cannot commit for %.0f s; this worker exits for its "
                                  "supervisor to restart it (nothing was acknowledged)",
                                  now - failing_since,
                                  extra={"error": str(err)[:300], "messages": len(pending)})
                        self.failed.set()
                        return
                    log.error("cannot commit a batch; will retry, nothing acknowledged",
                              extra={"error": str(err)[:300], "messages": len(pending)})
                    if self._stop.wait(backoff):
                        return
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                failing_since = None
                self.stalled_since = None
                self.committed += 1
                self._ack(pending)
                pending = []
                if routed:
                    next_route = 0.0
            self._route(next_route)
            if time.monotonic() >= next_route:
                next_route = time.monotonic() + self.s.route_every_s
            if self._stop.is_set() and self.queue.empty():
                return

    def _ack(self, batch: list[Item]) -> None:
        """Acknowledge a committed batch: one write per lane, not one per message."""
        mids: dict[mqtt.Client, list[int]] = {}
        for item in batch:
            if item.client is None or item.qos == 0:
                continue
            if item.qos == 1 and isinstance(item.client, BufferedClient):
                mids.setdefault(item.client, []).append(item.mid)
            else:
                item.client.ack(item.mid, item.qos)
        for client, lane_mids in mids.items():
            client.ack_many(lane_mids)

    def _route(self, next_route: float) -> None:
        try:
            # Mids are recorded in publish_feed, on this thread, before the next round.
            done = []
            while self._acked_feed:
                key = self._published.pop(self._acked_feed.popleft(), None)
                if key is not None:
                    done.append(key)
            self.feed_mark_sent(done)
            if time.monotonic() >= next_route and self._connected.is_set():
                self.publish_feed(self.feed_step())
                if self._route_failures:
                    log.info("alert routing works again",
                             extra={"failures": self._route_failures})
                    self._route_failures = 0
        except StoreError as err:
            # Every round while the database is away: one line, then one a minute.
            self._route_failures += 1
            now = time.monotonic()
            if self._route_failures == 1 or now - self._route_logged >= 60.0:
                self._route_logged = now
                log.error("alert routing failed; will retry",
                          extra={"error": str(err)[:300], "failures": self._route_failures})

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect, commit what was received (unacknowledged, it is redelivered anyway)."""
        self._stop.set()
        for client in self.clients:
            try:
                client.disconnect()
            except Exception:  # already gone; nothing to say goodbye to
                pass
            client.loop_stop()
        if self.writer is not None:
            self.writer.join(timeout)

    def stalled_s(self, now: float | None = None) -> float:
        """Seconds the writer has gone without committing a batch it holds (0: it commits,
        or has nothing to commit)."""
        since = self.stalled_since
        if since is None:
            return 0.0
        return max(0.0, (time.monotonic() if now is None else now) - since)

    def stats(self) -> dict[str, object]:
        return {**self.counts, "rejects": dict(self.rejects), "queued": self.queue.qsize(),
                "feed_held": self.feed_held()}
