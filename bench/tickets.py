"""Benchmark: ticket delivery.

1. Throughput: N ticket intents (creates, one problem each) waiting in the hub database, then
   delivered by W delivery workers (hub/ticketing/delivery.py, each with its own database connection and
   HTTP client) to a local connector server: the ServiceNow stand-in of
   tests/support/itsm_standins.py
   (a Python ThreadingHTTPServer in this process, so its own cost is in the figure) and the
   generic webhook receiver. Intents per second = N over the wall time to deliver them all.
2. Latency: a real `edge-hub serve --tickets` process on PostgreSQL (or SQLite) and a real
   Mosquitto; a `failed` alert published every `--gap` seconds for new devices. For each we
   time (a) from the alert committed at the hub (tickets.opened, set in the ingest
   transaction) to the incident created at the stand-in, and (b) from the publish to it.

Run: python bench/tickets.py [--intents 2000] [--workers 1,2] [--db sqlite|postgresql|both]
     [--alerts 20] [--gap 0.5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support")]

from brokers import Mosquitto  # noqa: E402
from hub.connectors import build  # noqa: E402
from hub.ticketing.delivery import Worker  # noqa: E402
from hub.domains.tickets import policy as pol, rules  # noqa: E402
from hub.app import open_store  # noqa: E402
from hubkit import (HubProcess, Publisher, alert_body, create_pg_database,  # noqa: E402
                    drop_pg_database, envelope, now_ts, pg_reachable)
from itsm_standins import ServiceNowStandIn, WebhookReceiver  # noqa: E402


def secret(tmp: Path, name: str, value: str) -> str:
    p = tmp / name
    p.write_text(value)
    os.chmod(p, 0o600)
    return str(p)


def new_db(kind: str, tmp: Path) -> tuple[str, callable]:
    if kind == "postgresql":
        url = create_pg_database()
        return url, lambda: drop_pg_database(url)
    return str(tmp / f"bench-{time.monotonic_ns()}.db"), lambda: None


def throughput(kind: str, n: int, workers: int, target: str, tmp: Path) -> tuple[float, float]:
    if target == "servicenow":
        server = ServiceNowStandIn().start()
        spec = pol.ConnectorSpec("c", "servicenow", types.MappingProxyType({
            "url": server.url, "username": "hub", "password_file": secret(tmp, "pw", "pw")}))
    else:
        server = WebhookReceiver(b"k").start()
        spec = pol.ConnectorSpec("c", "webhook", types.MappingProxyType({
            "url": server.url, "secret_file": secret(tmp, "wk", "k")}))
    policy = pol.TicketPolicy(routes=(pol.Route("c"),), connectors=(spec,),
                              delivery=pol.DeliveryPolicy(batch=20, idle_s=0.01,
                                                          tick_every_s=3600))
    url, drop = new_db(kind, tmp)
    db = open_store(url)
    with db.transaction() as tx:
        for i in range(n):
            rules.on_alert(tx, time.time, policy, rules.AlertEvent(
                "s1", "r1", f"d{i}", "failed", "raised", "2026-12-05T07:00:00.000Z",
                "2026-12-05T07:00:00.000Z", i + 1, "critical", ("status error",)))
    stores = [open_store(url) for _ in range(workers)]
    ws = [Worker(s, policy, {"c": build(spec)}, f"w{i}", policy.delivery)
          for i, s in enumerate(stores)]

    def drain(w):
        while w.run_once():
            pass
    threads = [threading.Thread(target=drain, args=(w,)) for w in ws]
    t0, c0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0   # workers and the stand-in server (this process)
    delivered = sum(w.counts["delivered"] for w in ws)
    assert delivered == n, (delivered, n)
    for w in ws:
        w.stop()
    for s in (*stores, db):
        s.close()
    server.stop()
    drop()
    return n / elapsed, cpu / n


def latency(kind: str, alerts: int, gap: float, tmp: Path) -> tuple[list, list]:
    broker = Mosquitto(tmp / f"broker-{kind}").start()
    server = ServiceNowStandIn().start()
    url, drop = new_db(kind, tmp)
    toml = tmp / f"tickets-{kind}.toml"
    toml.write_text("\n".join([
        "[tickets]", "[tickets.connectors.sn]", 'type = "servicenow"', f'url = "{server.url}"',
        'username = "hub"', f'password_file = "{secret(tmp, "pw2", "pw")}"',
        "[[tickets.routes]]", 'connector = "sn"']) + "\n")
    hub = HubProcess(broker, url, "bench-hub", "--tickets", str(toml),
                     log_path=tmp / f"hub-{kind}.log").start()
    hub.wait_connected()
    pub = Publisher(broker)
    published = {}
    for i in range(alerts):
        ts = now_ts()
        body = alert_body("raised", device=f"b{i}", what="failed", since=ts, ts=ts)
        published[f"b{i}"] = time.time()
        pub.send(envelope("alert", body, seq=i + 1))
        time.sleep(gap)
    deadline = time.time() + 60
    while len(server.incidents) < alerts and time.time() < deadline:
        time.sleep(0.05)
    hub.terminate()
    pub.close()
    store = open_store(url, create=False)
    with store.read() as tx:
        tx.execute("SELECT device, opened FROM tickets")
        opened = dict(tx.fetchall())
    store.close()
    made = {r["short_description"].split()[1]: r["sys_created_on"]
            for r in server.incidents.values()}
    from_commit = [made[d] - opened[d] for d in made if d in opened]
    from_publish = [made[d] - published[d] for d in made if d in published]
    server.stop()
    broker.kill()
    drop()
    return from_commit, from_publish


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--intents", type=int, default=2000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--alerts", type=int, default=20)
    ap.add_argument("--gap", type=float, default=0.5)
    args = ap.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if "postgresql" in kinds and not pg_reachable():
        kinds.remove("postgresql")
        print("PostgreSQL not reachable: SQLite only")
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for kind in kinds:
            for target in ("servicenow", "webhook"):
                for w in (int(x) for x in args.workers.split(",")):
                    rate, cpu = throughput(kind, args.intents, w, target, tmp)
                    print(f"throughput {kind:10s} {target:10s} workers={w}: "
                          f"{rate:7.0f} intents/s ({rate / w:.0f} per worker), "
                          f"{cpu * 1000:.2f} ms CPU an intent (workers + server)")
        for kind in kinds if args.alerts else ():
            c, p = latency(kind, args.alerts, args.gap, tmp)
            if not c:
                print(f"latency {kind}: no incidents made")
                continue
            print(f"latency {kind:10s} ({len(c)} alerts): committed->created p50 "
                  f"{statistics.median(c):.3f} s, p95 {pct(c, 95):.3f} s, max {max(c):.3f} s;"
                  f" published->created p50 {statistics.median(p):.3f} s, max {max(p):.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
