"""Benchmark: how soon the hub answers stores' births with its state, and how soon a store
killed without a goodbye is offline at the hub (its Will), against a real Mosquitto.

The tests check what happens (a live answer, at most once a second; offline by the Will after
the kill); how fast is measured here, on this machine, and never asserted. Prints one line per
figure; figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support")]

import paho.mqtt.client as mqtt  # noqa: E402

from brokers import Mosquitto  # noqa: E402
from hubkit import HubProcess, Publisher, birth_body, envelope  # noqa: E402
from testenv import agent_env  # noqa: E402

import edge_protocol as wire  # noqa: E402
from hub.app import open_store  # noqa: E402
from hub.domains import fleet  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
KEEPALIVE = 2

# A store stand-in in its own process (so SIGKILL is a real crash): birth, Will, then silence.
STORE = """
import sys, time
import paho.mqtt.client as mqtt
host, port, topic, will, birth_topic, birth = sys.argv[1:7]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=sys.argv[7], protocol=mqtt.MQTTv5)
c.will_set(topic, will.encode(), qos=1)
c.connect(host, int(port), int(sys.argv[8]))
c.loop_start()
c.publish(birth_topic, birth.encode(), qos=1).wait_for_publish(10)
print("up", flush=True)
time.sleep(3600)
"""


def state_answers(broker, hub_db: str) -> list[float]:
    """Seconds from a burst of 30 births to the hub's live state, once per round."""
    seen: list[float] = []
    lock = threading.Lock()
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-watch",
                          protocol=mqtt.MQTTv5)

    def on_message(client, userdata, msg):
        if not msg.retain:
            with lock:
                seen.append(time.monotonic())

    watcher.on_message = on_message
    watcher.connect(broker.host, broker.port, 30)
    watcher.subscribe(wire.hub_state_topic(), qos=1)
    watcher.loop_start()
    pub = Publisher(broker)
    out = []
    try:
        for r in range(ROUNDS):
            time.sleep(1.5)  # past the once-a-second throttle
            with lock:
                before = len(seen)
            start = time.monotonic()
            for i in range(30):
                pub.send(envelope("birth", birth_body(1), store=f"b{r}-{i}"))
            deadline = start + 30
            while time.monotonic() < deadline:
                with lock:
                    if len(seen) > before:
                        out.append(seen[before] - start)
                        break
                time.sleep(0.005)
    finally:
        pub.close()
        watcher.disconnect()
        watcher.loop_stop()
    return out


def will_latency(broker, hub_db: str) -> list[float]:
    """Seconds from SIGKILL of a store to its store row offline at the hub, once per round."""
    out = []
    for r in range(ROUNDS):
        store = f"killed-{r}"
        will = wire.encode(envelope("death", {"session": 1}, store=store, seq=0)).decode()
        birth = wire.encode(envelope("birth", birth_body(1), store=store, seq=0)).decode()
        proc = subprocess.Popen(
            [sys.executable, "-c", STORE, broker.host, str(broker.port),
             wire.topic("r1", store, "death"), will, wire.topic("r1", store, "birth"), birth,
             f"bench-{store}", str(KEEPALIVE)],
            stdout=subprocess.PIPE, text=True, env=agent_env())
        try:
            assert proc.stdout.readline().strip() == "up"
            while _online(hub_db, store) is not True:
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            proc.wait(10)
            deadline = killed + 10 * KEEPALIVE
            while _online(hub_db, store) is not False and time.monotonic() < deadline:
                time.sleep(0.02)
            out.append(time.monotonic() - killed)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out


def _online(hub_db: str, store: str):
    db = open_store(hub_db)
    try:
        return next((s["online"] for s in fleet.stores(db) if s["store"] == store), None)
    finally:
        db.close()


def show(name: str, values: list[float]) -> None:
    print(f"{name}: median {statistics.median(values):.3f} s, min {min(values):.3f}, "
          f"max {max(values):.3f} ({len(values)} rounds; load {os.getloadavg()[0]:.1f})")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker").start()
        hub_db = str(work / "hub.db")
        hub = HubProcess(broker, hub_db, "bench-hub", log_path=work / "hub.log").start()
        try:
            hub.wait_connected()
            show("30 births -> the hub's live state", state_answers(broker, hub_db))
            # The kernel closes a killed process's socket, so the broker sends the Will at once;
            # only a silent link (a cable pulled) waits for 1.5 keep-alives.
            show(f"SIGKILL of a store (keep-alive {KEEPALIVE} s) -> offline at the hub",
                 will_latency(broker, hub_db))
        finally:
            hub.terminate()
            broker.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
