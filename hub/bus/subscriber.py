"""A plain MQTT subscriber for watchers (the demo's feed view): connect, subscribe, callback.

Here because only hub.bus imports paho.
"""

from __future__ import annotations

import uuid
from typing import Callable


class Subscriber:
    """Subscribe to topic filters on a broker; on_message(topic, payload) on paho's thread."""

    def __init__(self, host: str, port: int, filters: list[tuple[str, int]],
                 on_message: Callable[[str, bytes], None], client_prefix: str = "edge-watch"):
        import paho.mqtt.client as mqtt

        self.host, self.port, self.filters = host, port, filters
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311,
                                  client_id=f"{client_prefix}-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, u, f, r, p=None: c.subscribe(self.filters)
        self.client.on_message = lambda c, u, msg: on_message(msg.topic, msg.payload)

    def connect(self) -> None:
        """Connect once (raise OSError if the broker does not listen) and start the loop."""
        self.client.connect(self.host, self.port, 30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
