"""Helpers for the control-plane tests: a simulated printer on a thread, signed messages built
by hand (as an attacker or a faithful hub would), and reads of the agent's and hub's state."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from testenv import ROOT, agent_env
from wait import PATIENCE_S, wait_until
from edge_protocol import commands as proto
from edge_protocol import signing

REGION = "eu-west"


class SimPrinter:
    """The ESC/POS printer simulator served on TCP from a background event loop."""

    def __init__(self):
        from edge_agent.simulators.escpos_printer import PrinterSimulator

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sim = PrinterSimulator()
        self.host, self.port = asyncio.run_coroutine_threadsafe(
            self.sim.start_tcp(), self.loop).result(10)

    @property
    def cuts(self) -> int:
        return self.sim.engine.cuts

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def agent_toml(state_dir: Path, broker, ring, *, store: str = "store-0001",
               printer: SimPrinter | None = None, scoring: str = "enabled = false",
               control: str = "", host_interval: float = 1.0) -> str:
    keys = ", ".join(f'"{k}"' for k in ring.public_keys().values())
    devices = f'[[devices]]\nid = "register"\nkind = "host"\ninterval = {host_interval}\n'
    if printer is not None:
        devices += (f'\n[[devices]]\nid = "receipt-1"\nkind = "escpos"\ninterval = 1.0\n'
                    f'[devices.escpos]\nhost = "{printer.host}"\nport = {printer.port}\n')
    return (f'[agent]\nstore = "{store}"\nregion = "{REGION}"\nstate_dir = "{state_dir}"\n\n'
            f"[telemetry]\nflush_interval = 0.1\n\n"
            f"[scoring]\n{scoring}\n\n"
            f'[sync]\nenabled = true\nhost = "{broker.host}"\nport = {broker.port}\n'
            f"tls = false\nreconnect_min = 0.05\nreconnect_max = 0.5\n\n"
            f"[trust]\nhub_keys = [{keys}]\n\n[control]\n{control}\n\n{devices}")


class Agent:
    """`python -m edge_agent run` in a subprocess."""

    def __init__(self, config: Path, log: Path):
        self.config, self.log_path = config, log
        self.proc: subprocess.Popen | None = None

    def start(self, **env: str) -> "Agent":
        """Start it; `env` adds to its environment (EDGE_AGENT_TEST_KILL, say)."""
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config",
                                      str(self.config), "--log-format", "json"],
                                     env=agent_env(**env), stdout=subprocess.DEVNULL,
                                     stderr=self._log, cwd=ROOT)
        return self

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(10)
        return self.proc.returncode if self.proc else 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def status_text(self) -> str:
        r = subprocess.run([sys.executable, "-m", "edge_agent", "status", "--config",
                            str(self.config)], capture_output=True, text=True,
                           env=agent_env(), cwd=ROOT, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def status(self) -> dict[str, Any]:
        r = subprocess.run([sys.executable, "-m", "edge_agent", "status", "--config",
                            str(self.config), "--json"], capture_output=True, text=True,
                           env=agent_env(), cwd=ROOT, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


def agent_db(state_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{state_dir / 'agent.db'}?mode=ro", uri=True, timeout=10)


def agent_rejects(state_dir: Path) -> dict[str, int]:
    try:
        db = agent_db(state_dir)
    except sqlite3.OperationalError:
        return {}
    try:
        return dict(db.execute("SELECT reason, count FROM control_rejects").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()


def agent_log_rows(state_dir: Path) -> list[tuple]:
    db = agent_db(state_dir)
    try:
        return db.execute("SELECT command, seq, action, status, reason FROM control_log"
                          " ORDER BY n").fetchall()
    finally:
        db.close()


def signed_command(ring, *, store: str = "store-0001", region: str = REGION,
                   device: str | None = "receipt-1", action: str = "test_print",
                   args: dict | None = None, seq: int, issued: float | None = None,
                   expires: float | None = None, cmd_id: str | None = None) -> dict:
    """A command signed by `ring`, built without the allow-list check (to forge bad ones)."""
    now = time.time()
    issued = now if issued is None else issued
    doc = {"v": 1, "type": "command", "id": cmd_id or str(uuid.uuid4()), "store": store,
           "region": region, "device": device, "action": action, "args": args or {},
           "issued": proto.format_ts(issued),
           "expires": proto.format_ts(issued + 600 if expires is None else expires),
           "seq": seq}
    return ring.sign_document(doc)


def forge(doc: dict) -> dict:
    """The same command with a signature that is not the hub's (64 random-looking bytes)."""
    return dict(doc, sig=signing.b64url(bytes(range(64))))


class Raw:
    """A bare MQTT client that publishes whatever it is given (an attacker, a test hub)."""

    def __init__(self, broker, client_id: str = "raw-publisher"):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes | dict, retain: bool = False) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload).encode()
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(check, timeout: float = PATIENCE_S, what: str = "condition", every: float = 0.05):
    """wait.wait_until with this module's argument order (check, timeout, what)."""
    return wait_until(check, timeout, what, interval=every)


def hub_cli(*args: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", *args], capture_output=True, text=True,
                          env=agent_env(**env), cwd=ROOT, timeout=timeout)


def next_seq(db_url: str, store: str) -> int:
    """Take the store's next command seq from the hub's counter (as the hub would)."""
    from hub.domains.commands import rules
    from hub.app import open_store

    db = open_store(db_url)
    try:
        with db.transaction() as tx:
            return rules._next_seq(tx, store)
    finally:
        db.close()
