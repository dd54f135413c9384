"""A small paho subscriber standing in for the hub: persistent session, counts by envelope id."""

from __future__ import annotations

import collections
import json
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import edge_protocol as wire
from wait import wait_until


# Re-exported for tests written before tests/support/wait.py; new tests import it from wait.
__all__ = ["HubStandIn", "tls_context", "wait_until"]


def tls_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class HubStandIn:
    """Subscribes to every store's topics with a persistent session and records what arrives."""

    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None = None,
                 client_id: str = "hub", prefix: str = wire.DEFAULT_PREFIX):
        self.prefix = prefix
        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes]] = []   # every delivery, in order
        self.by_id: dict[str, list[bytes]] = collections.defaultdict(list)
        self.kinds: dict[str, tuple[str, int]] = {}
        self.errors: list[str] = []
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.disconnects = 0
        self.state: bool | None = None  # what publish_state said last
        self.answer_births = True  # False: a hub whose answers never arrive
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(0.1, 0.5)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(host, port, 30, clean_start=False, properties=props)
        self.client.loop_start()
        wait_until(self.subscribed.is_set, what="the hub stand-in to subscribe")

    def _on_connect(self, client, userdata, flags, rc, props):
        if rc.is_failure:
            self.errors.append(f"connect refused: {rc}")
            return
        client.subscribe([(f"{self.prefix}/+/+/+", 1), (f"{self.prefix}/hub/state", 1)])
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, rc, props):
        self.connected.clear()
        self.subscribed.clear()
        self.disconnects += 1

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload))
            if msg.topic.endswith("/hub/state"):
                return
            try:
                env = wire.decode(msg.payload, msg.topic, self.prefix)
            except wire.WireError as err:
                self.errors.append(f"{msg.topic}: {err}")
                return
            self.by_id[env.id].append(msg.payload)
            self.kinds[env.id] = (env.kind, env.seq)
            if env.kind == "birth" and self.state and self.answer_births:
                # As the hub does: say the state again, live, so the store sends its history.
                client.publish(wire.hub_state_topic(self.prefix),
                               wire.encode_hub_state(True, "2026-11-22T15:00:00Z"), qos=1,
                               retain=True)

    def publish_state(self, online: bool) -> None:
        """Publish the hub's retained state and wait for the broker to have it."""
        self.state = online
        info = self.client.publish(wire.hub_state_topic(self.prefix),
                                   wire.encode_hub_state(online, "2026-11-22T15:00:00Z"),
                                   qos=1, retain=True)
        info.wait_for_publish(10)

    def envelopes(self, kind: str | None = None) -> list[dict]:
        """Every delivered envelope (duplicates included) of one kind, in arrival order."""
        with self.lock:
            out = []
            for topic, payload in self.messages:
                if topic.endswith("/hub/state"):
                    continue
                env = json.loads(payload)
                if kind is None or env.get("kind") == kind:
                    out.append(env)
            return out

    def ids(self, kinds: tuple[str, ...] = ("telemetry", "decision", "alert", "event")) -> set[str]:
        """The ids of every envelope of these kinds received (outbox rows, by default)."""
        with self.lock:
            return {i for i, (kind, _) in self.kinds.items() if kind in kinds}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
