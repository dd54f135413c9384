"""Helpers for the hub's tests: envelopes, a paho publisher, hub processes, fleet databases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from testenv import ROOT, agent_env
from wait import PATIENCE_S, wait_until
import edge_protocol as wire
from edge_agent.outbox import uuid7
from edge_agent.reading import format_ts

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def now_ts(offset_s: float = 0.0) -> str:
    return format_ts(datetime.fromtimestamp(time.time() + offset_s, timezone.utc))


def envelope(kind: str, body: dict[str, Any], *, store: str = "s1", region: str = "r1",
             seq: int = 1, id: str | None = None) -> dict[str, Any]:
    return {"v": 1, "id": id or uuid7(), "seq": seq, "store": store, "region": region,
            "ts": now_ts(), "kind": kind, "body": body}


def reading(device: str = "p1", kind: str = "escpos", **values: Any) -> dict[str, Any]:
    return {"device": device, "kind": kind, "ts": now_ts(),
            "values": values or {"device.status": "ok"}, "stale": False, "reason": None}


def telemetry(n: int = 1, device: str = "p1") -> dict[str, Any]:
    return {"readings": [reading(device) for _ in range(n)]}


def alert_body(state: str = "raised", *, device: str = "p1", what: str = "paper_out",
               since: str | None = None, ts: str | None = None) -> dict[str, Any]:
    ts = ts or now_ts()
    return {"alert": f"{device}:{what}", "device": device, "what": what, "state": state,
            "severity": "critical", "since": since or ts, "ts": ts,
            "explanation": [f"printer.paper = out on {device}"], "decision": None}


def decision_body(device: str = "p1", decision: str = "predicted_failure",
                  score: float = 0.91) -> dict[str, Any]:
    return {"device": device, "decision": decision, "previous": "ok", "score": score,
            "threshold": 0.8, "model": "health-1", "features": {"jam_rate": 0.3},
            "explanation": ["jam_rate 0.3 above 0.1"], "ts": now_ts()}


def birth_body(session: int, devices: tuple[str, ...] = ("p1",)) -> dict[str, Any]:
    return {"session": session, "inventory": [{"id": d, "kind": "escpos"} for d in devices],
            "agent_version": "0.1.0", "model_version": "health-1",
            "config_hash": "sha256:abc123", "last_seq": 0}


class Publisher:
    """A paho MQTT v5 client that publishes QoS 1 messages with a bounded number in flight."""

    def __init__(self, broker, client_id: str | None = None, inflight: int = 200):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(inflight)
        self.client.connect(broker.host, broker.port, 30)
        self.client.loop_start()

    def send(self, env: dict[str, Any] | bytes, topic: str | None = None) -> None:
        payload = env if isinstance(env, bytes) else wire.encode(env)
        if topic is None:
            topic = wire.topic(env["region"], env["store"], env["kind"])
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)

    def send_many(self, envs: list[dict[str, Any]], window: int = 500) -> None:
        self.publish_all([(wire.topic(e["region"], e["store"], e["kind"]), wire.encode(e))
                          for e in envs], window)

    def publish_all(self, items: list[tuple[str, bytes]], window: int = 500) -> None:
        """Publish (topic, payload) pairs at QoS 1, at most `window` unconfirmed.

        paho keys its queue by the 16-bit message id: bound what is outstanding
        (PROTOCOLS.md, section 7).
        """
        infos = []
        for topic, payload in items:
            infos.append(self.client.publish(topic, payload, qos=1))
            if len(infos) >= window:
                for i in infos:
                    i.wait_for_publish(30)
                infos = []
        for i in infos:
            i.wait_for_publish(30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Subscriber:
    """Collect every message on a topic filter (the alert feed, the hub's state)."""

    def __init__(self, broker, topic: str):
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"sub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect(broker.host, broker.port, 30)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert ready.wait(10), "subscription not acknowledged"

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [m[1] for m in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# The name tests wrote before tests/support/wait.py (same arguments); new tests import
# wait_until from wait. Remove once no test imports it from here.
wait_for = wait_until


RUNNING: list["HubProcess"] = []  # killed after each test (conftest), even one that failed


class HubProcess:
    """`python -m hub serve` as a subprocess of the test, stopped or killed by it."""

    def __init__(self, broker, db: str, client_id: str = "hub-test-1", *extra: str,
                 log_path: Path | None = None):
        self.args = [sys.executable, "-m", "hub", "serve", "--broker",
                     f"{broker.host}:{broker.port}", "--db", db, "--client-id", client_id,
                     "--log-format", "json", *extra]
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "HubProcess":
        self.err = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        # stdout carries the readiness line (hub.app.ready_line); a file, so nothing blocks.
        self.out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.args, env=agent_env(), cwd=ROOT,
                                     stdout=self.out, stderr=self.err)
        RUNNING.append(self)
        return self

    def ready_lines(self) -> list[str]:
        """The READY lines this process printed (one per start: each worker says it once)."""
        self.out.seek(0)
        return [line for line in self.out.read().decode(errors="replace").splitlines()
                if line.startswith("READY edge-hub ")]

    def wait_connected(self, timeout: float = PATIENCE_S) -> None:
        """Wait for the hub's READY line: every lane subscribed (SUBACK), so a stream published
        from now on reaches it."""
        wait_until(self.ready_lines, timeout, "the hub's READY line", gone=self._gone,
                   detail=lambda: f"hub log:\n{self.log()[-3000:]}")

    def _gone(self) -> str | None:
        code = self.proc.poll()
        return None if code is None else f"the hub exited with code {code}"

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def stats(self) -> dict[str, Any]:
        """The counters the hub logged when it stopped."""
        for line in reversed(self.log().splitlines()):
            if '"hub stopped"' in line:
                return json.loads(line)
        raise AssertionError(f"no 'hub stopped' line in {self.log()}")

    def terminate(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(20)
        return self.proc.returncode if self.proc else 0

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def pg_reachable() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def create_pg_database() -> str:
    """Create a fresh PostgreSQL database for one test; return its URL."""
    import psycopg

    name = f"hub_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
