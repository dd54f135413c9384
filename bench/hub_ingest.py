"""Benchmark: what one hub worker persists from a real Mosquitto, beside mosquitto_sub.

1. Flood: N QoS 1 telemetry messages (about 200 bytes, one reading each) are queued in the
   broker for an offline persistent session, then drained: once by `mosquitto_sub` (which only
   prints them), once by one hub worker (validate, store in SQLite, acknowledge after commit).
   The broker holds the whole flood first, so the figure is the consumer's rate, not the
   publisher's. Rounds alternate the two to share the machine's noise.
2. Backlog: one 50-device store's 24 hours (432,000 readings, 200 a telemetry envelope) published
   to a running hub as fast as a bounded window allows (as the agent's sync drains its outbox
   after a reconnect), with a fresh alert raised half-way; we time the drain and how long the
   alert takes to reach the hub (committed) and its regional feed. Without the `sync` branch
   merged, a paho publisher plays the agent's sync client (alerts leave the outbox first).

3. Workers: the same flood drained by N hub worker processes (default 2, one a core) on one
   shared subscription and one SQLite file.

Run: python bench/hub_ingest.py [--messages 100000] [--rounds 2] [--workers 2] [--no-backlog]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import paho.mqtt.client as mqtt  # noqa: E402

from brokers import Mosquitto  # noqa: E402
from edge_agent import wire  # noqa: E402
from edge_agent.outbox import uuid7  # noqa: E402
from edge_agent.reading import format_ts, utcnow  # noqa: E402
from hub import fleet  # noqa: E402
from hub.ingest import Settings  # noqa: E402
from hub.serve import Hub  # noqa: E402
from hub.store import open_store  # noqa: E402
from hubkit import Publisher  # noqa: E402


def small_message(seq: int, ts: str) -> bytes:
    env = {"v": 1, "id": uuid7(), "seq": seq, "store": "s1", "region": "r1", "ts": ts,
           "kind": "telemetry", "body": {"readings": [
               {"device": "p1", "kind": "host", "ts": ts, "values": {}, "stale": False}]}}
    return wire.encode(env)


def flood_broker(broker: Mosquitto, items: list[tuple[str, bytes]]) -> None:
    pub = Publisher(broker, inflight=1000)
    pub.publish_all(items, window=2000)
    pub.close()


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def drain_mosquitto_sub(broker: Mosquitto, flood: list[tuple[str, bytes]], prefix: str,
                        version: str = "mqttv5") -> dict:
    base = ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-V", version, "-c",
            "-i", f"sub-{prefix}", "-q", "1", "-t", f"{prefix}/+/+/#"]
    if version == "mqttv5":
        base += ["-x", "86400"]
    subprocess.run(base + ["-E"], check=True, capture_output=True, timeout=30)
    flood_broker(broker, flood)
    cpu0, t0 = cpu_children(), time.perf_counter()
    subprocess.run(base + ["-C", str(len(flood))], check=True, stdout=subprocess.DEVNULL,
                   timeout=600)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "cpu_s": cpu_children() - cpu0, "msg_s": len(flood) / wall}


def drain_hub(broker: Mosquitto, flood: list[tuple[str, bytes]], db_path: Path,
              prefix: str) -> dict:
    settings = Settings(host=broker.host, port=broker.port, client_id=f"hub-{prefix}",
                        prefix=prefix)
    db = open_store(str(db_path))
    hub = Hub(db, settings).start()  # registers the persistent session and subscription
    hub.stop()
    flood_broker(broker, flood)
    db = open_store(str(db_path))
    before = fleet.message_count(db)
    hub = Hub(db, settings)
    cpu0, t0 = time.process_time(), time.perf_counter()
    hub.start()
    while hub.ingest.counts["stored"] < len(flood):
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    hub.stop()
    stored = fleet.message_count(db) - before
    db.close()
    assert stored == len(flood), f"stored {stored} of {len(flood)}"
    return {"wall_s": wall, "cpu_s": cpu, "msg_s": len(flood) / wall,
            "readings_s": len(flood) / wall}


def run_worker(host: str, port: int, prefix: str, client_id: str, db_path: str) -> int:
    """One hub worker in its own process (--worker): ready, wait for "go", drain, stop on EOF."""
    settings = Settings(host=host, port=port, client_id=client_id, prefix=prefix)
    db = open_store(db_path)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    hub = Hub(db, settings).start()
    sys.stdin.readline()  # the bench closes our stdin when every message is stored
    hub.stop()
    db.close()
    return 0


def drain_workers(broker: Mosquitto, flood: list[tuple[str, bytes]], db_path: Path,
                  prefix: str, workers: int) -> dict:
    """N worker processes on one shared subscription and one SQLite file (N cores)."""
    ids = [f"hub-{prefix}-{i}" for i in range(workers)]
    db = open_store(str(db_path))
    for cid in ids:  # each worker's persistent session joins the shared subscription
        Hub(db, Settings(host=broker.host, port=broker.port, client_id=cid,
                         prefix=prefix)).start().stop()
    flood_broker(broker, flood)
    before = fleet.message_count(db)
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", broker.host,
                               str(broker.port), prefix, cid, str(db_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for cid in ids]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    cpu0, t0 = cpu_children(), time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    deadline = time.monotonic() + 600
    while fleet.message_count(db) - before < len(flood) and time.monotonic() < deadline:
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    for p in procs:
        p.stdin.close()
    for p in procs:
        p.wait(30)
    stored = fleet.message_count(db) - before
    db.close()
    assert stored == len(flood), f"stored {stored} of {len(flood)}"
    return {"workers": workers, "wall_s": wall, "cpu_s": cpu_children() - cpu0,
            "msg_s": len(flood) / wall}


def backlog(broker: Mosquitto, db_path: Path, devices: int = 50, hours: int = 24,
            interval_s: int = 10, per_envelope: int = 200) -> dict:
    """Drain a store's backlog through a running hub; time a fresh alert raised half-way."""
    readings_total = devices * hours * 3600 // interval_s
    start = time.time() - hours * 3600
    envs = []
    batch: list[dict] = []
    seq = 0
    for i in range(readings_total):
        ts = format_ts(utcnow().fromtimestamp(start + (i // devices) * interval_s,
                                              utcnow().tzinfo))
        batch.append({"device": f"d{i % devices:02d}", "kind": "host", "ts": ts,
                      "values": {"host.cpu_pct": 12.5, "host.mem_pct": 40.1,
                                 "device.status": "ok"}, "stale": False, "reason": None})
        if len(batch) == per_envelope:
            seq += 1
            envs.append(("edge/v1/r1/big/telemetry", wire.encode({
                "v": 1, "id": uuid7(), "seq": seq, "store": "big", "region": "r1",
                "ts": ts, "kind": "telemetry", "body": {"readings": batch}})))
            batch = []
    settings = Settings(host=broker.host, port=broker.port, client_id="bench-hub-live")
    db = open_store(str(db_path))
    hub = Hub(db, settings).start()
    got_feed = threading.Event()
    feed = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-feed",
                       protocol=mqtt.MQTTv5)
    feed_at: list[float] = []
    feed.on_message = lambda c, u, m: (feed_at.append(time.perf_counter()), got_feed.set())
    feed.connect(broker.host, broker.port, 60)
    feed.subscribe(wire.alert_feed_topic("r1", "big"), qos=1)
    feed.loop_start()
    time.sleep(0.5)
    pub = Publisher(broker, inflight=1000)
    now = format_ts(utcnow())
    alert = wire.encode({"v": 1, "id": uuid7(), "seq": seq + 1, "store": "big", "region": "r1",
                         "ts": now, "kind": "alert", "body": {
                             "alert": "d07:offline", "device": "d07", "what": "offline",
                             "state": "raised", "severity": "critical", "since": now,
                             "ts": now, "explanation": ["no answer for 3 polls"],
                             "decision": None}})
    half = len(envs) // 2
    cpu0, t0 = time.process_time(), time.perf_counter()
    pub.publish_all(envs[:half], window=200)
    t_alert = time.perf_counter()
    pub.client.publish("edge/v1/r1/big/alert", alert, qos=1)
    pub.publish_all(envs[half:], window=200)
    t_pub = time.perf_counter()
    while hub.ingest.counts["stored"] < len(envs) + 1:
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    got_feed.wait(30)
    hub.stop()
    pub.close()
    feed.disconnect()
    feed.loop_stop()
    n = fleet.message_count(db)
    db.close()
    assert n == len(envs) + 1, n
    return {"envelopes": len(envs), "readings": readings_total,
            "bytes": sum(len(p) for _, p in envs), "publish_s": t_pub - t0, "drain_s": wall,
            "cpu_s": cpu, "readings_s": readings_total / wall,
            "alert_to_feed_s": (feed_at[0] - t_alert) if feed_at else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="also drain with N worker processes")
    ap.add_argument("--no-backlog", action="store_true")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        host, port, prefix, cid, db_path = args.worker
        return run_worker(host, int(port), prefix, cid, db_path)
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker", persistence=False,
                           extra_conf="max_queued_messages 0\nmax_queued_bytes 0").start()
        try:
            ts = format_ts(utcnow())

            def make_flood(prefix: str) -> list[tuple[str, bytes]]:
                # Each drain has its own prefix: no session queues another drain's flood.
                return [(f"{prefix}/r1/s1/telemetry", small_message(i + 1, ts))
                        for i in range(args.messages)]

            flood = make_flood("x")
            size = sum(len(p) for _, p in flood) / len(flood)
            print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
                  f"Python {platform.python_version()}, shared with other jobs")
            print(f"flood: {len(flood)} QoS 1 messages of {size:.0f} bytes (one reading each)")
            subs, subs3, hubs, multi = [], [], [], []
            for r in range(args.rounds):
                s = drain_mosquitto_sub(broker, make_flood(f"s{r}"), f"s{r}")
                s3 = drain_mosquitto_sub(broker, make_flood(f"t{r}"), f"t{r}", "mqttv311")
                h = drain_hub(broker, make_flood(f"h{r}"), Path(tmp) / f"hub{r}.db", f"h{r}")
                subs.append(s)
                subs3.append(s3)
                hubs.append(h)
                print(f"round {r + 1}: mosquitto_sub (MQTT 5) {s['msg_s']:,.0f} msg/s "
                      f"({s['cpu_s']:.2f} CPU-s), (3.1.1, 20 in flight) {s3['msg_s']:,.0f} "
                      f"msg/s; hub {h['msg_s']:,.0f} msg/s = {h['readings_s']:,.0f} readings/s "
                      f"({h['cpu_s']:.2f} CPU-s, {h['cpu_s'] / args.messages * 1e6:.0f} us/msg);"
                      f" ratio {h['msg_s'] / s['msg_s']:.2f} / {h['msg_s'] / s3['msg_s']:.2f}")
                if args.workers > 1:
                    m = drain_workers(broker, make_flood(f"w{r}"), Path(tmp) / f"multi{r}.db",
                                      f"w{r}", args.workers)
                    multi.append(m)
                    print(f"round {r + 1}: {args.workers} hub worker processes (shared "
                          f"subscription, one SQLite file) {m['msg_s']:,.0f} msg/s "
                          f"({m['cpu_s']:.2f} CPU-s, {m['cpu_s'] / args.messages * 1e6:.0f} "
                          f"us/msg); ratio {m['msg_s'] / s['msg_s']:.2f} / "
                          f"{m['msg_s'] / s3['msg_s']:.2f}")
            best_s = max(x["msg_s"] for x in subs)
            best_s3 = max(x["msg_s"] for x in subs3)
            best_h = max(x["msg_s"] for x in hubs)
            print(f"best: mosquitto_sub {best_s:,.0f} msg/s (MQTT 5), {best_s3:,.0f} (3.1.1); "
                  f"hub {best_h:,.0f} msg/s; ratio {best_h / best_s:.2f} / "
                  f"{best_h / best_s3:.2f} (target >= 0.9)")
            if multi:
                best_m = max(x["msg_s"] for x in multi)
                print(f"best with {args.workers} workers: {best_m:,.0f} msg/s; ratio "
                      f"{best_m / best_s:.2f} / {best_m / best_s3:.2f}")
            if args.no_backlog:
                print("json: " + json.dumps({"subs": subs, "subs311": subs3, "hubs": hubs,
                                             "workers": multi}))
                return 0
            b = backlog(broker, Path(tmp) / "backlog.db")
            print(f"backlog: {b['readings']:,} readings in {b['envelopes']} envelopes "
                  f"({b['bytes'] / 1e6:.1f} MB) drained in {b['drain_s']:.1f} s "
                  f"({b['readings_s']:,.0f} readings/s, hub {b['cpu_s']:.1f} CPU-s; "
                  f"publishing took {b['publish_s']:.1f} s); fresh alert on the feed after "
                  f"{b['alert_to_feed_s']:.3f} s (targets: <= 15 s, <= 1 s)")
            print("json: " + json.dumps({"subs": subs, "subs311": subs3, "hubs": hubs,
                                         "workers": multi, "backlog": b}))
        finally:
            broker.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
