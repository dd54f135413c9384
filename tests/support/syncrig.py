"""Test rig for the sync client: a PKI, a TLS broker with the store ACL, an agent on a loop thread."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from brokers import BrokerTLS, Mosquitto, store_acl
from certs import Authority
from hubstandin import tls_context
from wait import PATIENCE_S, wait_until

from edge_agent.agent import Agent
from edge_agent.config import load_config

REGION = "eu-west"
STORES = ("store-0001", "store-0002")


def make_pki(folder: Path) -> SimpleNamespace:
    """A CA, the broker's certificate, the hub's and one per store, plus a rogue CA's store cert."""
    ca = Authority(folder / "ca")
    rogue = Authority(folder / "rogue", name="Rogue CA")
    return SimpleNamespace(ca=ca, broker=ca.issue("127.0.0.1", server=True), hub=ca.issue("hub"),
                           stores={s: ca.issue(s) for s in STORES},
                           rogue=rogue.issue(STORES[0]))


def tls_broker(folder: Path, pki: SimpleNamespace) -> Mosquitto:
    return Mosquitto(folder, allow_anonymous=False,
                     tls=BrokerTLS(pki.ca.ca_path, pki.broker.cert, pki.broker.key),
                     acl=store_acl({s: REGION for s in STORES}))


def hub_tls(pki: SimpleNamespace):
    return tls_context(pki.ca.ca_path, pki.hub.cert, pki.hub.key)


def sync_toml(broker: Mosquitto, pki: SimpleNamespace | None, *, store: str = STORES[0],
              identity: Any = None, **extra: Any) -> str:
    """The [sync] table for an agent of `store` (TLS with its own certificate unless told)."""
    lines = ["enabled = true", f'host = "{broker.host}"', f"port = {broker.port}",
             "reconnect_min = 0.05", "reconnect_max = 0.3", "connect_timeout = 5.0"]
    if pki is None:
        lines.append("tls = false")
    else:
        ident = identity or pki.stores[store]
        lines += [f'tls_ca = "{pki.ca.ca_path}"', f'tls_cert = "{ident.cert}"',
                  f'tls_key = "{ident.key}"']
    for key, value in extra.items():
        text = str(value).lower() if isinstance(value, bool) else json.dumps(value)
        lines.append(f"{key} = {text}")
    return "\n".join(lines)


def agent_toml(state_dir: Path, sync: str, *, store: str = STORES[0], devices: str = "") -> str:
    # Scoring off: these tests are about the link, and a model loading mid-test would send an
    # extra birth at a moment the test does not choose (health has its own tests).
    return (f'[agent]\nstore = "{store}"\nregion = "{REGION}"\nstate_dir = "{state_dir}"\n\n'
            f"[scoring]\nenabled = false\n\n[sync]\n{sync}\n\n{devices}")


class RunningAgent:
    """A real Agent with sync enabled, on an event loop in a background thread."""

    def __init__(self, folder: Path, toml: str):
        folder.mkdir(parents=True, exist_ok=True)
        self.config_path = folder / "agent.toml"
        self.config_path.write_text(toml)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.agent = Agent(load_config(self.config_path), self.config_path)
        self.started = False

    def call(self, coro, timeout: float = PATIENCE_S) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def db(self, fn, *args) -> Any:
        return self.call(self.agent._db(fn, *args))

    def prefill(self, items) -> list:
        """Commit envelopes to the outbox before the agent starts (so it starts with a backlog)."""
        from edge_agent.outbox import Outbox
        from edge_agent.state import db as statedb

        cfg = self.agent.config
        db = statedb.connect(cfg.state_path)
        try:
            return Outbox(db, cfg.agent.store, cfg.agent.region).enqueue_many(items)
        finally:
            db.close()

    def start(self) -> "RunningAgent":
        self.call(self.agent.start())
        self.started = True
        wait_until(lambda: getattr(self.agent, "sync_client", None), what="the sync service")
        return self

    @property
    def client(self):
        return self.agent.sync_client

    def enqueue(self, items) -> list:
        return self.db(self.agent.outbox.enqueue_many, items)

    def outbox_ids(self) -> set[str]:
        return self.db(lambda: {r[0] for r in self.agent.db.execute("SELECT id FROM outbox")})

    def meta(self, key: str) -> str | None:
        row = self.db(lambda: self.agent.db.execute(
            "SELECT value FROM meta WHERE key = ?", (key,)).fetchone())
        return row[0] if row else None

    def stop(self) -> None:
        try:
            if self.started:
                self.call(self.agent.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


def alert_body(i: int) -> dict:
    return {"alert": f"receipt-1:paper_out:{i}", "device": "receipt-1", "what": "paper_out",
            "state": "raised", "severity": "critical", "since": "2026-11-22T15:00:00Z",
            "ts": "2026-11-22T15:00:00Z", "explanation": ["printer.paper = out"],
            "decision": None}
