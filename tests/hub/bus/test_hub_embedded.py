"""The embedded broker (amqtt, MQTT 3.1.1): one hub worker on a plain subscription."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid

import paho.mqtt.client as mqtt

from conftest import ROOT, agent_env, free_port
import edge_protocol as wire
from hub.domains import alerts as alert_domain, fleet
from hub.app import open_store
from hubkit import envelope, telemetry
from wait import wait_until


def test_the_hub_with_its_embedded_broker_ingests_from_an_mqtt_3_1_1_store(tmp_path):
    port = free_port()
    db = str(tmp_path / "hub.db")
    log = tmp_path / "hub.log"
    out = tmp_path / "hub.out"
    with open(log, "wb") as err, open(out, "wb") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "hub", "serve", "--embedded-broker",
                                 "--broker", f"127.0.0.1:{port}", "--db", db,
                                 "--log-format", "json"], env=agent_env(), cwd=ROOT,
                                stdout=stdout, stderr=err)
    try:
        wait_until(lambda: out.read_text().startswith("READY edge-hub worker="), what=
                   "the hub's READY line on its embedded broker", detail=log.read_text,
                   gone=lambda: proc.poll() is not None and f"hub exited {proc.poll()}")
        assert "edge/v1/+/+/#" in log.read_text()  # plain subscription: amqtt has no $share
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"s-{uuid.uuid4().hex[:6]}",
                          protocol=mqtt.MQTTv311)
        pub.connect("127.0.0.1", port, 30)
        pub.loop_start()
        envs = [envelope("telemetry", telemetry(2), seq=i) for i in range(1, 21)]
        for env in envs:
            pub.publish(wire.topic("r1", "s1", "telemetry"), wire.encode(env),
                        qos=1).wait_for_publish(10)
        pub.disconnect()
        pub.loop_stop()

        def stored():
            store = open_store(db)
            try:
                return fleet.message_count(store)
            finally:
                store.close()

        wait_until(lambda: stored() == len(envs), what="every message stored")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
