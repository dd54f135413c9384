"""The agent speaks systemd's notify protocol: READY, paced WATCHDOG pings, STATUS, STOPPING.

A real unix datagram socket stands in for systemd's: the test binds it, points NOTIFY_SOCKET at
it and reads what the agent (a real subprocess) sends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from conftest import agent_env
from edge_agent.config import parse_text
from edge_agent.service import notify

CONFIG = """
[agent]
store = "store-0042"
region = "eu-west"
state_dir = "{state}"

[[devices]]
id = "register"
kind = "host"
interval = 0.5

[devices.host]
temperature = false
"""


class Listener:
    """systemd's side of NOTIFY_SOCKET: a bound datagram socket we read messages from."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.messages: list[str] = []

    def next(self, timeout: float) -> str | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096).decode()
        except socket.timeout:
            return None
        self.messages.append(data)
        return data

    def wait_for(self, field: str, timeout: float = 120.0) -> str:
        """Read until a message carries `field` (a line such as READY=1, or a prefix STATUS=)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.next(max(0.05, deadline - time.monotonic()))
            if msg and any(line == field or (field.endswith("=") and line.startswith(field))
                           for line in msg.splitlines()):
                return msg
        raise AssertionError(f"no {field} within {timeout} s; got {self.messages}")

    def close(self):
        self.sock.close()


@pytest.fixture
def agent_under_systemd(tmp_path):
    """Start `edge-agent run` as systemd would, with NOTIFY_SOCKET and WATCHDOG_USEC set."""
    procs = []

    def start(address, **env):
        config = tmp_path / "agent.toml"
        config.write_text(CONFIG.format(state=tmp_path / "state"))
        environ = agent_env(NOTIFY_SOCKET=address, WATCHDOG_USEC="400000", **env)
        environ.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config",
                                 str(config)], env=environ, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stderr.close()


@pytest.mark.parametrize("kind", ["a socket file", "an abstract socket named with @"])
def test_agent_reports_ready_pings_the_watchdog_reports_status_and_says_stopping_on_sigterm(
        tmp_path, agent_under_systemd, kind):
    if kind == "a socket file":
        bind_to = env_value = str(tmp_path / "notify.sock")
    else:
        name = f"edge-agent-test-{os.getpid()}-{time.monotonic_ns()}"
        bind_to, env_value = "\0" + name, "@" + name
    listener = Listener(bind_to)
    try:
        proc = agent_under_systemd(env_value)
        ready = listener.wait_for("READY=1")
        assert f"MAINPID={proc.pid}" in ready.splitlines()
        for _ in range(3):  # Paced at half of WATCHDOG_USEC, again and again.
            listener.wait_for("WATCHDOG=1")
        status = listener.wait_for("STATUS=")
        assert "1 devices" in status and "outbox" in status
        proc.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING=1")
        assert proc.wait(15) == 0
    finally:
        listener.close()


def test_watchdog_pings_stop_when_the_event_loop_hangs(tmp_path, agent_under_systemd):
    listener = Listener(str(tmp_path / "notify.sock"))
    try:
        proc = agent_under_systemd(str(tmp_path / "notify.sock"),
                                   **{notify.DEBUG_HANG_ENV: "120"})
        listener.wait_for("READY=1")
        listener.wait_for("WATCHDOG=1")
        listener.wait_for("WATCHDOG=1")
        proc.send_signal(signal.SIGUSR2)  # Test-only switch: block the loop for 120 s.
        # The switch says so on the socket just before it blocks the loop; from there on,
        # silence (several watchdog periods of it), which systemd would answer with a restart.
        listener.wait_for(notify.HANG_STATUS)
        after = []
        while (msg := listener.next(2.0)) is not None:
            after.append(msg)
            assert len(after) <= 2, f"the hung agent kept talking: {after}"
        assert after == [], f"the hung agent kept talking: {after}"
        assert proc.poll() is None, "the agent should hang, not exit"
    finally:
        listener.close()


# In-process checks of the progress rule, on an agent-shaped object.

def fake_agent(last_progress: float, devices: str = CONFIG):
    config = parse_text(devices.format(state="/nonexistent"), "test")
    return SimpleNamespace(config=config, recorder=object(), db=object(),
                           last_progress=last_progress)


@pytest.mark.parametrize("case, last_reading_ago, db_silent_for, expect", [
    ("an agent with recent readings and a live database thread is healthy", 1, 1, None),
    ("an agent whose devices have delivered nothing for long is stuck", 10_000, 1, "no reading"),
    ("an agent whose database thread stopped answering is stuck", 1, 120, "database thread"),
])
def test_progress_rule(case, last_reading_ago, db_silent_for, expect):
    now = 50_000.0
    agent = fake_agent(now - last_reading_ago)
    why = notify.healthy(agent, notify.Progress(db_ok_at=now - db_silent_for), now, 30.0)
    if expect is None:
        assert why is None, case
    else:
        assert why and expect in why, case


def test_an_agent_without_devices_is_judged_by_the_loop_and_database_alone():
    agent = fake_agent(0.0, CONFIG.split("[[devices]]")[0])
    assert notify.readings_stall_s(agent) is None
    assert notify.healthy(agent, notify.Progress(db_ok_at=99_999.0), 100_000.0, 30.0) is None


@pytest.mark.parametrize("environ, expect", [
    ({}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "nonsense"}, None),
    ({"WATCHDOG_USEC": "3000000"}, 3.0),
    ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}, None),
    ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}, 3.0),
])
def test_watchdog_interval_is_read_only_when_meant_for_this_process(environ, expect):
    assert notify.Notifier(environ).watchdog_s == expect


def test_notifier_does_nothing_outside_systemd_and_rejects_unknown_socket_kinds():
    assert not notify.Notifier({}).send("READY=1")
    assert not notify.Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


def test_a_notify_socket_path_with_a_nul_byte_is_refused_without_raising(tmp_path):
    assert notify.Notifier({"NOTIFY_SOCKET": f"{tmp_path}/a\0b"}).send("READY=1") is False


def test_a_vanished_notify_socket_is_logged_once_and_does_not_raise(tmp_path, caplog):
    n = notify.Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.send("WATCHDOG=1") is False
    assert n.send("WATCHDOG=1") is False
    n.close()
    assert sum("cannot notify" in r.message for r in caplog.records) == 1


def test_keep_notified_serves_any_process_such_as_the_hub(tmp_path):
    """edge-hub serve uses keep_notified with its own check; a problem withholds the pings."""
    import asyncio

    listener = Listener(str(tmp_path / "hub.sock"))
    notifier = notify.Notifier({"NOTIFY_SOCKET": str(tmp_path / "hub.sock"),
                                "WATCHDOG_USEC": "100000"})
    state = {"problem": None}

    async def scenario():
        task = asyncio.ensure_future(notify.keep_notified(lambda: state["problem"],
                                                          lambda: "3 stores online",
                                                          notifier, name="hub"))
        await asyncio.get_running_loop().run_in_executor(None, listener.wait_for, "WATCHDOG=1")
        state["problem"] = "broker connection lost"
        stuck = await asyncio.get_running_loop().run_in_executor(
            None, listener.wait_for, "STATUS=stuck: broker connection lost")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return stuck

    try:
        stuck = asyncio.run(scenario())
        assert "WATCHDOG=1" not in stuck.splitlines()
        assert any("STATUS=3 stores online" in m or "STATUS=started; 3 stores online" in m
                   for m in listener.messages)
        listener.wait_for("STOPPING=1")
        # Between "stuck" and STOPPING, no ping was sent.
        after = listener.messages[listener.messages.index(stuck):]
        assert not any("WATCHDOG=1" in m.splitlines() for m in after)
    finally:
        listener.close()
