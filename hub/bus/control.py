"""The control plane's MQTT link: publish commands, flags and bundles at QoS 1, take the stores'
results with an acknowledgement after the caller has stored them (paho `manual_ack`).

Here because only hub.bus imports paho; what to publish and what a result means is decided in
hub/control.py. Callbacks run on paho's network thread: `on_result(topic, payload) -> bool`
(True: acknowledge; False: leave it for the broker to redeliver after a reconnect) and
`on_lost()`. PUBACKs are queued as message ids for the publishing thread to drain (`acks()`),
never handled under a lock paho holds.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable

import paho.mqtt.client as mqtt

log = logging.getLogger("hub.bus.control")


class ControlLink:
    """One connection of its own (client id `<worker>-cmd`) beside ingest's."""

    def __init__(self, host: str, port: int, client_id: str, result_filter: str, *,
                 mqtt5: bool = True, keepalive: int = 30, queue_max: int = 4000,
                 on_result: Callable[[str, bytes], bool], on_lost: Callable[[], None]):
        self.host, self.port, self.keepalive, self.mqtt5 = host, port, keepalive, mqtt5
        self.result_filter = result_filter
        self.on_result, self.on_lost = on_result, on_lost
        kwargs: dict = {"client_id": client_id, "manual_ack": True}
        if mqtt5:
            kwargs["protocol"] = mqtt.MQTTv5
        else:
            kwargs.update(protocol=mqtt.MQTTv311, clean_session=False)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.client.max_queued_messages_set(queue_max)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.connected = threading.Event()
        self._acks: deque[int] = deque()

    def start(self) -> "ControlLink":
        if self.mqtt5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 7 * 86400
            self.client.connect_async(self.host, self.port, self.keepalive, clean_start=False,
                                      properties=props)
        else:
            self.client.connect_async(self.host, self.port, self.keepalive)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int | None:
        """Queue a QoS 1 publish; return its message id, or None if paho refused it."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("publish not queued", extra={"topic": topic[:200],
                                                     "rc": mqtt.error_string(info.rc)})
            return None
        return info.mid

    def acks(self) -> list[int]:
        """The message ids the broker acknowledged since the last call."""
        out = []
        while self._acks:
            out.append(self._acks.popleft())
        return out

    # paho's thread ------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, rc, props=None) -> None:
        if getattr(rc, "is_failure", False):
            log.error("control link refused", extra={"reason": str(rc)})
            return
        client.subscribe(self.result_filter, qos=1)
        self.connected.set()
        log.info("commander connected", extra={"results": self.result_filter})

    def _on_disconnect(self, client, userdata, flags, rc, props=None) -> None:
        self.connected.clear()
        self._acks.clear()
        self.on_lost()

    def _on_publish(self, client, userdata, mid, rc=None, props=None) -> None:
        self._acks.append(mid)  # deque.append is atomic; paho holds its own lock here

    def _on_message(self, client, userdata, msg) -> None:
        if self.on_result(msg.topic, msg.payload):
            client.ack(msg.mid, msg.qos)
