"""The real agent process: signals stop it cleanly, SIGHUP reloads, status tells stale and why."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest

from agentproc import AgentProcess, host_config, outbox_rows
from conftest import run_cli
from edge_agent.agent import Agent
from edge_agent.cli import status
from edge_agent.config import load_config, parse_text

from fakes import Scripted
from wait import wait_until


def readings_by_seq(db_path) -> list[tuple[int, str]]:
    """(seq, device) of every committed reading, in seq order."""
    out = []
    for seq, (_, payload) in sorted(outbox_rows(db_path).items()):
        envelope = json.loads(payload)
        if envelope["kind"] == "telemetry":
            out += [(seq, r["device"]) for r in envelope["body"]["readings"]]
    return out


STOP_SIGNALS = {"SIGTERM stops the agent": signal.SIGTERM,
                "SIGINT (Ctrl-C) stops the agent": signal.SIGINT}


@pytest.mark.parametrize("sig", STOP_SIGNALS.values(), ids=STOP_SIGNALS.keys())
def test_a_stop_signal_exits_0_and_commits_the_buffered_readings(tmp_path, sig):
    config = tmp_path / "agent.toml"
    # Commits only once an hour: whatever is in the outbox was committed by the shutdown.
    config.write_text(host_config(tmp_path / "state", devices=3, interval=0.05, flush=3600))
    agent = AgentProcess(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        # Let it poll a while; nothing is committed yet.
        time.sleep(1.0)
        assert readings_by_seq(tmp_path / "state" / "agent.db") == []
        agent.signal(sig)
        assert agent.wait(timeout=60.0) == 0  # patience, not a verdict: a loaded machine is slow
    finally:
        agent.kill()
    readings = readings_by_seq(tmp_path / "state" / "agent.db")
    assert {device for _, device in readings} == {"h0", "h1", "h2"}
    assert [line["msg"] for line in agent.lines()][-1] == "agent stopped"


def test_sighup_adds_removes_and_changes_devices_without_a_restart(tmp_path):
    config = tmp_path / "agent.toml"
    state = tmp_path / "state"
    db_path = state / "agent.db"
    config.write_text(host_config(state, devices=2, interval=0.05))  # h0, h1
    agent = AgentProcess(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: {d for _, d in readings_by_seq(db_path)} == {"h0", "h1"},
                   what="readings of h0 and h1")
        # h0 removed, h1 changed (interval), h2 added.
        text = host_config(state, devices=3, interval=0.05)
        text = text.replace('id = "h1"\nkind = "host"\ninterval = 0.05',
                            'id = "h1"\nkind = "host"\ninterval = 0.07')
        text = text.replace('[[devices]]\nid = "h0"\nkind = "host"\ninterval = 0.05\n', "")
        config.write_text(text)
        agent.signal(signal.SIGHUP)
        reloaded = agent.wait_for_log("config reloaded")[0]
        assert (reloaded["added"], reloaded["removed"], reloaded["changed"]) == ("h2", "h0", "h1")
        wait_until(lambda: "h2" in {d for _, d in readings_by_seq(db_path)}, what="readings of h2")
        first_h2 = min(seq for seq, d in readings_by_seq(db_path) if d == "h2")
        wait_until(lambda: max(s for s, _ in readings_by_seq(db_path)) > first_h2 + 2,
                   what="more commits")
        later = {d for s, d in readings_by_seq(db_path) if s > first_h2}
        assert "h0" not in later and {"h1", "h2"} <= later
        assert agent.proc.poll() is None
        assert len([1 for line in agent.lines() if line.get("msg") == "agent started"]) == 1
        assert agent.stop() == 0
    finally:
        agent.kill()


def test_sighup_with_a_bad_config_logs_every_problem_keeps_the_old_one_and_keeps_polling(
        tmp_path):
    config = tmp_path / "agent.toml"
    state = tmp_path / "state"
    db_path = state / "agent.db"
    good = host_config(state, devices=1, interval=0.05)
    config.write_text(good)
    agent = AgentProcess(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: readings_by_seq(db_path), what="a first reading")
        config.write_text(good.replace('kind = "host"\ninterval = 0.05',
                                      'kind = "host"\ninterval = 0\ncolour = "red"'))
        agent.signal(signal.SIGHUP)
        rejected = agent.wait_for_log("new config rejected; keeping the old one", count=2)
        problems = sorted(line["problem"] for line in rejected)
        assert problems == ["devices[0].colour: unknown key", "devices[0].interval: must be > 0"]
        assert all(line["level"] == "error" for line in rejected)
        seq_at_reject = max(s for s, _ in readings_by_seq(db_path))
        wait_until(lambda: any(s > seq_at_reject + 2 and d == "h0"
                               for s, d in readings_by_seq(db_path)),
                   what="h0 still polled after the rejected reload")
        assert agent.stop() == 0
    finally:
        agent.kill()


def status_of(config_path, device_id: str) -> dict:
    doc = status.collect(load_config(config_path))
    return next(d for d in doc["devices"] if d["id"] == device_id)


def test_status_shows_a_device_fresh_while_polled_then_stale_past_max_age_and_why(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(host_config(tmp_path / "state", devices=1, interval=0.05,
                                  device_extra="max_age = 1.0"))
    agent = AgentProcess(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: status_of(config, "h0")["stale"] is False, what="h0 shown fresh")
        shown = run_cli("status", "--config", str(config), "--json")
        assert shown.returncode == 0, shown.stderr
        doc = json.loads(shown.stdout)
        assert doc["agent"] == {"running": True, "pid": agent.pid}
        assert agent.stop() == 0
    finally:
        agent.kill()
    wait_until(lambda: status_of(config, "h0")["stale"], what="h0 shown stale")
    entry = status_of(config, "h0")
    assert "max_age 1s" in entry["reason"] and "the agent is not running" in entry["reason"]
    assert entry["values"]["device.status"] in ("ok", "warning")
    text = run_cli("status", "--config", str(config))
    assert text.returncode == 0 and "STALE" in text.stdout and "agent not running" in text.stdout


def test_status_shows_the_reason_a_device_gives_when_it_never_answered(tmp_path):
    text = host_config(tmp_path / "state", devices=1, interval=0.01, flush=0.01)
    config = parse_text(text)

    async def main():
        agent = Agent(config, factory=lambda d: Scripted(d, [False] * 1000))
        await agent.start()
        while agent.recorder.committed_rows == 0:
            await asyncio.sleep(0.01)
        await agent.stop()

    asyncio.run(main())
    doc = status.collect(config)
    entry = doc["devices"][0]
    assert entry["stale"] is True and entry["reason"] == "no answer"
    assert entry["failures"] >= 1
    assert doc["outbox"]["classes"]["telemetry"]["rows"] >= 1


def test_status_and_outbox_say_plainly_when_the_state_database_is_not_a_database(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "agent.db").write_bytes(b"this is not sqlite" * 100)
    config = tmp_path / "agent.toml"
    config.write_text(host_config(state))
    for command in ("status", "outbox"):
        result = run_cli(command, "--config", str(config))
        assert result.returncode == 1, result
        assert "Traceback" not in result.stderr and "agent.db" in result.stderr
    # The file is left as it was, for a person to look at.
    assert (state / "agent.db").read_bytes().startswith(b"this is not sqlite")


HUNG_AGENT = """
import asyncio, os, signal, sys, threading
sys.path.insert(0, sys.argv[2])
from fakes import HungThread, Counting
from edge_common import logs
from edge_agent.agent import Agent
from edge_agent.config import load_config

logs.setup("text", "info")
never = threading.Event()  # never set: the device's call stays stuck in its thread
made = {}

def factory(device):
    made[device.id] = HungThread(device, never) if device.id == "h0" else Counting(device)
    return made[device.id]

async def main():
    agent = Agent(load_config(sys.argv[1]), sys.argv[1], factory=factory)
    runner = asyncio.create_task(agent.run())
    while "h0" not in made or made["h0"].entered == 0 or made["h1"].polls < 3:
        await asyncio.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)
    return await runner

sys.exit(asyncio.run(main()))
"""


def test_sigterm_exits_0_even_while_a_device_call_is_stuck_in_a_thread_forever(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT, agent_env

    config = tmp_path / "agent.toml"
    config.write_text(host_config(tmp_path / "state", devices=2, interval=0.05,
                                  device_extra="timeout = 0.2"))
    result = subprocess.run([sys.executable, "-c", HUNG_AGENT, str(config),
                             str(ROOT / "tests" / "support")],
                            capture_output=True, text=True, timeout=60, env=agent_env())
    assert result.returncode == 0, result.stderr
    assert "agent stopped" in result.stderr
    assert readings_by_seq(tmp_path / "state" / "agent.db"), "buffered readings committed"


def test_a_second_agent_on_the_same_state_folder_refuses_to_start_and_names_the_first(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(host_config(tmp_path / "state"))
    agent = AgentProcess(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        second = run_cli("run", "--config", str(config))
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert f"another agent is running on {tmp_path / 'state'} (pid {agent.pid})" \
            in second.stderr
        assert agent.stop() == 0
    finally:
        agent.kill()


def test_run_with_an_invalid_config_exits_2_naming_each_problem(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(host_config(tmp_path / "state").replace("interval = 0.05",
                                                              "interval = -1"))
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "devices[0].interval: must be > 0" in result.stderr
