"""The hub worker's control plane: publish signed commands and flags, take the stores' results.

One MQTT connection of its own beside ingest (client id `<worker>-cmd`):
- every POLL_S it claims queued commands (hub/domains/commands) and publishes each at QoS 1 on
  the store's cmd topic; the broker's PUBACK marks it delivered (the store's persistent session
  holds it while the store is offline, until it expires);
- it publishes each store's signed flags document that changed, retained, at QoS 1;
- it subscribes to `{prefix}/+/+/cmd/result` (a shared subscription when workers share the
  stream), checks each result field by field, records it in one transaction (the command's
  status, the store's refusal counts, the flags version applied, the audit entry) and only then
  acknowledges it (paho manual_ack), so a result is never lost to a hub crash.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable

import paho.mqtt.client as mqtt

from edge_protocol import commands as proto
from edge_protocol.errors import ProtocolError

log = logging.getLogger("hub.commander")

POLL_S = 0.1
ROLLOUT_EVERY_S = 1.0  # rollouts' gates are looked at this often
MAX_RESULT_BYTES = 64 * 1024
CLAIM_MAX = 500


@dataclass
class CommanderSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "edge-hub"
    prefix: str = "edge/v1"
    shared: bool = True
    mqtt5: bool = True
    keepalive: int = 30
    group: str = "hub"


def parse_result_topic(name: str, prefix: str) -> tuple[str, str]:
    """(region, store) of `{prefix}/{region}/{store}/cmd/result`, or ProtocolError."""
    if not name.startswith(prefix + "/"):
        raise ProtocolError("bad_topic", name[:200])
    parts = name[len(prefix) + 1:].split("/")
    if (len(parts) != 4 or parts[2:] != ["cmd", "result"] or not proto.ID.match(parts[0])
            or not proto.ID.match(parts[1])):
        raise ProtocolError("bad_topic", name[:200])
    return parts[0], parts[1]


def decode_result(payload: bytes, topic: str, prefix: str) -> tuple[str, str, str, dict]:
    """(region, store, envelope id, body) of a result envelope, checked field by field."""
    region, store = parse_result_topic(topic, prefix)
    if len(payload) > MAX_RESULT_BYTES:
        raise ProtocolError("oversized", f"{len(payload)} bytes")
    try:
        env = json.loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ProtocolError("not_json", str(err)[:120]) from err
    if not isinstance(env, dict) or env.get("v") != proto.VERSION:
        raise ProtocolError("bad_envelope", "not a version 1 envelope")
    if env.get("kind") != proto.RESULT_KIND:
        raise ProtocolError("unknown_kind", str(env.get("kind"))[:40])
    if env.get("store") != store or env.get("region") != region:
        raise ProtocolError("topic_mismatch", "envelope of another store")
    env_id = env.get("id")
    if not isinstance(env_id, str) or not proto.UUID.match(env_id):
        raise ProtocolError("bad_envelope", "id: not a UUID")
    return region, store, env_id, proto.check_result(env.get("body"))


class Commander:
    """Publishes commands and flags, records results; runs on its own threads."""

    def __init__(self, db: Any, settings: CommanderSettings, clock: Callable[[], float] = time.time,
                 ring: Any = None):
        self.db = db
        self.ring = ring  # the key ring: rollouts re-sign desired states (None: no rollouts)
        self._rollout_at = 0.0
        self.s = settings
        self.clock = clock
        self.owner = f"{settings.client_id}-cmd"
        kwargs: dict[str, Any] = {"client_id": self.owner, "manual_ack": True}
        if settings.mqtt5:
            kwargs["protocol"] = mqtt.MQTTv5
        else:
            kwargs.update(protocol=mqtt.MQTTv311, clean_session=False)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.client.max_queued_messages_set(CLAIM_MAX * 4)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self._pending: dict[int, tuple[str, Any]] = {}  # mid -> ("cmd", id) | ("flags", (s, v))
        self._acks: deque[int] = deque()
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats: Counter[str] = Counter()
        filt = f"{settings.prefix}/+/+/cmd/result"
        self.result_filter = f"$share/{settings.group}-cmd/{filt}" if settings.shared else filt

    def start(self) -> "Commander":
        from hub.domains.commands import rules as commands
        from hub.domains.flags import rules as flags

        from hub.domains.rollout import rules as rollout

        commands.ensure_schema(self.db)
        flags.ensure_schema(self.db)
        rollout.ensure_schema(self.db)
        if self.s.mqtt5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 7 * 86400
            self.client.connect_async(self.s.host, self.s.port, self.s.keepalive,
                                      clean_start=False, properties=props)
        else:
            self.client.connect_async(self.s.host, self.s.port, self.s.keepalive)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="commander", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    # paho's thread ------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, rc, props=None) -> None:
        if getattr(rc, "is_failure", False):
            log.error("commander connection refused", extra={"reason": str(rc)})
            return
        client.subscribe(self.result_filter, qos=1)
        self._connected.set()
        log.info("commander connected", extra={"results": self.result_filter})

    def _on_disconnect(self, client, userdata, flags, rc, props=None) -> None:
        self._connected.clear()
        with self._lock:
            lost = [ref for kind, ref in self._pending.values() if kind == "cmd"]
            self._pending.clear()
            self._acks.clear()
        if lost:
            from hub.domains.commands import rules as commands

            with self.db.transaction() as tx:
                commands.unclaim(tx, lost)

    def _on_publish(self, client, userdata, mid, rc=None, props=None) -> None:
        # No lock here: paho holds its own while calling us, and publish() takes that one.
        self._acks.append(mid)  # deque.append is atomic

    def _on_message(self, client, userdata, msg) -> None:
        from hub.domains.commands import rules as commands
        from hub.domains.flags import rules as flags

        try:
            region, store, env_id, body = decode_result(msg.payload, msg.topic, self.s.prefix)
        except ProtocolError as err:
            self.stats[f"rejected.{err.code}"] += 1
            log.warning("result rejected", extra={"code": err.code, "detail": err.detail[:120]})
            client.ack(msg.mid, msg.qos)
            return
        try:
            with self.db.transaction() as tx:
                outcome = commands.record_result(tx, self.clock, store, region, body, env_id)
                if body["type"] == "flags" and body["status"] == "applied" and \
                        body.get("flags_version"):
                    flags.applied(tx, self.clock, store, body["flags_version"])
                if body["type"] == "bundle":
                    from hub.domains.rollout import rules as rollout

                    rollout.record_report(tx, self.clock, store, body)
        except Exception:
            # Not acknowledged: the broker redelivers it after a reconnect.
            log.exception("could not record a result", extra={"store": store})
            return
        self.stats[f"result.{body['status']}"] += 1
        self.stats[f"outcome.{outcome}"] += 1
        client.ack(msg.mid, msg.qos)

    # The publishing thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            if not self._connected.is_set():
                continue
            try:
                self._round()
            except Exception:
                log.exception("commander round failed")

    def _round(self) -> None:
        from hub.domains.commands import rules as commands
        from hub.domains.flags import rules as flags
        from hub.domains.rollout import rules as rollout

        acks = []
        while self._acks:
            acks.append(self._acks.popleft())
        with self._lock:
            done = [self._pending.pop(mid) for mid in acks if mid in self._pending]
        if done:
            with self.db.transaction() as tx:
                for kind, ref in done:
                    if kind == "cmd":
                        commands.delivered(tx, self.clock, ref)
                        self.stats["delivered"] += 1
                    elif kind == "flags":
                        flags.published(tx, self.clock, *ref)
                        self.stats["flags_published"] += 1
                    elif kind == "content":
                        rollout.content_published(tx, self.clock, ref)
                    else:
                        rollout.desired_published(tx, self.clock, *ref)
        with self.db.transaction() as tx:
            claimed = commands.claim(tx, self.clock, self.owner, CLAIM_MAX)
        for cid, region, store, payload in claimed:
            self._send(f"{self.s.prefix}/{region}/{store}/cmd", payload, ("cmd", cid), False)
        with self._lock:
            waiting = {ref for kind, ref in self._pending.values() if kind == "flags"}
        with self.db.read() as tx:
            docs = flags.to_publish(tx, CLAIM_MAX)
        for store, region, version, payload in docs:
            if (store, version) in waiting:
                continue
            self._send(f"{self.s.prefix}/{region}/{store}/flags", payload,
                       ("flags", (store, version)), True)
        self._bundles(rollout)

    def _bundles(self, rollout) -> None:
        """Bundle contents (retained, content-addressed), desired states, rollouts' gates."""
        with self._lock:
            waiting = {(kind, ref if kind == "content" else tuple(ref))
                       for kind, ref in self._pending.values() if kind in ("content", "desired")}
        with self.db.read() as tx:
            contents = rollout.contents_to_publish(tx)
            desired = rollout.desired_to_publish(tx, CLAIM_MAX)
        for sha, data in contents:  # before any desired state that names them
            if ("content", sha) not in waiting:
                self._send(f"{self.s.prefix}/bundles/{sha}", data, ("content", sha), True)
        for store, region, version, payload in desired:
            if ("desired", (store, version)) not in waiting:
                self._send(f"{self.s.prefix}/{region}/{store}/config", payload,
                           ("desired", (store, version)), True)
        if self.ring is None or time.monotonic() - self._rollout_at < ROLLOUT_EVERY_S:
            return
        self._rollout_at = time.monotonic()
        with self.db.transaction() as tx:
            tx.execute("SELECT store, region, birth_session FROM stores")
            rows = tx.fetchall()
            stores = {s: r for s, r, _ in rows}
            sessions = {s: int(b) for s, _, b in rows if b is not None and b >= 0}
            for rid, what in rollout.tick(tx, self.clock, self.ring, rollout.fleet_health,
                                          stores, sessions):
                log.warning("rollout " + what, extra={"rollout": rid})

    def _send(self, topic: str, payload: bytes, ref: tuple[str, Any], retain: bool) -> None:
        # Only this thread publishes and reads acks, so the PUBACK of this mid is handled in a
        # later round, after _pending knows it.
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            with self._lock:
                self._pending[info.mid] = ref
            self.stats["published"] += 1
            return
        log.warning("publish not queued", extra={"topic": topic,
                                                 "rc": mqtt.error_string(info.rc)})
        if ref[0] == "cmd":
            from hub.domains.commands import rules as commands

            with self.db.transaction() as tx:
                commands.unclaim(tx, [ref[1]])
