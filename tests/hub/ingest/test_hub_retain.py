"""Retain on store topics (issue 15): the hub ignores retained messages on store topics
(counted as `retained`, tested in test_hub_poison.py); the broker cannot deny them by topic.

Mosquitto 2.0 has one switch, `retain_available`, which applies to every client and topic
(mosquitto.conf(5): "This option applies globally"); its ACL file and dynamic security plugin
have no retain permission. Turning it off would also refuse the hub's own retained
`edge/v1/hub/state`, which stores need. This test pins that fact on the real broker, so the
packaging's choice (not setting it) is revisited if a Mosquitto ever allows more.
"""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt

from brokers import Mosquitto


def _publish_retained(broker, topic: str) -> bool:
    """Publish one retained message at QoS 1; return whether the broker acknowledged it
    (True) or dropped the connection for it (False): both are signals, no timing."""
    done, gone = threading.Event(), threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="retain-probe",
                         protocol=mqtt.MQTTv5)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.on_disconnect = lambda *a: (gone.set(), done.set())
    client.on_publish = lambda *a: done.set()
    client.connect(broker.host, broker.port, 30)
    client.loop_start()
    try:
        assert connected.wait(10)
        client.publish(topic, b'{"v":1,"online":true}', qos=1, retain=True)
        assert done.wait(10), "neither a PUBACK nor a disconnect"
        return not gone.is_set()
    finally:
        client.disconnect()
        client.loop_stop()


def test_retain_available_false_refuses_the_hubs_own_state_too(tmp_path):
    off = Mosquitto(tmp_path / "off", extra_conf="retain_available false").start()
    on = Mosquitto(tmp_path / "on").start()
    try:
        assert not _publish_retained(off, "edge/v1/hub/state")
        assert not _publish_retained(off, "edge/v1/r1/s1/telemetry")
        assert _publish_retained(on, "edge/v1/hub/state")
    finally:
        off.kill()
        on.kill()
