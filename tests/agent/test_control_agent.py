"""The agent's controller inside a real Agent (its state database, outbox and scheduler; no
broker): refusals beyond the hourly report budget are counted but not reported one by one, and
a bundle that arrives during trading hours waits for them to end unless it is urgent."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from datetime import datetime

import pytest

from controlkit import forge, signed_command
from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_protocol import bundles
from hub.keys import KeyRing


class InProcess:
    """A real Agent on an event loop in a background thread (sync off)."""

    def __init__(self, tmp_path, ring, control: str):
        keys = ", ".join(f'"{k}"' for k in ring.public_keys().values())
        self.config = tmp_path / "agent.toml"
        self.config.write_text(
            f'[agent]\nstore = "store-0001"\nregion = "eu-west"\nstate_dir = "{tmp_path}/s"\n'
            f"[scoring]\nenabled = false\n[trust]\nhub_keys = [{keys}]\n[control]\n{control}\n"
            '[[devices]]\nid = "register"\nkind = "host"\ninterval = 0.5\n')
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.agent = Agent(load_config(self.config), self.config)
        self.call(self.agent.start())
        deadline = time.monotonic() + 30
        while not self.agent.control.ready:
            assert time.monotonic() < deadline, "the controller did not start"
            time.sleep(0.02)

    def call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def outbox_results(self) -> list[dict]:
        db = sqlite3.connect(self.agent.config.state_path)
        try:
            rows = db.execute("SELECT payload FROM outbox WHERE kind = 'cmd_result' ORDER BY seq")
            return [json.loads(p)["body"] for (p,) in rows]
        finally:
            db.close()

    def close(self) -> None:
        self.call(self.agent.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def ring(tmp_path):
    return KeyRing.init(tmp_path / "keys")


def test_refusals_past_the_hourly_budget_are_counted_not_reported_one_by_one(tmp_path, ring):
    a = InProcess(tmp_path, ring, "rejects_reported_per_hour = 2")
    try:
        for seq in range(1, 6):
            payload = json.dumps(forge(signed_command(ring, seq=seq))).encode()
            assert a.call(a.agent.control.handle_command(payload)) == "bad_signature"
        results = a.outbox_results()
        assert len(results) == 2
        assert [r["rejects"]["bad_signature"] for r in results] == [1, 2]
        assert all(r["status"] == "rejected" and r["verified"] is False for r in results)
        # The next report (a valid command's result) carries every refusal counted.
        ok = json.dumps(signed_command(ring, seq=9, device="register", action="repoll")).encode()
        assert a.call(a.agent.control.handle_command(ok)) == "done"
        assert a.outbox_results()[-1]["rejects"] == {"bad_signature": 5}
    finally:
        a.close()


def _local(hour: int, minute: int = 0) -> float:
    now = datetime.now()
    return now.replace(hour=hour, minute=minute, second=0, microsecond=0).timestamp()


def desired(ring, sha_manifest: dict, version: int, urgent: bool) -> bytes:
    doc = ring.sign_document(bundles.desired_doc(
        store="store-0001", region="eu-west", version=version, issued=time.time(),
        urgent=urgent, bundles={"model": None,
                                "config": {"manifest": sha_manifest, "rollback": False}}))
    return json.dumps(doc).encode()


def config_bundle(ring, text: str, version: int) -> tuple[dict, bytes]:
    data = bundles.content("config", {"agent.toml": text.encode()})
    m = ring.sign_document(bundles.manifest(kind="config", name="agent", version=version,
                                            data=data, issued=time.time(),
                                            expires=time.time() + 3 * 86400))
    return m, data


@pytest.mark.parametrize("urgent", [False, True])
def test_a_bundle_waits_for_trading_hours_to_end_unless_urgent(tmp_path, ring, urgent):
    a = InProcess(tmp_path, ring, 'trading_hours = "08:00-21:00"')
    control = a.agent.control
    try:
        control.clock = lambda: _local(12)  # trading
        text = a.config.read_text() + '\n[[devices]]\nid = "till-2"\nkind = "host"\n'
        m, data = config_bundle(ring, text, 1)
        assert a.call(control.bundles.handle_desired(desired(ring, m, 1, urgent))) == "accepted"
        got = a.call(control.bundles.handle_content(m["sha256"], data))
        if urgent:
            assert got == "applied" and "till-2" in a.config.read_text()
            return
        assert got == "deferred" and "till-2" not in a.config.read_text()
        a.call(control.bundles.apply_deferred())  # still trading: nothing
        assert "till-2" not in a.config.read_text()
        control.clock = lambda: _local(22)  # closed
        a.call(control.bundles.apply_deferred())
        assert "till-2" in a.config.read_text()
        assert a.outbox_results()[-1]["status"] == "applied"
    finally:
        a.close()
