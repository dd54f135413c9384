"""The sync service in a real agent process: the Will on SIGKILL, status, import discipline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import agent_env, run_cli
from hubstandin import HubStandIn
from syncrig import STORES, agent_toml, hub_tls, make_pki, sync_toml, tls_broker
from wait import wait_until


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki")


def test_the_will_carries_the_session_number_when_the_agent_process_is_killed(tmp_path, pki):
    broker = tls_broker(tmp_path / "broker", pki).start()
    hub = agent = None
    try:
        hub = HubStandIn(broker.host, broker.port, tls=hub_tls(pki))
        hub.publish_state(True)
        config = tmp_path / "agent.toml"
        devices = '[[devices]]\nid = "register"\nkind = "host"\ninterval = 3600.0\n'
        config.write_text(agent_toml(tmp_path / "state", sync_toml(broker, pki), devices=devices))
        with open(tmp_path / "agent.log", "wb") as log:
            agent = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config",
                                      str(config)], env=agent_env(), stdout=log, stderr=log)
        birth = wait_until(lambda: hub.envelopes("birth"), what="the agent's birth")[0]
        session = birth["body"]["session"]
        wait_until(lambda: hub.ids(), what="the first telemetry")

        status = json.loads(run_cli("status", "--config", str(config), "--json").stdout)
        assert status["sync"]["connected"] is True
        assert status["sync"]["hub_online"] is True
        assert status["sync"]["session"] == session
        text = run_cli("status", "--config", str(config)).stdout
        assert f"sync: connected to {broker.host}:{broker.port}" in text

        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        death = wait_until(lambda: hub.envelopes("death"), what="the Will")[0]
        # The Will names the session and the state database (instance) the birth named.
        assert death["body"] == {"session": session, "instance": birth["body"]["instance"]}
        assert birth["body"]["instance"]
        assert death["store"] == STORES[0]

        after = json.loads(run_cli("status", "--config", str(config), "--json").stdout)
        assert after["sync"]["connected"] is False
        assert after["sync"]["last_error"] == "agent not running"
        assert hub.errors == []
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait(10)
        if hub is not None:
            hub.close()
        broker.kill()


@pytest.mark.parametrize("enabled", [False, True], ids=["sync disabled", "sync enabled"])
def test_paho_is_not_imported_until_the_sync_service_starts(tmp_path, enabled):
    config = tmp_path / "agent.toml"
    config.write_text(agent_toml(tmp_path / "state", f'enabled = {str(enabled).lower()}\n'
                                 'host = "127.0.0.1"\ntls = false'))
    script = textwrap.dedent(f"""
        import sys
        from edge_agent.config import load_config
        from edge_agent.agent import Agent
        from edge_agent.cli import status
        agent = Agent(load_config({str(config)!r}), {str(config)!r})
        assert any(s.__module__ == "edge_agent.sync" for s in agent.services) is {enabled}
        print("paho" in " ".join(sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=agent_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _outbox_ids(state_path) -> set[str]:
    from edge_agent.state import db as statedb

    db = statedb.connect(state_path, readonly=True)
    try:
        return {r[0] for r in db.execute("SELECT id FROM outbox")}
    finally:
        db.close()


def test_an_agent_killed_mid_drain_loses_nothing_and_resends_only_the_same_ids(tmp_path, pki):
    from edge_agent.config import load_config
    from edge_agent.outbox import Outbox
    from edge_agent.state import db as statedb
    from syncrig import alert_body

    broker = tls_broker(tmp_path / "broker", pki).start()
    hub = None
    procs: list[subprocess.Popen] = []
    try:
        hub = HubStandIn(broker.host, broker.port, tls=hub_tls(pki))
        hub.publish_state(True)
        config = tmp_path / "agent.toml"
        config.write_text(agent_toml(tmp_path / "state", sync_toml(broker, pki)))
        cfg = load_config(config)
        db = statedb.connect(cfg.state_path)
        rows = Outbox(db, cfg.agent.store, cfg.agent.region).enqueue_many(
            [("telemetry", {"readings": []})] * 6000 + [("alert", alert_body(1))])
        db.close()
        every = {r.id for r in rows}

        def start() -> subprocess.Popen:
            log = open(tmp_path / f"agent-{len(procs)}.log", "wb")
            proc = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config",
                                     str(config)], env=agent_env(), stdout=log, stderr=log)
            log.close()
            procs.append(proc)
            return proc

        first = start()
        wait_until(lambda: len(hub.ids()) >= 500, what="the drain to be under way")
        first.kill()
        first.wait(10)
        left = _outbox_ids(cfg.state_path)
        assert left, "the agent should have died mid-drain"
        # The broker (alive) acknowledged every deleted row; the hub gets them, maybe later.
        wait_until(lambda: every - left <= hub.ids(), what="every deleted row at the hub")

        start()
        wait_until(lambda: not _outbox_ids(cfg.state_path),
                   what="the restarted agent to drain the outbox")
        wait_until(lambda: hub.ids() >= every, what="every row at the hub")
        assert hub.ids() == every
        assert all(len(set(p)) == 1 for p in hub.by_id.values()), \
            "a duplicate must be a redelivery of the same envelope"
        sessions = [e["body"]["session"] for e in hub.envelopes("birth")]
        # Two sessions, in order; a session may send a second birth once its model has loaded.
        assert sessions == sorted(sessions) and sorted(set(sessions)) == [1, 2]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        if hub is not None:
            hub.close()
        broker.kill()
