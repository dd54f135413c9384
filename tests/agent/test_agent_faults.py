"""Issue 15, the agent: user mistakes are one line and exit 2, a lost state database and a full
disk are reported plainly, noise from a printer is never a reading, outbox drops reach the hub.

Each test here failed on main before the fix (the issue's reproduction), and passes after.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agentproc import AgentProcess, host_config, outbox_rows, wait_until
from conftest import ROOT, agent_env, run_cli

DEEP_TOML = '[agent]\nstore = "s1"\nx = ' + "[" * 500 + "]" * 500 + "\n"


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def one_line_exit_2(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- state_dir ------------------------------------------------------------------------------

def unusable_state_dirs(tmp_path: Path) -> list[tuple[str, str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    return [
        ("/", "root of the file system"),
        ("//", "root of the file system"),
        ("/tmp/..", "root of the file system"),
        (str(a_file), "is not a folder"),
        (str(a_file / "sub"), "is not a folder"),
        ("/proc/edge-agent-test", "not writable"),  # a pseudo file system: no folder there
    ]


def test_check_config_refuses_an_unusable_state_dir_in_one_line(tmp_path):
    for state_dir, why in unusable_state_dirs(tmp_path):
        config = write(tmp_path / "agent.toml", f'[agent]\nstore = "s1"\nstate_dir = "{state_dir}"\n')
        one_line_exit_2(run_cli("check-config", config), "agent.state_dir", why)


def root_files() -> dict[str, tuple[int, int] | None]:
    """What the agent would write into `/` (another process on the machine may have already)."""
    out = {}
    for name in ("agent.db", "agent.lock", "agent.db-wal"):
        try:
            st = os.stat(Path("/") / name)
            out[name] = (st.st_ino, st.st_mtime_ns)
        except OSError:
            out[name] = None
    return out


def test_run_refuses_an_unusable_state_dir_in_one_line_instead_of_a_traceback(tmp_path):
    before = root_files()
    for state_dir, why in unusable_state_dirs(tmp_path)[:4]:
        config = write(tmp_path / "agent.toml", f'[agent]\nstore = "s1"\nstate_dir = "{state_dir}"\n')
        one_line_exit_2(run_cli("run", "--config", config, timeout=60), "agent.state_dir", why)
    assert root_files() == before  # nothing created or written in the root


def test_check_config_accepts_a_folder_it_can_create_and_creates_nothing(tmp_path):
    target = tmp_path / "new" / "state"
    config = write(tmp_path / "agent.toml", f'[agent]\nstore = "s1"\nstate_dir = "{target}"\n')
    result = run_cli("check-config", config)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["agent.toml"]


# --- arguments, TOML, pipes -----------------------------------------------------------------

def run_bytes(*args: bytes, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([os.fsencode(sys.executable), b"-m", b"edge_agent", *args],
                          capture_output=True, timeout=60, env=agent_env(**env))


def test_a_non_utf8_argument_is_one_line_and_exit_2(tmp_path):
    name = os.fsencode(str(tmp_path)) + b"/\xff.toml"
    Path(os.fsdecode(name)).write_text('[agent]\nstore = "s1"\nstate_dir = "%s"\n' % tmp_path)
    # A strict UTF-8 terminal (the usual desktop locale), where printing the name raised.
    for args in ((b"check-config", name), (b"status", b"--config", name),
                 (b"probe", b"host://\xff")):
        result = run_bytes(*args, PYTHONIOENCODING="utf-8:strict")
        stderr = result.stderr.decode("utf-8", "replace")
        assert result.returncode == 2, stderr
        assert "Traceback" not in stderr
        assert stderr.count("\n") == 1 and "is not UTF-8 text" in stderr and "\\xff" in stderr


def test_toml_nested_500_levels_is_one_line_and_exit_2(tmp_path):
    config = write(tmp_path / "deep.toml", DEEP_TOML)
    one_line_exit_2(run_cli("check-config", config), "nested too deeply")
    one_line_exit_2(run_cli("run", "--config", config), "nested too deeply")


def test_a_sighup_reload_of_toml_nested_500_levels_logs_one_line_not_a_traceback(
        tmp_path, caplog):
    from edge_agent.agent import Agent
    from edge_agent.config import parse_text

    good = host_config(tmp_path / "state", devices=1, interval=0.2)
    path = tmp_path / "agent.toml"
    path.write_text(good)

    async def main():
        agent = Agent(parse_text(good), path)
        agent.services = []
        await agent.start()
        try:
            path.write_text(DEEP_TOML)
            with caplog.at_level(logging.INFO):
                caplog.clear()
                ok = agent.reload()
            return ok, list(caplog.records)
        finally:
            await agent.stop()

    ok, records = asyncio.run(main())
    assert ok is False
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].exc_info is None
    assert "nested too deeply" in records[0].problem


def closed_pipe_run(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI with stdout a pipe whose reader is gone before the process writes."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([sys.executable, "-m", "edge_agent", *args], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=60, env=agent_env())
    finally:
        os.close(w)


def test_a_closed_stdout_pipe_ends_quietly_without_a_traceback(tmp_path):
    config = write(tmp_path / "agent.toml", host_config(tmp_path / "state", devices=300))
    for args in (("--version",), ("status", "--config", config, "--json"),
                 ("status", "--config", config), ("check-config", config), ("--help",)):
        result = closed_pipe_run(*args)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert result.stderr == "", (args, result.stderr)
        assert result.returncode == 0, args


# --- the state database deleted or replaced under the running agent --------------------------

def start_agent(tmp_path: Path) -> tuple[AgentProcess, Path]:
    state = tmp_path / "state"
    config = tmp_path / "agent.toml"
    config.write_text(host_config(state, devices=2, interval=0.05, flush=0.05))
    agent = AgentProcess(config, tmp_path / "agent.log")
    db = state / "agent.db"
    wait_until(lambda: len(outbox_rows(db)) >= 3, "the agent commits rows")
    return agent, db


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_state_database_deleted_or_replaced_under_the_agent_is_noticed_reported_and_stops_it(
        tmp_path, how):
    agent, db = start_agent(tmp_path)
    try:
        if how == "deleted":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        else:
            other = tmp_path / "other.db"
            sqlite3.connect(other).close()
            os.replace(other, db)
        assert agent.wait() == 1
        errors = [line for line in agent.lines() if line.get("level") == "error"]
        assert errors and errors[0]["msg"].startswith("state database lost")
        assert f"was {how} under the agent" in errors[0]["reason"]
        assert not any("exc" in line for line in agent.lines())
    finally:
        agent.kill()
    status = run_cli("status", "--config", str(agent.config), "--json")
    assert status.returncode == 0, status.stderr
    assert f"was {how} under the agent" in json.loads(status.stdout)["fault"]["reason"]
    text = run_cli("status", "--config", str(agent.config))
    assert "the agent stopped itself at" in text.stdout
    # The next run takes the database there now, says why the last one stopped, and clears it.
    again = AgentProcess(agent.config, tmp_path / "again.log")
    try:
        again.wait_for_log("the previous run stopped on a fault")
        wait_until(lambda: len(outbox_rows(db)) >= 1, "the new run commits rows")
    finally:
        assert again.stop() == 0
    assert json.loads(run_cli("status", "--config", str(agent.config), "--json").stdout)[
        "fault"] is None


# --- a full disk ----------------------------------------------------------------------------

def test_a_full_disk_is_one_log_line_a_minute_and_loses_nothing_committed(tmp_path, caplog):
    """SQLite's page limit gives the very SQLITE_FULL a full disk gives, on this connection."""
    from edge_agent.agent import Agent
    from edge_agent.config import parse_text

    config = parse_text(host_config(tmp_path / "state", devices=3, interval=0.02, flush=0.02))

    async def main():
        agent = Agent(config)
        agent.services = []
        await agent.start()
        try:
            await asyncio.sleep(0.5)
            await agent.recorder.flush()
            before = dict(outbox_rows(config.state_path))
            pages = await agent._db(lambda: agent.db.execute("PRAGMA page_count").fetchone()[0])
            await agent._db(lambda: agent.db.execute(f"PRAGMA max_page_count = {pages}"))
            with caplog.at_level(logging.INFO, logger="edge_agent"):
                caplog.clear()
                await asyncio.sleep(3.0)  # about 150 flushes, each failing
                full = list(caplog.records)
                failed = agent.recorder.failed_commits
                problem = agent.summary().get("problem")
                await agent._db(lambda: agent.db.execute("PRAGMA max_page_count = 1073741823"))
                wait = 0.0
                while agent.recorder.commit_error and wait < 30:
                    await asyncio.sleep(0.05)
                    wait += 0.05
                after_records = list(caplog.records)[len(full):]
            await agent.recorder.flush()
            return before, full, failed, problem, after_records
        finally:
            await agent.stop()

    before, full, failed, problem, after_records = asyncio.run(main())
    assert failed >= 10
    errors = [r for r in full if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].exc_info is None and errors[0].cause.startswith("disk full")
    assert problem and "disk full" in problem
    assert any(r.getMessage() == "commits succeed again" for r in after_records)
    rows = outbox_rows(config.state_path)
    # Nothing committed before was lost, and the seqs have no hole: nothing was half-written.
    assert all(rows.get(seq) == row for seq, row in before.items())
    assert sorted(rows) == list(range(1, max(rows) + 1))
    assert max(rows) > max(before)


# --- a printer that sends noise ---------------------------------------------------------------

def test_random_bytes_from_a_printer_never_become_a_fresh_reading():
    from edge_agent.collectors.escpos.collector import EscposCollector
    from edge_agent.collectors.escpos.config import EscposConfig
    from edge_agent.config import DeviceConfig
    from edge_agent.configschema import load
    from edge_agent.reading import validate
    from edge_agent.collectors.escpos.transport import Transport

    class ScriptedPrinter(Transport):
        """Answers each request with the next scripted chunk of bytes, whatever they are."""

        def __init__(self, chunks):
            self.chunks, self.out, self._open, self.where = list(chunks), b"", False, "noise"

        @property
        def is_open(self):
            return self._open

        async def open(self, timeout):
            self._open = True

        async def write(self, data):
            if self.chunks:
                self.out += self.chunks.pop(0)

        async def read(self, timeout):
            if not self.out:
                await asyncio.sleep(max(timeout, 0))
            out, self.out = self.out, b""
            return out

        async def flush(self):
            return 0

        async def close(self):
            self._open = False

    rng = random.Random(15)
    options = load(EscposConfig, {"transport": "tcp", "host": "x", "reply_timeout": 0.001,
                                  "model": "epson-tm", "identify": False, "wake": False})
    device = DeviceConfig(id="receipt-1", kind="escpos", options=options)

    async def main():
        fresh, looked_like_replies = [], 0
        for _ in range(400):
            chunks = [rng.randbytes(rng.randint(8, 24)) for _ in range(4)]
            looked_like_replies += all(any((b & 0x93) == 0x12 for b in c) for c in chunks)
            collector = EscposCollector(device, transport_factory=lambda o: ScriptedPrinter(chunks))
            await collector.open()
            reading = await collector.poll()
            assert validate(reading) == []
            if not reading.stale:
                fresh.append(reading.values)
        return fresh, looked_like_replies

    fresh, looked_like_replies = asyncio.run(main())
    assert looked_like_replies > 20  # the noise did hold bytes with the fixed bits, often
    assert fresh == []


# --- outbox drops are reported to the hub -----------------------------------------------------

def test_outbox_drops_are_reported_as_an_event_the_hub_decodes(tmp_path, monkeypatch):
    from edge_agent import outbox as ob_mod
    import edge_protocol as wire
    from edge_agent.outbox import Budget, Outbox
    from edge_agent.state import db as statedb

    db = statedb.connect(tmp_path / "agent.db")
    ob = Outbox(db, "store-1", "r1", Budget(max_bytes=10**9, max_age_s=60))
    for i in range(5):
        ob.enqueue("telemetry", {"readings": [], "n": i})
    ob.enqueue("alert", {"n": 99})
    created = ob.begin_batch()[0].created
    assert ob.enforce_budget(now=created + 120) == {"telemetry": 5}
    events = [r for r in ob.begin_batch() if r.kind == "event"]
    assert len(events) == 1
    env = wire.decode(events[0].payload, wire.topic("r1", "store-1", "event"))
    assert env.kind == "event" and env.body["event"] == "outbox_drops"
    size = env.body["drops"]["telemetry"]["bytes"]
    assert env.body["drops"] == {"telemetry": {"count": 5, "bytes": size}}
    assert env.body["total"] == env.body["drops"]
    assert env.seq == ob.last_seq == 7
    # More drops within a minute wait for the next report, which carries them and the total.
    ob.enqueue("telemetry", {"readings": [], "n": 6})
    assert ob.enforce_budget(now=created + 240) == {"telemetry": 1}
    assert len([r for r in ob.begin_batch() if r.kind == "event"]) == 1
    monkeypatch.setattr(ob_mod, "DROP_EVENT_EVERY_S", 0.0)
    assert ob.enforce_budget(now=created + 240) == {}
    events = [wire.decode(r.payload).body for r in ob.begin_batch() if r.kind == "event"]
    assert events[1]["drops"]["telemetry"]["count"] == 1
    assert events[1]["total"]["telemetry"]["count"] == 6
    assert ob.stats()["drops"]["telemetry"]["count"] == 6
    db.close()
