"""The health service inside a running agent: decisions committed, status, and import discipline."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import textwrap

from conftest import ROOT, agent_env, run_cli
import edge_protocol as wire
from edge_agent.agent import Agent
from edge_agent.config import load_config


def write_config(tmp_path, enabled: bool = True):
    path = tmp_path / "agent.toml"
    path.write_text(textwrap.dedent(f"""
        [agent]
        store = "store-1"
        state_dir = "{tmp_path / 'state'}"

        [scoring]
        enabled = {str(enabled).lower()}
        interval = 0.3

        [[devices]]
        id = "register"
        kind = "host"
        interval = 0.2

        [devices.host]
        temperature = false
    """))
    return path


async def run_until(agent: Agent, condition, limit_s: float = 120.0) -> None:
    """Run the agent until condition(agent) holds (or the generous limit passes), then stop."""
    await agent.start()
    try:
        for _ in range(int(limit_s / 0.1)):
            await asyncio.sleep(0.1)
            if agent.health is not None and condition(agent):
                break
    finally:
        await agent.stop()


def outbox_bodies(state_dir, kind):
    db = sqlite3.connect(state_dir / "agent.db")
    try:
        return [json.loads(p)["body"] for (p,) in
                db.execute("SELECT payload FROM outbox WHERE kind = ? ORDER BY seq", (kind,))]
    finally:
        db.close()


def test_the_agent_scores_its_devices_and_commits_decisions_with_provenance(tmp_path):
    path = write_config(tmp_path)
    agent = Agent(load_config(path), path)
    asyncio.run(run_until(agent, lambda a: a.health.cycles >= 3))
    assert agent.health.cycles >= 3
    decisions = outbox_bodies(tmp_path / "state", "decision")
    assert decisions, "no decision committed to the outbox"
    for body in decisions:
        wire.check_decision(body)
    first = decisions[0]
    assert first["device"] == "register" and first["model"].startswith("device_health-")
    assert set(first["features"]) >= {"host_temp_c", "disk_pct", "latency_ms"}

    status = run_cli("status", "--config", str(path), "--json")
    doc = json.loads(status.stdout)
    assert doc["scoring"]["model"] == first["model"] and doc["scoring"]["enabled"]
    assert doc["devices"][0]["health"]["decision"] == first["decision"]
    text = run_cli("status", "--config", str(path)).stdout
    assert f"scoring: model {first['model']}" in text


def test_an_agent_restarted_keeps_its_windows_and_does_not_repeat_its_decision(tmp_path):
    path = write_config(tmp_path)
    agent = Agent(load_config(path), path)
    asyncio.run(run_until(agent, lambda a: a.health.cycles >= 2))
    before = len(outbox_bodies(tmp_path / "state", "decision"))
    again = Agent(load_config(path), path)
    asyncio.run(run_until(again, lambda a: a.health.cycles >= 2))
    assert "register" in again.health.features.windows
    first_seen = again.health.features.windows["register"].first_ts
    assert first_seen < again.health.last_cycle - 0.5, "windows restarted from empty"
    after = outbox_bodies(tmp_path / "state", "decision")
    assert len(after) == before or after[-1]["previous"] is not None


def test_with_scoring_disabled_the_agent_never_imports_onnxruntime_and_status_says_so(tmp_path):
    path = write_config(tmp_path, enabled=False)
    code = textwrap.dedent(f"""
        import asyncio, sys
        sys.path[:0] = ["tests/agent/health", "tests", "tests/support"]
        from test_health_agent import run_until
        from edge_agent.agent import Agent
        from edge_agent.config import load_config
        agent = Agent(load_config({str(path)!r}))
        asyncio.run(run_until(agent, lambda a: a.health.cycles >= 2))
        print("cycles", agent.health.cycles, "onnxruntime" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env=agent_env(), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "False" and int(result.stdout.split()[1]) >= 2
    text = run_cli("status", "--config", str(path)).stdout
    assert "scoring: disabled in [scoring]; rule alerts only" in text


def test_an_agent_whose_model_is_missing_runs_rule_alerts_and_says_it_is_not_scoring(tmp_path):
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace(
        "interval = 0.3", f"interval = 0.3\nmodel = \"{tmp_path / 'gone.onnx'}\""))
    agent = Agent(load_config(path), path)
    asyncio.run(run_until(agent, lambda a: a.health.cycles >= 2))
    decisions = outbox_bodies(tmp_path / "state", "decision")
    assert decisions and all(d["score"] is None and d["model"] is None for d in decisions)
    text = run_cli("status", "--config", str(path)).stdout
    assert "scoring: NOT SCORING: model" in text and "is missing" in text


def test_a_model_replaced_by_a_corrupt_file_is_refused_and_the_agent_scores_on(tmp_path):
    import shutil

    from edge_agent.health.scorer import card_path, packaged_model

    model = tmp_path / "models" / "device_health.onnx"
    model.parent.mkdir()
    shutil.copyfile(packaged_model(), model)
    shutil.copyfile(card_path(packaged_model()), card_path(model))
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("interval = 0.3",
                                             f"interval = 0.3\nmodel = \"{model}\""))
    agent = Agent(load_config(path), path)

    def corrupt_then_wait(a):
        if a.health.cycles == 2 and model.stat().st_size > 100:
            model.write_bytes(b"\x00" * 64)  # a half-written or damaged model file
        return a.health.cycles >= 5 and a.health.scorer.error is not None

    asyncio.run(run_until(agent, corrupt_then_wait))
    assert "does not match its card" in agent.health.scorer.error
    assert agent.health.scorer.version is not None and agent.health.cycles >= 5
    text = run_cli("status", "--config", str(path)).stdout
    assert f"scoring: model {agent.health.scorer.version}" in text
    assert "last model refused" in text
