"""Control-plane figures on loopback (prints, never asserts; docs/benchmarks.md keeps them).

1. `edge-hub cmd` to the result at the hub: a real Mosquitto, a real hub (`edge-hub serve`), a
   real agent with a simulated receipt printer. For each of N commands: the wall time of the
   whole CLI run (`edge-hub cmd ... --wait`, a fresh Python process that signs, stores and
   polls for the result), and the hub's own times from the row (created -> delivered -> result
   recorded). With --api the CLI goes through a real API server (`edge-hub api` on the same
   database, signing with the same key ring) as an it-operator's token, and polls the API.
2. A flag to N simulated connected stores: N MQTT connections in one process (a select loop
   over paho clients, each subscribed to its store's flags topic and verifying the signed
   document as the agent does); `edge-hub flags set scoring=off --chain` is run and the time
   from its start to each store holding the verified document is recorded.

    python bench/commands.py [--commands 30] [--stores 1000] [--api]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support")]

import paho.mqtt.client as mqtt  # noqa: E402

from brokers import Mosquitto  # noqa: E402
from testenv import agent_env  # noqa: E402
from controlkit import REGION, Agent, SimPrinter, agent_toml, hub_cli, wait_for  # noqa: E402
from edge_protocol import commands as proto  # noqa: E402
from edge_protocol import signing  # noqa: E402
from hub.keys import KeyRing  # noqa: E402
from hub.app import open_store  # noqa: E402
from hubkit import HubProcess  # noqa: E402


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def line(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{name:<44} n={len(ms):<5} median {statistics.median(ms):8.1f} ms   "
            f"p95 {pct(ms, 95):8.1f} ms   max {max(ms):8.1f} ms")


def bench_commands(tmp: Path, n: int, api: bool = False) -> None:
    broker = Mosquitto(tmp / "broker").start()
    ring = KeyRing.init(tmp / "keys")
    db = str(tmp / "hub.db")
    hub = HubProcess(broker, db, "bench-hub", log_path=tmp / "hub.log").start()
    printer = SimPrinter()
    config = tmp / "agent.toml"
    config.write_text(agent_toml(tmp / "state", broker, ring, printer=printer))
    agent = Agent(config, tmp / "agent.log").start()
    server = None
    try:
        via = ["--db", db, "--dir", str(tmp / "keys")]
        env: dict[str, str] = {}
        if api:
            from apiproc import ApiProcess

            server = ApiProcess(db, tmp / "api",
                                f'[keys]\ndirectory = "{tmp / "keys"}"\n').start()
            made = hub_cli("users", "add", "ops", "--role", "it-operator", "--json", "--db", db)
            via, env = [], {"EDGE_HUB_URL": server.url,
                            "EDGE_HUB_TOKEN": json.loads(made.stdout)["token"]}
        hub.wait_connected()
        store = open_store(db)
        wait_for(lambda: _known(store, "store-0001"), 60, "the store's birth")
        for action, device in (("diagnostics", None), ("repoll", "register"),
                               ("test_print", "receipt-1")):
            wall, hub_total, to_delivered = [], [], []
            for _ in range(n):
                words = ["store-0001"] + ([device] if device else []) + [action]
                if action == "test_print":
                    words += ["--arg", "force=true"]
                t0 = time.perf_counter()
                r = hub_cli("cmd", *words, *via, "--json", "--wait", "30", **env)
                wall.append(time.perf_counter() - t0)
                row = json.loads(r.stdout)
                if row["status"] != "done":
                    raise SystemExit(f"command not done: {row}")
                hub_total.append(row["result_at"] - row["created"])
                if row["delivered"] is None:  # the PUBACK is recorded a round later
                    time.sleep(0.3)
                    with store.read() as tx:
                        tx.execute("SELECT delivered FROM commands WHERE id = ?", (row["id"],))
                        row["delivered"] = tx.fetchone()[0]
                to_delivered.append(row["delivered"] - row["created"])
            print(line(f"{action}: edge-hub cmd --wait, whole CLI run"
                       + (" (API)" if api else ""), wall))
            print(line(f"{action}: hub row created -> result recorded", hub_total))
            print(line(f"{action}: hub row created -> broker PUBACK", to_delivered))
        # A kill switch on the real agent: from the CLI's start until the hub holds the agent's
        # report that it applied the new flags (the agent applies before it reports).
        applied = []
        for i in range(n // 3 or 1):
            value = "off" if i % 2 == 0 else "on"
            t0 = time.time()
            r = hub_cli("flags", "set", f"scoring={value}", "--chain", *via, **env)
            if r.returncode != 0:
                raise SystemExit(r.stderr)
            with store.read() as tx:
                tx.execute("SELECT version FROM flag_docs WHERE store = 'store-0001'")
                version = tx.fetchone()[0]

            def reported():
                with store.read() as tx:
                    tx.execute("SELECT applied_at FROM flag_docs WHERE store = 'store-0001'"
                               " AND applied_version = ?", (version,))
                    row = tx.fetchone()
                return row and row[0]
            at = wait_for(reported, 60, "the agent's report", every=0.01)
            applied.append(at - t0)
        print(line("flag on a real agent: CLI start -> its report at the hub", applied))
        store.close()
    finally:
        if server is not None:
            server.stop()
        agent.stop()
        hub.terminate()
        printer.close()
        broker.stop()


def _known(store, name: str) -> bool:
    with store.read() as tx:
        tx.execute("SELECT 1 FROM stores WHERE store = ?", (name,))
        return tx.fetchone() is not None


class Stores:
    """N connected simulated stores on one select loop, verifying their flags documents."""

    def __init__(self, broker, n: int, trusted: dict[str, bytes]):
        self.trusted = trusted
        self.clients: dict[int, mqtt.Client] = {}
        self.got: dict[str, float] = {}
        self.version: dict[str, int] = {}
        self.bad = 0
        self.subscribed = 0
        for i in range(n):
            name = f"sim-{i:05d}"
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name,
                            protocol=mqtt.MQTTv5)
            c.user_data_set(name)
            c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(
                f"edge/v1/{REGION}/{u}/flags", qos=1)
            c.on_subscribe = self._on_subscribe
            c.on_message = self._on_message
            c.connect(broker.host, broker.port, keepalive=300)
            self.clients[c.socket().fileno()] = c

    def _on_subscribe(self, *args) -> None:
        self.subscribed += 1

    def _on_message(self, client, name, msg) -> None:
        try:
            doc = proto.check_flags(msg.payload, store=name, trusted=self.trusted)
        except proto.CommandError:
            self.bad += 1
            return
        if doc.version > self.version.get(name, 0):
            self.version[name] = doc.version
            self.got[name] = time.perf_counter()

    def pump(self, until, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise SystemExit("timed out")
            socks = list(self.clients)
            w = [fd for fd, c in self.clients.items() if c.want_write()]
            r, w, _ = select.select(socks, w, [], 0.05)
            for fd in r:
                self.clients[fd].loop_read(100)
            for fd in w:
                self.clients[fd].loop_write()
            for c in self.clients.values():
                c.loop_misc()

    def close(self) -> None:
        for c in self.clients.values():
            c.disconnect()


def bench_flags(tmp: Path, n: int) -> None:
    broker = Mosquitto(tmp / "fbroker").start()
    ring = KeyRing.init(tmp / "fkeys")
    db = str(tmp / "fhub.db")
    store = open_store(db)
    with store.transaction() as tx:
        tx.executemany("INSERT INTO stores (store, region) VALUES (?, ?)",
                       [(f"sim-{i:05d}", REGION) for i in range(n)])
    store.close()
    hub = HubProcess(broker, db, "bench-flags", log_path=tmp / "fhub.log").start()
    trusted = signing.trusted_keys(ring.public_keys().values())
    stores = Stores(broker, n, trusted)
    try:
        hub.wait_connected()
        stores.pump(lambda: stores.subscribed >= n)
        # Wait for the commander too (it logs when it subscribed to results).
        wait_for(lambda: "commander connected" in hub.log(), 30, "the commander")
        for value in ("off", "on"):
            before = dict(stores.version)
            t0 = time.perf_counter()
            cli = subprocess.Popen([sys.executable, "-m", "hub", "flags", "set",
                                    f"scoring={value}", "--chain", "--db", db, "--dir",
                                    str(tmp / "fkeys")], env=agent_env(), cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            stores.pump(lambda: cli.poll() is not None
                        and sum(stores.version.get(s, 0) > before.get(s, 0)
                                for s in stores.got) >= n)
            delays = [stores.got[s] - t0 for s in stores.got
                      if stores.version[s] > before.get(s, 0)]
            out = cli.stdout.read().decode()
            print(f"flags set scoring={value} --chain: {out.strip()}")
            print(line(f"flag {value}: CLI start -> store verified it ({n} stores)", delays))
        print(f"documents refused by the simulated stores: {stores.bad}")
    finally:
        stores.close()
        hub.terminate()
        broker.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commands", type=int, default=30)
    p.add_argument("--stores", type=int, default=1000)
    p.add_argument("--only", choices=("commands", "flags"))
    p.add_argument("--api", action="store_true",
                   help="commands: the CLI through the hub's API instead of --db")
    args = p.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, loopback, Mosquitto, "
          f"hub on SQLite")
    with tempfile.TemporaryDirectory() as d:
        if args.only in (None, "commands"):
            bench_commands(Path(d), args.commands, args.api)
        if args.only in (None, "flags"):
            bench_flags(Path(d), args.stores)


if __name__ == "__main__":
    main()
