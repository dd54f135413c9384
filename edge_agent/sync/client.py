"""The MQTT sync client: TLS, persistent session, birth and Will, the outbox drained at QoS 1.

Threads: paho's network thread only appends events to a deque and wakes the event loop with
`call_soon_threadsafe`; every outbox read and delete runs on the agent's database thread; the
event loop decides what to send. A row leaves the outbox only after its PUBACK. At most
`sync.inflight` rows are unacknowledged at once, so paho's memory-only queue stays small
and its 16-bit message ids never wrap over a pending message (PROTOCOLS.md, section 7); the
outbox, not paho, holds a backlog. Each connection uses a fresh paho client, so nothing paho
kept from a lost connection is resent behind our back: after a reconnect the client reads the
unacknowledged rows from the outbox again (a redelivery carries the same envelope id).

Received messages are acknowledged by hand (paho's `manual_ack=True`): the hub's state at once,
on paho's thread (nothing to record); a control message (command, flags, desired state, bundle)
only once the controller has recorded it, or durably refused it, in the state database; every
PUBACK in the order its PUBLISH arrived (`acks.AckOrder`, one per connection). A message the
controller could not record gets no PUBACK: the client drops the link and the broker sends it
again, flagged DUP, on the next connection (docs/sync.md, "What is acknowledged when").

The link's state (connecting, waiting for the hub, the handshake, draining, stopping) is a
`machine.Machine`: paho's thread fires CONNACK, the link lost and the hub's states into it
directly, the event loop fires attempts, births and the stop; the loop then reacts (births,
status, logs) to the transitions paho's thread made.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import ssl
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

import edge_protocol as wire
from edge_agent.blocking import run_blocking
from edge_agent.config import AgentConfig, SyncSection
from edge_agent.outbox import ENVELOPE_VERSION, Outbox, Row, uuid7
from edge_agent.reading import format_ts, utcnow
from edge_agent.services import DbCall
from edge_agent.sync import backoff, birth, state
from edge_agent.sync.acks import AckOrder, Receipt
from edge_agent.sync.machine import Event, IllegalTransition, Machine, State, Transition

log = logging.getLogger(__name__)

# An idle client compares outbox.last_seq (a Python int, no SQL) with what it has read this often.
IDLE_CHECK_S = 0.2
# The status row is rewritten at most this often while acks stream in (one fsync each).
STATUS_EVERY_S = 2.0
DISCONNECT_GRACE_S = 1.5
ACK_GATHER_S = 0.05
WITH_WILL = 4  # MQTT v5 DISCONNECT reason "Disconnect with Will Message"
_TOPIC_TAILS = {"cmd_result": "cmd/result"}  # outbox kinds whose topic is not their name
# MQTT v5 Receive Maximum: QoS 1 messages the broker may have unacknowledged with us at once
# (for 3.1.1 the broker's own limit holds: Mosquitto's max_inflight_messages, 20). At most the
# controller's queue (32), so a PUBACK held for a message being recorded bounds what waits.
RECEIVE_MAX = 32


class Connection:
    """One connection attempt: its paho client and what is in flight on it.

    Whether it is up, whether the hub is online, answered live and has our birth is the
    client's Machine (its session is this connection's); what is left here is bookkeeping.
    """

    def __init__(self, session: int, instance: str | None = None):
        self.session = session
        self.instance = instance  # the state database's id (edge_agent.sync.state)
        self.mqtt: mqtt.Client | None = None
        self.connack: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
        # Why paho's link ended (None while it may be open): set by paho's thread when the link
        # drops, or by us when we leave; a link still open at teardown is closed then.
        self.down: str | None = None
        self.inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self.cursors: dict[int, int] = {}   # priority class -> highest seq read on this connection
        self.known_seq = 0                  # every row up to this seq was read (or acked)
        self.more = True                    # the last read was full: there may be more rows
        # PUBACKs handed over by paho's thread; one loop wake-up is scheduled at a time.
        self.acks: collections.deque[tuple[int, int]] = collections.deque()
        self.ack_scheduled = False
        self.birth_model: str | None = None  # the model version the last birth announced
        self.birth_pending = False           # a spawned birth is being built (not re-entered)
        self.will = b""
        # PUBACKs for received messages, in arrival order (made with the paho client).
        self.received: AckOrder | None = None
        # The hub-state subscription made on this connection (its SUBSCRIBE's mid) and the
        # mids the broker has acknowledged (SUBACK, added by paho's thread). A hub state counts
        # as live only once our own subscription is acknowledged: what the broker kept in our
        # session across its restart arrives before that (docs/sync.md).
        self.hub_sub_mid: int | None = None
        self.subacked: set[int] = set()

    def hub_subscribed(self) -> bool:
        return self.hub_sub_mid is not None and self.hub_sub_mid in self.subacked


class SyncClient:
    """Keep one store's outbox flowing to the broker, reconnecting with jittered backoff."""

    def __init__(self, settings: SyncSection, config: Callable[[], AgentConfig], outbox: Outbox,
                 db: DbCall, *, base_dir: Path | None = None,
                 model_version: Callable[[], str | None] | None = None,
                 rand: random.Random | None = None, control: Any = None):
        self.s = settings
        self.config = config
        cfg = config()
        self.store, self.region = cfg.agent.store, cfg.agent.region
        self.outbox = outbox
        self.db = db
        self.base_dir = base_dir
        self.model_version = model_version or (lambda: None)
        self.rand = rand or random.Random()
        # edge_agent.control.Controller: its topics are subscribed on each connection and its
        # messages handed to control.on_message (on the event loop).
        self.control = control
        self.hub_topic = wire.hub_state_topic(settings.prefix)
        self.v5 = settings.mqtt_version == "5"
        self._topics: dict[str, str] = {}
        self._conn: Connection | None = None
        self.machine = Machine()
        self._to_delete: list[int] = []
        self._ack_failures = 0  # deletes of acknowledged rows failed in a row
        self._ack_logged_at = float("-inf")
        self.clock = time.monotonic  # paces the failure lines (a test may replace it)
        self._ack_task: asyncio.Task | None = None
        self._kick = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._status: dict[str, Any] = {"connected": False, "since": None, "session": None,
                                        "hub_online": False, "last_ack": None, "acked": 0,
                                        "broker": f"{settings.host}:{settings.port}",
                                        "last_error": None}
        self._status_written = 0.0
        # Figures for tests, benchmarks and logs.
        self.published = 0
        self.acked = 0
        self.rejected = 0
        self.dropped = 0
        self.max_inflight = 0
        self.connects = 0
        self.bad_hub_states = 0
        self.unrecorded = 0  # received messages not recorded: the link was dropped for them

    # The loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, drain, reconnect after a loss (with backoff), until cancelled."""
        self._loop = asyncio.get_running_loop()
        attempt = 0
        try:
            while True:
                ok = await self._connection()
                attempt = 1 if ok else attempt + 1
                wait = backoff.delay(attempt, self.s.reconnect_min, self.s.reconnect_max,
                                     self.rand)
                log.info("sync reconnecting", extra={"in_s": round(wait, 2),
                                                     "attempt": attempt})
                await asyncio.sleep(wait)
        finally:
            await self._close()

    async def _connection(self) -> bool:
        """Run one connection from attempt to loss; return whether it got connected."""
        if self._ack_task is not None:
            # Deletes of acked rows finish first, so this connection does not resend them.
            await asyncio.wait([self._ack_task])
        session = await self.db(state.next_session, self.outbox.db)
        conn = Connection(session)
        conn.instance = await self.db(state.instance_id, self.outbox.db)
        self._conn = conn
        self.machine.fire(Event.ATTEMPT, session)
        try:
            try:
                await run_blocking(self._open, conn)
                code, present = await asyncio.wait_for(asyncio.shield(conn.connack),
                                                       self.s.connect_timeout)
            except (OSError, ssl.SSLError, ValueError, asyncio.TimeoutError) as err:
                why = _describe(err)
                log.warning("sync cannot connect", extra={"broker": self._status["broker"],
                                                         "error": why, "session": session})
                await self._save_status(connected=False, last_error=why, force=True)
                return False
            if code != 0:
                why = str(ReasonCode(PacketTypes.CONNACK, identifier=code))
                log.error("sync connection refused", extra={"broker": self._status["broker"],
                                                           "reason": why})
                await self._save_status(connected=False, last_error=f"refused: {why}",
                                        force=True)
                return False
            # paho's thread has fired CONNACK. Without the gate, the connection itself counts
            # as the hub's live answer.
            if not self.s.wait_for_hub:
                self.machine.fire(Event.HUB_LIVE, session)
            self.connects += 1
            log.info("sync connected", extra={"broker": self._status["broker"],
                                              "session": session, "session_present": present})
            # A hub state queued in our session may already have arrived: keep what it said.
            await self._save_status(connected=True, since=_now(), session=session,
                                    hub_online=self.machine.hub_online(), last_error=None,
                                    force=True)
            _, conn.hub_sub_mid = conn.mqtt.subscribe(self.hub_topic, qos=1)
            if self.control is not None:
                for name in self.control.topics(self.s.prefix):
                    conn.mqtt.subscribe(name, qos=1)
            if not self.s.wait_for_hub:
                await self._send_birth(conn)
            await self._pump(conn)
            return True
        except asyncio.CancelledError:
            linked = self.machine.linked(session)
            self.machine.fire(Event.STOP)
            await self._leave(conn, linked)
            raise
        finally:
            await self._teardown(conn)

    async def _pump(self, conn: Connection) -> None:
        """Fill the in-flight window from the outbox until the connection is lost."""
        while self.machine.linked(conn.session):
            # Cleared before filling, so acks that arrive while a read is running wake us at once.
            self._kick.clear()
            if (self.machine.has_birth(conn.session) and not conn.birth_pending
                    and self.model_version() != conn.birth_model):
                # A model loaded (or replaced) after the birth: tell the hub with a new one.
                await self._send_birth(conn)
            await self._fill(conn)
            if not self.machine.linked(conn.session):
                break
            try:
                await asyncio.wait_for(self._kick.wait(), IDLE_CHECK_S)
            except asyncio.TimeoutError:
                pass
        log.warning("sync connection lost", extra={"reason": conn.down or "",
                                                   "unacked": len(conn.inflight)})
        await self._save_status(connected=False, since=_now(), hub_online=False,
                                last_error=conn.down or "", force=True)

    async def _fill(self, conn: Connection) -> None:
        """Publish rows while the window has room, the hub is online and rows are waiting."""
        window = self.s.inflight
        # History waits for the hub (its state online, seen live on this connection) and for
        # this connection's birth: the machine's DRAINING.
        while self.machine.draining(conn.session):
            room = window - len(conn.inflight)
            # Refill in chunks (a quarter window) rather than one row per PUBACK: fewer queries.
            if room < max(1, window // 4) and conn.inflight:
                return
            if not (conn.more or self.outbox.last_seq > conn.known_seq):
                return
            snapshot = self.outbox.last_seq
            rows: list[Row] = await self.db(self.outbox.rows_after, dict(conn.cursors), room)
            if not self.machine.draining(conn.session):
                # Lost, or the hub went offline during the read: these rows wait (the cursors
                # and known_seq have not moved, so the next fill reads them again).
                return
            conn.more = len(rows) >= room
            if not conn.more:
                conn.known_seq = max(conn.known_seq, snapshot)
            for row in rows:
                if len(row.payload) > wire.MAX_PAYLOAD:
                    # No hub accepts it and a broker may drop the link over it, which would
                    # resend it first forever: drop it (counted, like a budget drop).
                    conn.cursors[row.prio] = max(conn.cursors.get(row.prio, 0), row.seq)
                    await self._drop_oversized(row)
                    continue
                if not self._publish(conn, row):
                    conn.more = True
                    return
            if not rows:
                return

    async def _drop_oversized(self, row: Row) -> None:
        log.error("outbox row too large for the wire; dropped", extra={
            "seq": row.seq, "kind": row.kind, "bytes": len(row.payload),
            "max": wire.MAX_PAYLOAD})
        self.dropped += 1
        await self.db(self.outbox.drop, [row])

    def _publish(self, conn: Connection, row: Row) -> bool:
        topic = self._topics.get(row.kind)
        if topic is None:
            topic = self._topics[row.kind] = wire.topic(
                self.region, self.store, _TOPIC_TAILS.get(row.kind, row.kind), self.s.prefix)
        info = conn.mqtt.publish(topic, row.payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.debug("sync publish not queued", extra={"rc": mqtt.error_string(info.rc)})
            return False
        conn.inflight[info.mid] = row.seq
        conn.cursors[row.prio] = max(conn.cursors.get(row.prio, 0), row.seq)
        self.published += 1
        if len(conn.inflight) > self.max_inflight:
            self.max_inflight = len(conn.inflight)
        return True

    # Birth and Will ----------------------------------------------------------------------------

    def _envelope(self, kind: str, body: dict[str, Any]) -> bytes:
        # Birth and death are not outbox rows: their seq is the last one committed (a high-water
        # mark the hub can check gaps against), not a new number.
        return wire.encode({"v": ENVELOPE_VERSION, "id": uuid7(), "seq": self.outbox.last_seq,
                            "store": self.store, "region": self.region,
                            "ts": format_ts(utcnow()), "kind": kind, "body": body})

    def _topic(self, kind: str) -> str:
        return wire.topic(self.region, self.store, kind, self.s.prefix)

    async def _send_birth(self, conn: Connection) -> None:
        cfg = self.config()
        model = known = self.model_version()
        if model is None:
            model = await self.db(state.model_version, self.outbox.db)
        body = birth.birth_body(cfg, conn.session, model_version=model,
                                config_digest=await run_blocking(birth.config_hash, cfg),
                                last_seq=self.outbox.last_seq, instance=conn.instance)
        if self.control is not None:  # the bundle versions applied (docs/commands.md)
            body["bundles"] = self.control.bundles.versions()
        if not self.machine.linked(conn.session):
            return
        conn.mqtt.publish(self._topic("birth"), self._envelope("birth", body), qos=1)
        conn.birth_model = known
        self.machine.fire(Event.BIRTH_SENT, conn.session)
        log.info("sync birth sent", extra={"session": conn.session,
                                           "devices": len(body["inventory"])})

    # Runs on a worker thread: TLS files, the TCP connect and the handshake block.
    def _open(self, conn: Connection) -> None:
        s = self.s
        # manual_ack: paho sends no PUBACK by itself (it would, right after on_message, before
        # the controller has recorded anything); conn.received sends them, in order.
        if self.v5:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.store,
                                 protocol=mqtt.MQTTv5, reconnect_on_failure=False,
                                 manual_ack=True)
        else:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.store,
                                 protocol=mqtt.MQTTv311, clean_session=False,
                                 reconnect_on_failure=False, manual_ack=True)
        # Our window is the bound. paho's queue limit sits just above it (the birth is extra),
        # so a bug here shows as MQTT_ERR_QUEUE_SIZE, never as an unbounded queue. paho's own
        # in-flight limit is off (0): with it, paho rescans its whole queue on every PUBACK,
        # which made a 500-message window cost twice the CPU of a 100 one (bench/sync_drain.py).
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(s.inflight + 1)
        client.connect_timeout = s.connect_timeout
        if s.tls:
            client.tls_set_context(self._tls_context())
        conn.will = self._envelope("death", {"session": conn.session,
                                             "instance": conn.instance})
        client.will_set(self._topic("death"), conn.will, qos=1, retain=False)
        client.on_connect = lambda c, u, flags, rc, p: self._thread_connack(
            conn, rc.value, bool(flags.session_present))
        client.on_disconnect = lambda c, u, flags, rc, p: self._thread_lost(conn, str(rc))
        client.on_publish = lambda c, u, mid, rc, p: self._thread_ack(conn, mid, rc)
        client.on_subscribe = lambda c, u, mid, rcs, p: conn.subacked.add(mid)
        client.on_message = lambda c, u, msg: self._thread_message(
            conn, msg.topic, msg.payload, bool(msg.retain),
            conn.received.received(msg.mid, msg.qos), bool(msg.dup))
        conn.received = AckOrder(client.ack, on_failed=lambda r: self._thread_event(
            self._on_unrecorded, conn, r))
        conn.mqtt = client
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = s.session_expiry
            props.ReceiveMaximum = RECEIVE_MAX
            client.connect(s.host, s.port, s.keepalive, clean_start=False, properties=props)
        else:
            client.connect(s.host, s.port, s.keepalive)
        client.loop_start()

    def _path(self, name: str) -> str:
        path = Path(name)
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return str(path)

    def _tls_context(self) -> ssl.SSLContext:
        # Built per connection so a renewed certificate is picked up at the next reconnect.
        s = self.s
        for key in ("tls_ca", "tls_cert", "tls_key"):
            name = getattr(s, key)
            if name and not Path(self._path(name)).is_file():
                raise ValueError(f"sync.{key}: no such file: {self._path(name)}")
        try:
            ctx = ssl.create_default_context(cafile=self._path(s.tls_ca) if s.tls_ca else None)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self._path(s.tls_cert), self._path(s.tls_key))
        except ssl.SSLError as err:
            raise ValueError(f"sync TLS files unusable (sync.tls_ca, tls_cert, tls_key): "
                             f"{err.reason or err}") from err
        except OSError as err:
            raise ValueError(f"sync TLS files unreadable: {err}") from err
        return ctx

    # Events from paho's network thread ---------------------------------------------------------

    def _thread_event(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # The loop closed meanwhile: the agent is exiting.
                pass

    def _thread_fire(self, event: Event, conn: Connection) -> Transition | None:
        # On paho's thread an illegal pair must not end the network loop: it is logged (by the
        # machine) and counted, and the state stays as it was.
        try:
            return self.machine.fire(event, conn.session)
        except IllegalTransition:
            return None

    def _thread_ack(self, conn: Connection, mid: int, rc: ReasonCode | None) -> None:
        # The deque is the hand-over; one wake-up carries every ack that arrived before it ran.
        conn.acks.append((mid, rc.value if rc is not None else 0))
        if not conn.ack_scheduled:
            conn.ack_scheduled = True
            self._thread_event(self._take_acks, conn)

    def _thread_connack(self, conn: Connection, code: int, present: bool) -> None:
        self._thread_fire(Event.CONNACK if code == 0 else Event.REFUSED, conn)
        self._thread_event(self._on_connack, conn, code, present)

    def _thread_lost(self, conn: Connection, reason: str) -> None:
        conn.down = reason
        self._thread_fire(Event.LOST, conn)
        self._thread_event(self._on_lost, conn, reason)

    def _thread_message(self, conn: Connection, topic: str, payload: bytes,
                        retained: bool = False, receipt: Receipt | None = None,
                        dup: bool = False) -> None:
        if topic != self.hub_topic:
            # Acknowledged when the controller has recorded it (receipt.done, on the loop).
            self._thread_event(self._on_message, conn, topic, payload, retained, receipt, dup)
            return
        try:
            self._thread_hub_state(conn, payload, retained, dup)
        finally:
            # The hub's state is acted on here and kept nowhere: its PUBACK may go at once
            # (after those of the messages before it, which AckOrder keeps in order).
            if receipt is not None:
                receipt.done()

    def _thread_hub_state(self, conn: Connection, payload: bytes, retained: bool,
                          dup: bool = False) -> None:
        try:
            online = wire.decode_hub_state(payload)["online"]
        except wire.WireError as err:
            self.bad_hub_states += 1
            log.warning("hub state rejected; treating the hub as offline",
                        extra={"code": err.code, "detail": err.detail[:120]})
            online = False
        if self.s.wait_for_hub is False:
            return
        # A state delivered live (not the retained copy on subscribing) means the hub is
        # subscribed on this broker now. After a broker crash the retained "online" can be
        # stale, and the broker drops what a store sends until the hub subscribes again
        # (Mosquitto 2.0 restores a persistent session's plain subscriptions from its file,
        # not its shared ones). Stale too: a state the broker kept in our session across its
        # restart, redelivered (DUP) or sent queued right after the CONNACK, before our
        # subscription's SUBACK. So live means: not retained, not a redelivery, and after the
        # SUBACK of this connection's own subscription to the hub's state.
        live = not retained and not dup and conn.hub_subscribed()
        event = (Event.HUB_OFFLINE if not online else
                 Event.HUB_LIVE if live else Event.HUB_ONLINE)
        step = self._thread_fire(event, conn)
        if step is not None and step.changed:
            self._thread_event(self._on_hub_state, conn, step, retained)

    def _on_message(self, conn: Connection, topic: str, payload: bytes,
                    retained: bool = False, receipt: Receipt | None = None,
                    dup: bool = False) -> None:
        """A message on a topic other than the hub's state, on the loop: the control plane's
        commands, flags, desired config and bundles (edge_agent/control), which marks the
        receipt done once it has recorded the message."""
        if self.control is not None:
            self.control.on_message(topic, payload, retained, receipt=receipt, dup=dup)
        elif receipt is not None:
            receipt.done()

    def _on_unrecorded(self, conn: Connection, receipt: Receipt) -> None:
        """The controller could not record a message: it gets no PUBACK, and neither can
        anything after it (PUBACKs go in order), so the link is dropped; the broker sends the
        message again (DUP) on the next connection, after the reconnect backoff."""
        self.unrecorded += 1
        if conn.mqtt is None or not self.machine.linked(conn.session):
            return  # already gone: the broker sends it again anyway
        log.error("a message from the hub could not be recorded; reconnecting to get it again",
                  extra={"mid": receipt.mid, "session": conn.session})
        conn.mqtt.disconnect()

    def _on_connack(self, conn: Connection, code: int, present: bool) -> None:
        if not conn.connack.done():
            conn.connack.set_result((code, present))

    def _on_lost(self, conn: Connection, reason: str) -> None:
        if not conn.connack.done():
            conn.connack.set_exception(ConnectionError(f"connection closed: {reason}"))
        self._kick.set()

    def _on_hub_state(self, conn: Connection, step: Transition, retained: bool) -> None:
        """React on the loop to a change the hub's state made (paho's thread made it)."""
        if step.event is Event.HUB_LIVE:
            # The hub published this after we subscribed (it answers births): it is subscribed
            # on this broker, so what we send now reaches it.
            log.info("hub answered; sending the outbox", extra={"session": conn.session})
        came = step.source is State.WAITING_FOR_HUB
        if step.target is State.WAITING_FOR_HUB or came:
            log.info("hub online; sending its birth" if came else
                     "hub offline; holding the outbox",
                     extra={"session": conn.session, "retained": retained})
            self._spawn(self._save_status(hub_online=came, force=True))
        if step.target is not State.WAITING_FOR_HUB:
            # Back online: the hub may have missed our birth while it was away, so one goes on
            # every return; a birth also asks the hub to say its state again, live, which
            # history waits for. Answered live: it may have missed the birth we sent on its
            # stale retained state.
            self._spawn(self._send_birth_then_kick(conn))

    async def _send_birth_then_kick(self, conn: Connection) -> None:
        conn.birth_pending = True
        try:
            await self._send_birth(conn)
        finally:
            conn.birth_pending = False
        self._kick.set()

    def _take_acks(self, conn: Connection) -> None:
        conn.ack_scheduled = False
        refused: list[tuple[int, int]] = []
        while conn.acks:
            mid, code = conn.acks.popleft()
            seq = conn.inflight.pop(mid, None)
            if code >= 0x80:
                refused.append((seq if seq is not None else -1, code))
            elif seq is not None:
                self._to_delete.append(seq)
        if refused:
            # Refused by the broker (ACL, size): the rows stay and go again on the next
            # connection; the cause is a configuration to fix, so say it loudly, once a batch.
            self.rejected += len(refused)
            reason = str(ReasonCode(PacketTypes.PUBACK, identifier=refused[0][1]))
            log.error("broker refused messages; they stay in the outbox", extra={
                "count": len(refused), "first_seq": refused[0][0], "reason": reason})
            self._spawn(self._save_status(
                force=True, last_error=f"broker refused {self.rejected} message(s): {reason}"))
        if self._to_delete and (self._ack_task is None or self._ack_task.done()):
            self._ack_task = asyncio.get_running_loop().create_task(self._write_acks())
        self._kick.set()

    async def _write_acks(self) -> None:
        """Delete acknowledged rows in batches, one transaction (one fsync) per batch."""
        while self._to_delete:
            if len(self._to_delete) < self.s.inflight:
                # Gather a few more acks first: the window refills from the in-flight map, not
                # from these deletes, so waiting costs no throughput, and a crash meanwhile
                # only means a redelivery of the same ids.
                await asyncio.sleep(ACK_GATHER_S)
            seqs, self._to_delete = self._to_delete, []
            try:
                await self.db(self.outbox.ack, seqs)
            except Exception as err:
                # The rows stay in the outbox (a reconnect sends them again, same ids: the hub
                # keeps one); deleting them is tried again with the next acknowledgements.
                self._to_delete = list(dict.fromkeys(seqs + self._to_delete))
                self._ack_failed(err)
                return
            if self._ack_failures:
                log.warning("sync deletes acknowledged rows again",
                            extra={"failures": self._ack_failures})
                self._ack_failures = 0
            self.acked += len(seqs)
            self._status["acked"] += len(seqs)
            self._status["last_ack"] = _now()
            await self._save_status()

    def _ack_failed(self, err: Exception) -> None:
        """One line when deleting acknowledged rows fails, then at most one a minute: a full
        disk fails every batch of acknowledgements while a backlog drains (a traceback each,
        before), and the recorder names the cause too."""
        from edge_agent.recorder import COMMIT_LOG_EVERY_S, commit_problem

        self._ack_failures += 1
        now = self.clock()
        if self._ack_failures > 1 and now - self._ack_logged_at < COMMIT_LOG_EVERY_S:
            return
        self._ack_logged_at = now
        cause = commit_problem(err)
        extra = {"cause": cause or f"{type(err).__name__}: {err}",
                 "rows": len(self._to_delete), "failures": self._ack_failures}
        if cause is None:  # not the disk's doing: a bug, worth its traceback
            log.error("sync could not delete acknowledged rows; will retry", exc_info=err,
                      extra=extra)
        else:
            log.error("sync could not delete acknowledged rows; will retry", extra=extra)

    # Status and shutdown -----------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(_log_failure)

    async def _save_status(self, force: bool = False, **changes: Any) -> None:
        self._status.update(changes)
        now = time.monotonic()
        if not force and now - self._status_written < STATUS_EVERY_S:
            return
        self._status_written = now
        try:
            await self.db(state.write_status, self.outbox.db, dict(self._status))
        except Exception as err:
            from edge_agent.recorder import commit_problem

            cause = commit_problem(err)
            if cause is None:
                log.exception("sync could not save its status")
            else:  # a full disk: the recorder says so once a minute; saved again later
                log.debug("sync could not save its status", extra={"cause": cause})

    def subscribe(self, name: str) -> None:
        """Subscribe on the live connection (the control plane's bundle topics); topics the
        controller lists are subscribed again on every new connection."""
        conn = self._conn
        if conn is not None and conn.mqtt is not None and self.machine.linked(conn.session):
            conn.mqtt.subscribe(name, qos=1)

    def unsubscribe(self, name: str) -> None:
        conn = self._conn
        if conn is not None and conn.mqtt is not None and self.machine.linked(conn.session):
            conn.mqtt.unsubscribe(name)

    @property
    def connected(self) -> bool:
        """Whether a connection is up now."""
        conn = self._conn
        return conn is not None and self.machine.linked(conn.session)

    @property
    def settled(self) -> bool:
        """Whether every acknowledged row has been deleted (no delete pending or running)."""
        return not self._to_delete and (self._ack_task is None or self._ack_task.done())

    def status(self) -> dict[str, Any]:
        """Return the current status (what `edge-agent status` shows)."""
        return dict(self._status)

    async def _leave(self, conn: Connection, linked: bool) -> None:
        """On stop: disconnect asking the broker to publish the Will, so the hub sees us go."""
        if conn.mqtt is not None and linked:
            conn.down = "agent stopping"
            if self.v5:
                conn.mqtt.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT,
                                                           identifier=WITH_WILL))
            else:
                # MQTT 3.1.1 drops the Will on a clean DISCONNECT: send the death ourselves.
                info = conn.mqtt.publish(self._topic("death"), conn.will, qos=1)
                try:
                    await asyncio.wait_for(run_blocking(info.wait_for_publish, 1.0),
                                           DISCONNECT_GRACE_S)
                except (asyncio.TimeoutError, asyncio.CancelledError, RuntimeError,
                        ValueError):
                    pass
                conn.mqtt.disconnect()
            try:
                await asyncio.wait_for(run_blocking(conn.mqtt.loop_stop), DISCONNECT_GRACE_S)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass

    async def _teardown(self, conn: Connection) -> None:
        # The link is over for the machine whatever ended it (stays STOPPING during a stop).
        self.machine.fire(Event.LOST, conn.session)
        if conn.received is not None:
            # No PUBACK goes out on a later connection for a message of this one: paho does not
            # check ids, and the broker sends what it has no PUBACK for again (DUP).
            left = conn.received.close()
            if left:
                log.info("received messages left unacknowledged; the broker sends them again",
                         extra={"count": left, "session": conn.session})
        client = conn.mqtt
        if client is not None:
            if conn.down is None:
                # Not lost (CONNACK refused or never came): close it; the thread then ends.
                conn.down = "closed"
                client.disconnect()
            await run_blocking(client.loop_stop)
            sock = client.socket()
            if sock is not None:
                sock.close()
        if self._conn is conn:
            self._conn = None

    async def _close(self) -> None:
        """On stop: let the last deletes of acknowledged rows finish and save the status."""
        self.machine.fire(Event.STOP)
        if self._ack_task is not None and not self._ack_task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._ack_task), DISCONNECT_GRACE_S)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
        self._status.update(connected=False, since=_now(), hub_online=False)
        try:
            await asyncio.wait_for(self.db(state.write_status, self.outbox.db,
                                           dict(self._status)), DISCONNECT_GRACE_S)
        except Exception:  # noqa: BLE001 - the database may already be closing
            pass
        self.machine.fire(Event.CLOSED)


def _now() -> str:
    return format_ts(utcnow())


def _describe(err: BaseException) -> str:
    if isinstance(err, asyncio.TimeoutError):
        return "timed out"
    if isinstance(err, ssl.SSLError):
        return f"TLS: {err.reason or err}"
    return str(err) or type(err).__name__


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("sync task failed", exc_info=task.exception())
