"""Benchmark: drain an outbox backlog to a real Mosquitto at QoS 1; CPU-seconds, rate and RSS.

The agent side (sync client, database thread, paho thread) runs in this process; the broker
and a `mosquitto_sub` standing in for the hub run as their own processes, so this process's
CPU time is the agent's cost. Prints one line per in-flight window; figures go to
docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support")]

from brokers import BrokerTLS, Mosquitto, store_acl  # noqa: E402
from certs import Authority  # noqa: E402

import edge_protocol as wire  # noqa: E402
from edge_agent.config import parse_text  # noqa: E402
from edge_agent.outbox import Outbox  # noqa: E402
from edge_agent.state import db as statedb  # noqa: E402

ROWS = int(os.environ.get("BENCH_ROWS", "20000"))
IDLE_S = 5.0
READING = {"device": "register", "kind": "host", "ts": "2026-11-22T15:00:00Z",
           "values": {"device.status": "ok", "host.cpu_pct": 12.5}, "stale": False,
           "reason": None}


def run(window: int, workdir: Path, pki=None) -> dict:
    name = f"{window}-{'tls' if pki else 'plain'}"
    tls = None if pki is None else BrokerTLS(pki.ca.ca_path, pki.broker.cert, pki.broker.key)
    broker = Mosquitto(workdir / f"broker-{name}", persistence=False, tls=tls,
                       allow_anonymous=pki is None,
                       acl=None if pki is None else store_acl({"bench": "default"})).start()
    auth: list[str] = []
    sync_tls = "tls = false\n"
    if pki is not None:
        auth = ["--cafile", str(pki.ca.ca_path), "--cert", str(pki.hub.cert),
                "--key", str(pki.hub.key)]
        store = pki.stores["bench"]
        sync_tls = (f'tls_ca = "{pki.ca.ca_path}"\ntls_cert = "{store.cert}"\n'
                    f'tls_key = "{store.key}"\n')
    where = ["-h", broker.host, "-p", str(broker.port), *auth]
    hub = subprocess.Popen(["mosquitto_sub", *where, "-V", "mqttv5", "-q", "1",
                            "-t", "edge/v1/+/+/+"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        subprocess.run(["mosquitto_pub", *where, "-r", "-q", "1", "-t", wire.hub_state_topic(),
                        "-m", wire.encode_hub_state(True, "2026-11-22T15:00:00Z").decode()],
                       check=True)
        cfg = parse_text(f'[agent]\nstore = "bench"\nstate_dir = "{workdir}/state-{name}"\n'
                         f'[sync]\nenabled = true\nhost = "{broker.host}"\n'
                         f"port = {broker.port}\n{sync_tls}inflight = {window}\n"
                         # mosquitto_sub plays the hub and does not answer births: the drain
                         # itself is measured here, not the handshake (tests cover that).
                         "wait_for_hub = false\n")
        return asyncio.run(drain(cfg))
    finally:
        hub.terminate()
        hub.wait(5)
        broker.kill()


async def drain(cfg) -> dict:
    from edge_agent.sync.client import SyncClient

    executor = ThreadPoolExecutor(1, thread_name_prefix="state-db")
    loop = asyncio.get_running_loop()

    def db_call(fn, *args):
        return loop.run_in_executor(executor, fn, *args)

    db = await db_call(statedb.connect, cfg.state_path)
    outbox = await db_call(Outbox, db, "bench", "default")
    items = [("telemetry", {"readings": [READING]})] * ROWS
    await db_call(outbox.enqueue_many, items)
    size = await db_call(lambda: db.execute("SELECT AVG(size) FROM outbox").fetchone()[0])
    client = SyncClient(cfg.sync, lambda: cfg, outbox, db_call)
    cpu0, wall0 = time.process_time(), time.monotonic()
    task = loop.create_task(client.run())
    while await db_call(lambda: db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]):
        await asyncio.sleep(0.05)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    idle0 = time.process_time()
    await asyncio.sleep(IDLE_S)  # connected, nothing to send
    idle = time.process_time() - idle0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await db_call(db.close)
    executor.shutdown()
    return {"rows": ROWS, "bytes": round(size), "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "us_cpu_per_msg": round(cpu / ROWS * 1e6, 1),
            "msg_per_s": round(ROWS / wall), "max_inflight": client.max_inflight,
            "idle_cpu_pct": round(idle / IDLE_S * 100, 2)}


def main() -> None:
    print(f"sync drain: {ROWS} telemetry rows, MQTT on loopback (plain, and TLS with client "
          f"certificates), Mosquitto, mosquitto_sub as the hub; {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        ca = Authority(Path(tmp) / "pki")
        pki = SimpleNamespace(ca=ca, broker=ca.issue("127.0.0.1", server=True),
                              hub=ca.issue("hub"), stores={"bench": ca.issue("bench")})
        for window, with_tls in ((20, False), (100, False), (500, False), (100, True)):
            r = run(window, Path(tmp), pki if with_tls else None)
            print(f"inflight {window:4} {'TLS  ' if with_tls else 'plain'}: "
                  f"{r['msg_per_s']:6} msg/s, {r['cpu_s']:5} CPU-s "
                  f"({r['us_cpu_per_msg']} us/msg), wall {r['wall_s']} s, "
                  f"max in flight {r['max_inflight']}, {r['bytes']} B/msg; "
                  f"idle afterwards {r['idle_cpu_pct']}% of a core")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"max RSS of this process (outbox, client, paho, ssl; and cryptography, which only "
          f"the benchmark's PKI needs): {rss:.0f} MB")


if __name__ == "__main__":
    main()
