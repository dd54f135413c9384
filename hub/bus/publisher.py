"""A QoS 1 publisher for what the hub sends outside ingest's feed (commands, configs, flags).

Here because only hub.bus imports paho. Bounded: at most `inflight` messages unacknowledged,
publish() waits for the broker's PUBACK up to a timeout and raises BrokerError otherwise.
"""

from __future__ import annotations

import uuid

from hub.errors import BrokerError


class Publisher:
    """One MQTT v5 connection that publishes at QoS 1 and waits for each PUBACK."""

    def __init__(self, host: str, port: int, client_id: str | None = None,
                 inflight: int = 100, keepalive: int = 30):
        import paho.mqtt.client as mqtt

        self._mqtt = mqtt
        self.host, self.port = host, port
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"edge-hub-pub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(inflight)
        self.client.max_queued_messages_set(inflight)
        self.keepalive = keepalive

    def connect(self) -> "Publisher":
        try:
            self.client.connect(self.host, self.port, self.keepalive)
        except (OSError, ValueError) as err:
            raise BrokerError(f"cannot reach the broker at {self.host}:{self.port}: "
                              f"{getattr(err, 'strerror', None) or err}") from err
        self.client.loop_start()
        return self

    def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                timeout: float = 10.0) -> None:
        """Publish at QoS 1 and wait for the PUBACK (raise BrokerError if it does not come)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN):
            raise BrokerError(f"cannot publish on {topic[:200]}: "
                              f"{self._mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as err:
            raise BrokerError(f"cannot publish on {topic[:200]}: {err}") from err
        if not info.is_published():
            raise BrokerError(f"the broker did not acknowledge {topic[:200]} within {timeout} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
