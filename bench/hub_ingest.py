"""Benchmark: what one hub worker persists from a real Mosquitto, beside mosquitto_sub.

1. Live flood (the issue's measure): P stores (one `mosquitto_pub -l -q 1` process each, C, so
   the publishers are not the limit) flood N QoS 1 telemetry messages (about 250 bytes, one
   reading each) through one Mosquitto as fast as it takes them. Three runs a round, in turn:
   `mosquitto_sub -q 1` alone subscribed (the broker's limit for this flood, on this machine),
   one hub worker alone subscribed (validate, store in SQLite, acknowledge after the commit),
   and both subscribed to the same flood in the same run. A consumer's rate is N over the time
   from the first publish to its last message (mosquitto_sub: printed; hub: committed).
2. Queue drain (stricter: the consumer's own limit): N messages queued in the broker for an
   offline persistent session first, then drained by mosquitto_sub (C, stores nothing) and by
   one hub worker.
3. Backlog: one 50-device store's 24 hours (432,000 readings, 200 a telemetry envelope) published
   to a running hub as fast as a bounded window allows (as the agent's sync drains its outbox
   after a reconnect), with a fresh alert raised half-way; we time the drain and how long the
   alert takes to reach the hub (committed) and its regional feed.
4. Workers: the queue drain with N hub worker processes (default 2) on one shared subscription
   and one SQLite file.

Run: python bench/hub_ingest.py [--messages 200000] [--rounds 2] [--publishers 4]
     [--workers 2] [--no-backlog] [--no-drain] [--default-gc]

The hub runs with the collector thresholds `edge-hub serve` sets (hub.app.tune_gc);
--default-gc keeps CPython's, to compare.
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
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support")]

import paho.mqtt.client as mqtt  # noqa: E402

from brokers import Mosquitto  # noqa: E402
import edge_protocol as wire  # noqa: E402
from edge_agent.outbox import uuid7  # noqa: E402
from edge_agent.reading import format_ts, utcnow  # noqa: E402
from hub.domains import alerts as alert_domain, fleet  # noqa: E402
from hub.ingest import Settings  # noqa: E402
from hub.app import Hub  # noqa: E402
from hub.app import open_store, tune_gc  # noqa: E402
from hubkit import Publisher  # noqa: E402


def small_message(seq: int, ts: str, store: str = "s1") -> bytes:
    env = {"v": 1, "id": uuid7(), "seq": seq, "store": store, "region": "r1", "ts": ts,
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


def live_flood(broker: Mosquitto, folder: Path, prefix: str, total: int, publishers: int,
               consumers: tuple[str, ...], inflight: int = 20) -> dict:
    """Flood `total` messages from `publishers` mosquitto_pub processes (a store each) while
    the given consumers ("sub", "hub") are subscribed; return each consumer's rate."""
    ts = format_ts(utcnow())
    per = total // publishers
    total = per * publishers
    files = []
    for j in range(publishers):
        path = folder / f"{prefix}-pub{j}.lines"
        path.write_bytes(b"\n".join(small_message(i + 1, ts, f"s{j}") for i in range(per))
                         + b"\n")
        files.append(path)
    out: dict = {"messages": total, "publishers": publishers}
    hub = sub = db = None
    if "hub" in consumers:
        db = open_store(str(folder / f"{prefix}.db"))
        hub = Hub(db, Settings(host=broker.host, port=broker.port, client_id=f"hub-{prefix}",
                               prefix=prefix)).start()
    if "sub" in consumers:
        sub = subprocess.Popen(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port),
                                "-V", "mqttv5", "-q", "1", "-t", f"{prefix}/+/+/#",
                                "-C", str(total)], stdout=subprocess.DEVNULL)
    time.sleep(1.0)  # both subscribed (SUBACK) before the flood starts
    cpu0, t0 = time.process_time(), time.perf_counter()
    pubs = [subprocess.Popen(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port),
                              "-V", "mqttv5", "-q", "1", "-M", str(inflight), "-l",
                              "-t", f"{prefix}/r1/s{j}/telemetry"], stdin=open(f, "rb"))
            for j, f in enumerate(files)]
    t_pub = t_sub = t_hub = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        now = time.perf_counter()
        if t_pub is None and all(p.poll() is not None for p in pubs):
            t_pub = now - t0
        if sub is not None and t_sub is None and sub.poll() is not None:
            t_sub = now - t0
        if hub is not None and t_hub is None and hub.ingest.counts["stored"] >= total:
            t_hub = now - t0
            out["hub_cpu_s"] = time.process_time() - cpu0
        if t_pub is not None and (sub is None or t_sub is not None) and \
                (hub is None or t_hub is not None):
            break
        time.sleep(0.002)
    for p in pubs:
        if p.returncode:
            raise RuntimeError(f"mosquitto_pub exited with {p.returncode}")
    out["publish_msg_s"] = total / t_pub
    if sub is not None:
        if t_sub is None or sub.returncode != 0:
            sub.kill()
            raise RuntimeError("mosquitto_sub did not receive the whole flood")
        out["sub_msg_s"] = total / t_sub
    if hub is not None:
        hub.stop()
        stored = fleet.message_count(db)
        db.close()
        if t_hub is None or stored != total:
            raise RuntimeError(f"the hub stored {stored} of {total}")
        out["hub_msg_s"] = total / t_hub
        out["hub_us_msg"] = out["hub_cpu_s"] / total * 1e6
    for f in files:
        f.unlink()
    return out


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
    feed.on_message = lambda c, u, m: (feed_at.append(time.monotonic()), got_feed.set())
    feed.connect(broker.host, broker.port, 60)
    feed.subscribe(wire.alert_feed_topic("r1", "big"), qos=1)
    feed.loop_start()
    time.sleep(0.5)
    now = format_ts(utcnow())
    alert_id = uuid7()
    alert = wire.encode({"v": 1, "id": alert_id, "seq": seq + 1, "store": "big", "region": "r1",
                         "ts": now, "kind": "alert", "body": {
                             "alert": "d07:offline", "device": "d07", "what": "offline",
                             "state": "raised", "severity": "critical", "since": now,
                             "ts": now, "explanation": ["no answer for 3 polls"],
                             "decision": None}})
    half = len(envs) // 2
    lines = [*envs[:half], ("edge/v1/r1/big/alert", alert), *envs[half:]]
    frames = db_path.with_suffix(".frames")
    frames.write_bytes(b"".join(t.encode() + b"\t" + p + b"\n" for t, p in lines))
    committed_at: list[float] = []
    real_commit = hub.ingest.commit

    def commit(batch):  # note when the batch holding the alert is committed
        routed = real_commit(batch)
        if not committed_at and any(i.env is not None and i.env.id == alert_id for i in batch):
            committed_at.append(time.monotonic())
        return routed

    hub.ingest.commit = commit
    # The store's side runs in its own process, as the agent does (a paho client, QoS 1, at
    # most 200 unacknowledged: the agent's sync window); it says when it sent the alert.
    publisher = subprocess.Popen([sys.executable, __file__, "--publish", broker.host,
                                  str(broker.port), str(frames), "200"],
                                 stdout=subprocess.PIPE, text=True)
    cpu0, t0 = time.process_time(), time.monotonic()
    while hub.ingest.counts["stored"] < len(envs) + 1:
        time.sleep(0.005)
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    said = dict(line.split() for line in publisher.communicate(timeout=60)[0].splitlines())
    t_alert, t_pub = float(said["alert"]), float(said["done"])
    got_feed.wait(30)
    hub.stop()
    feed.disconnect()
    feed.loop_stop()
    frames.unlink()
    n = fleet.message_count(db)
    db.close()
    assert n == len(envs) + 1, n
    return {"envelopes": len(envs), "readings": readings_total,
            "bytes": sum(len(p) for _, p in envs), "publish_s": t_pub - t0, "drain_s": wall,
            "cpu_s": cpu, "readings_s": readings_total / wall,
            "alert_committed_s": committed_at[0] - t_alert if committed_at else None,
            "alert_to_feed_s": (feed_at[0] - t_alert) if feed_at else None}


def publish_frames(host: str, port: int, frames: str, window: int) -> int:
    """--publish: send `topic<TAB>payload` lines at QoS 1, `window` unacknowledged at most;
    print the monotonic clock (shared by every process here) at the alert and at the end."""
    with open(frames, "rb") as f:
        items = [tuple(line.rstrip(b"\n").split(b"\t", 1)) for line in f]
    items = [(topic.decode(), payload) for topic, payload in items]
    cut = next(i for i, (topic, _) in enumerate(items) if topic.endswith("/alert"))
    pub = Publisher(SimpleNamespace(host=host, port=port), client_id="bench-store",
                    inflight=window)
    pub.publish_all(items[:cut], window)
    print("alert", time.monotonic(), flush=True)
    pub.publish_all(items[cut:], window)
    print("done", time.monotonic(), flush=True)
    pub.close()
    return 0


def ratio_text(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.2f}" if round(lo, 2) == round(hi, 2) else f"{lo:.2f}-{hi:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--publishers", type=int, default=4, help="stores flooding at once")
    ap.add_argument("--workers", type=int, default=2, help="also drain with N worker processes")
    ap.add_argument("--no-drain", action="store_true", help="skip the queue drain and workers")
    ap.add_argument("--no-backlog", action="store_true")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--publish", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--default-gc", action="store_true",
                    help="keep CPython's collector thresholds (edge-hub serve tunes them)")
    args = ap.parse_args()
    if args.default_gc:
        os.environ["BENCH_DEFAULT_GC"] = "1"  # the --worker processes too
    if not args.publish and not os.environ.get("BENCH_DEFAULT_GC"):
        tune_gc()  # the hub runs in this process (and in --worker's): as `edge-hub serve` does
    if args.publish:
        host, port, frames, window = args.publish
        return publish_frames(host, int(port), frames, int(window))
    if args.worker:
        host, port, prefix, cid, db_path = args.worker
        return run_worker(host, int(port), prefix, cid, db_path)
    results: dict = {"live": [], "subs": [], "subs311": [], "hubs": [], "workers": []}
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker", persistence=False,
                           extra_conf="max_queued_messages 0\nmax_queued_bytes 0").start()
        try:
            ts = format_ts(utcnow())
            size = len(small_message(1, ts))
            print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
                  f"Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")
            print(f"messages: QoS 1 telemetry envelopes of {size} bytes, one reading each")
            print(f"1. live flood: {args.messages:,} messages from {args.publishers} stores "
                  "(mosquitto_pub -q 1), consumers subscribed before it starts")
            for r in range(args.rounds):
                alone_sub = live_flood(broker, Path(tmp), f"ls{r}", args.messages,
                                       args.publishers, ("sub",))
                alone_hub = live_flood(broker, Path(tmp), f"lh{r}", args.messages,
                                       args.publishers, ("hub",))
                both = live_flood(broker, Path(tmp), f"lb{r}", args.messages,
                                  args.publishers, ("sub", "hub"))
                row = {"sub_alone": alone_sub, "hub_alone": alone_hub, "both": both,
                       "ratio_alone": alone_hub["hub_msg_s"] / alone_sub["sub_msg_s"],
                       "ratio_same_run": both["hub_msg_s"] / both["sub_msg_s"]}
                results["live"].append(row)
                print(f"  round {r + 1}: mosquitto_sub alone {alone_sub['sub_msg_s']:,.0f} msg/s;"
                      f" hub alone {alone_hub['hub_msg_s']:,.0f} msg/s = "
                      f"{alone_hub['hub_msg_s']:,.0f} readings/s "
                      f"({alone_hub['hub_us_msg']:.0f} us CPU/msg), ratio "
                      f"{row['ratio_alone']:.2f}; same run: mosquitto_sub "
                      f"{both['sub_msg_s']:,.0f}, hub {both['hub_msg_s']:,.0f} msg/s, ratio "
                      f"{row['ratio_same_run']:.2f}")
            live = results["live"]
            print(f"  ratio hub / mosquitto_sub: alone {ratio_text([x['ratio_alone'] for x in live])}"
                  f", same run {ratio_text([x['ratio_same_run'] for x in live])} (target >= 0.9)")
            if not args.no_drain:
                drain(broker, Path(tmp), args, results)
            if not args.no_backlog:
                b = backlog(broker, Path(tmp) / "backlog.db")
                results["backlog"] = b
                print(f"3. backlog: {b['readings']:,} readings in {b['envelopes']} envelopes "
                      f"({b['bytes'] / 1e6:.1f} MB) drained in {b['drain_s']:.1f} s "
                      f"({b['readings_s']:,.0f} readings/s, hub {b['cpu_s']:.1f} CPU-s; "
                      f"publishing took {b['publish_s']:.1f} s); fresh alert committed after "
                      f"{b['alert_committed_s']:.3f} s, on the feed after "
                      f"{b['alert_to_feed_s']:.3f} s (targets: <= 15 s, <= 1 s)")
            print("json: " + json.dumps(results))
        finally:
            broker.kill()
    return 0


def drain(broker: Mosquitto, folder: Path, args: argparse.Namespace, results: dict) -> None:
    """2. and 4.: a flood queued in the broker first, then drained by each consumer."""
    ts = format_ts(utcnow())

    def make_flood(prefix: str) -> list[tuple[str, bytes]]:
        # Each drain has its own prefix: no session queues another drain's flood.
        return [(f"{prefix}/r1/s1/telemetry", small_message(i + 1, ts))
                for i in range(args.messages)]

    print(f"2. queue drain: {args.messages:,} messages queued for an offline session first")
    subs, subs3, hubs, multi = (results["subs"], results["subs311"], results["hubs"],
                                results["workers"])
    for r in range(args.rounds):
        s = drain_mosquitto_sub(broker, make_flood(f"s{r}"), f"s{r}")
        s3 = drain_mosquitto_sub(broker, make_flood(f"t{r}"), f"t{r}", "mqttv311")
        h = drain_hub(broker, make_flood(f"h{r}"), folder / f"hub{r}.db", f"h{r}")
        subs.append(s)
        subs3.append(s3)
        hubs.append(h)
        print(f"  round {r + 1}: mosquitto_sub (MQTT 5) {s['msg_s']:,.0f} msg/s "
              f"({s['cpu_s']:.2f} CPU-s), (3.1.1, 20 in flight) {s3['msg_s']:,.0f} "
              f"msg/s; hub {h['msg_s']:,.0f} msg/s ({h['cpu_s']:.2f} CPU-s, "
              f"{h['cpu_s'] / args.messages * 1e6:.0f} us/msg); ratio "
              f"{h['msg_s'] / s['msg_s']:.2f} / {h['msg_s'] / s3['msg_s']:.2f}")
        if args.workers > 1:
            m = drain_workers(broker, make_flood(f"w{r}"), folder / f"multi{r}.db",
                              f"w{r}", args.workers)
            multi.append(m)
            print(f"  round {r + 1}: {args.workers} hub worker processes (shared "
                  f"subscription, one SQLite file) {m['msg_s']:,.0f} msg/s "
                  f"({m['cpu_s']:.2f} CPU-s, {m['cpu_s'] / args.messages * 1e6:.0f} "
                  f"us/msg); ratio {m['msg_s'] / s['msg_s']:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
