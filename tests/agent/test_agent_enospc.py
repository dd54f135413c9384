"""A real full disk under the agent (issue 15): its state_dir on a small tmpfs that the test
fills until the kernel answers ENOSPC, not SQLite's page limit standing in for one.

What the agent must do (docs/reliability.md): keep polling and stay alive; say so in one log
line (then at most one a minute, with the count of failures in between) and in its STATUS,
never a traceback per flush or per batch of acknowledgements; lose nothing it had committed;
once space is freed, commit again and send everything, each row once at the hub.

Before the fix the real path differed from the simulated one in the sync client: while a
backlog drained on a full disk, every batch of acknowledgements failed to delete its rows and
logged a full traceback, and the acknowledged rows were forgotten until a reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from agentproc import AgentProcess, host_config, outbox_rows
from hubkit import HubProcess
from smallfs import small_tmpfs  # noqa: F401  (the fixture)
from wait import PATIENCE_S, wait_until


def _sync(broker) -> str:
    return ("[sync]\nenabled = true\n"
            f'host = "{broker.host}"\nport = {broker.port}\ntls = false\n'
            "reconnect_min = 0.05\nreconnect_max = 0.5\nconnect_timeout = 5.0\n")


def _at_hub(db: str) -> list[tuple[str, int]]:
    """(id, seq) of every outbox row (not birth or death) of store kill-test at the hub."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT id, seq FROM messages WHERE store = 'kill-test'"
                            " AND kind NOT IN ('birth', 'death')").fetchall()
    except sqlite3.OperationalError:
        return []  # the hub has not created its tables yet
    finally:
        conn.close()


def test_a_real_full_disk_one_line_no_loss_and_the_agent_resumes(small_tmpfs, mosquitto,
                                                                  tmp_path):
    state = small_tmpfs.path / "state"
    config = tmp_path / "agent.toml"
    config.write_text(host_config(
        state, devices=5, interval=0.05, flush=0.05,
        extra="batch_max = 5\n\n[scoring]\nenabled = false\n\n" + _sync(mosquitto),
        device_extra="jitter = 0.0"))
    db = state / "agent.db"
    hub_db = str(tmp_path / "hub.db")  # the hub's disk is not the one that fills
    hub = HubProcess(mosquitto, hub_db, "hub-enospc", log_path=tmp_path / "hub.log").start()
    hub.wait_connected()
    agent = AgentProcess(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: len(_at_hub(hub_db)) >= 10, what="rows at the hub")
        # The hub goes away: the agent keeps what it commits, a backlog to drain later.
        hub.terminate()
        wait_until(lambda: len(outbox_rows(db)) >= 30, what="a backlog in the outbox")
        small_tmpfs.fill()
        # The hub back while the disk is full: the backlog drains, and each batch of
        # acknowledgements fails to delete its rows (the WAL cannot grow).
        hub = HubProcess(mosquitto, hub_db, "hub-enospc", log_path=tmp_path / "hub.log").start()
        hub.wait_connected()
        wait_until(lambda: any("cannot commit: disk full" in n for n in agent._read_notes()),
                   what="STATUS saying the disk is full", gone=agent._gone)
        full = outbox_rows(db)  # everything committed before the disk filled, kept
        wait_until(lambda: {s for _, s in _at_hub(hub_db)} >= set(full),
                   what="the backlog delivered from a full disk", gone=agent._gone)
        assert agent.proc.poll() is None, "the agent exited on a full disk"
        # Still polling: the host devices' readings keep arriving (counted in STATUS).
        small_tmpfs.free()
        agent.wait_for_log("commits succeed again")
        wait_until(lambda: max((s for _, s in _at_hub(hub_db)), default=0) > max(full),
                   what="rows committed after the disk freed at the hub", gone=agent._gone)
        agent.wait_for_log("sync deletes acknowledged rows again")
    finally:
        code = agent.stop()
        hub.terminate()
    assert code == 0
    lines = agent.lines()
    assert not [line for line in lines if "exc" in line], "a traceback was logged"
    errors = [line for line in lines if line.get("level") in ("error", "critical")]
    resumed = next(line for line in lines if line.get("msg") == "commits succeed again")
    minutes = int(resumed["failed_for_s"] // 60)
    commit_lines = [e for e in errors if e["msg"] == "commit failed; retrying at each flush"]
    ack_lines = [e for e in errors
                 if e["msg"] == "sync could not delete acknowledged rows; will retry"]
    # One line for many failures (a flush every 50 ms), then at most one a minute.
    assert 1 <= len(commit_lines) <= 1 + minutes, commit_lines
    assert commit_lines[0]["cause"].startswith("disk full")
    assert resumed["failures"] > len(commit_lines)
    assert len(ack_lines) <= 1 + minutes, ack_lines
    assert {e["msg"] for e in errors} <= {line["msg"] for line in commit_lines + ack_lines}
    # Nothing committed was lost or changed, and every row reached the hub once with its id.
    left = outbox_rows(db)
    at_hub = _at_hub(hub_db)
    seqs = [s for _, s in at_hub]
    assert len(seqs) == len(set(seqs)), "a row stored twice at the hub"
    last = max(seqs + list(left))
    assert set(seqs) | set(left) == set(range(1, last + 1))
    ids = dict((s, i) for i, s in at_hub)
    for seq, (env_id, _payload) in full.items():
        assert ids.get(seq, left.get(seq, (env_id,))[0]) == env_id


def test_the_full_disk_line_comes_once_a_minute_on_the_recorders_clock(small_tmpfs, caplog):
    """The pacing, on the same real full disk, with the recorder's clock moved by the test
    (a minute is not waited for): one line, none more within the minute however many flushes
    fail, the next one after it with the count of failures it did not log."""
    from edge_agent.agent import Agent
    from edge_agent.config import parse_text

    config = parse_text(host_config(small_tmpfs.path / "state", devices=3, interval=0.02,
                                    flush=0.02))
    now = [1000.0]

    async def main():
        agent = Agent(config)
        agent.services = []
        await agent.start()
        agent.recorder.clock = lambda: now[0]
        try:
            await agent.recorder.flush()
            with caplog.at_level(logging.INFO, logger="edge_agent"):
                small_tmpfs.fill()
                await _until(lambda: agent.recorder.failed_commits >= 5)
                now[0] += 59.0
                failed = agent.recorder.failed_commits
                await _until(lambda: agent.recorder.failed_commits >= failed + 5)
                first_minute = _errors(caplog)
                now[0] += 2.0  # past the minute
                failed = agent.recorder.failed_commits
                await _until(lambda: agent.recorder.failed_commits > failed)
                second = _errors(caplog)
                small_tmpfs.free()
                await _until(lambda: agent.recorder.commit_error is None)
            return first_minute, second, agent.recorder.committed_rows
        finally:
            await agent.stop()

    first_minute, second, committed = asyncio.run(main())
    assert len(first_minute) == 1, [r.getMessage() for r in first_minute]
    assert first_minute[0].exc_info is None and first_minute[0].cause.startswith("disk full")
    assert len(second) == 2
    assert second[1].failures_not_logged >= 9
    assert any(r.getMessage() == "commits succeed again" for r in caplog.records)
    assert committed > 0


def _errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


async def _until(predicate, timeout: float = PATIENCE_S) -> None:
    from wait import until

    await until(predicate, timeout, "the recorder's state", interval=0.01)
