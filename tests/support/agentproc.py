"""Run the real agent (`python -m edge_agent run`) in a subprocess, and read its state database."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

from testenv import agent_env
import wait
from wait import PATIENCE_S


def host_config(state_dir: Path, devices: int = 1, interval: float = 0.05,
                flush: float = 0.05, extra: str = "", device_extra: str = "") -> str:
    """Return TOML for `devices` host devices named h0, h1, ..."""
    parts = [f'[agent]\nstore = "kill-test"\nstate_dir = "{state_dir}"\n',
             f"[telemetry]\nflush_interval = {flush}\n", extra]
    for i in range(devices):
        parts.append(f'[[devices]]\nid = "h{i}"\nkind = "host"\ninterval = {interval}\n'
                     f"{device_extra}\n")
    return "\n".join(parts)


class AgentProcess:
    """One `edge-agent run` process with its stderr (JSON log lines) in a file.

    Readiness comes from the agent's own signal, not its log: the process runs with
    NOTIFY_SOCKET naming a datagram socket of this object's (an abstract one), and the agent
    sends systemd's READY=1 there once its database, recorder and services are up
    (edge_agent/service/notify.py).
    """

    def __init__(self, config: Path, log: Path):
        self.config = Path(config)
        self.log_path = Path(log)
        self._log = open(self.log_path, "ab")
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        name = f"edge-agent-test-{os.getpid()}-{id(self)}"
        self._notify.bind("\0" + name)
        self._notify.setblocking(False)
        self.notes: list[str] = []  # every notify-protocol field received, in order
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(config),
             "--log-format", "json"],
            stdout=subprocess.DEVNULL, stderr=self._log, env=agent_env(NOTIFY_SOCKET="@" + name))
        self.pid = self.proc.pid

    def _read_notes(self) -> list[str]:
        while True:
            try:
                data = self._notify.recv(4096)
            except (BlockingIOError, OSError):
                return self.notes
            self.notes.extend(data.decode(errors="replace").splitlines())

    def wait_ready(self, timeout: float = PATIENCE_S) -> None:
        """Wait for the agent's READY=1 (its database open, polling and services started)."""
        wait.wait_until(lambda: "READY=1" in self._read_notes(), timeout, "the agent's READY=1",
                   gone=self._gone, detail=lambda: self.log_path.read_text()[-3000:])

    def _gone(self) -> str | None:
        code = self.proc.poll()
        return None if code is None else f"the agent exited with code {code}"

    def lines(self) -> list[dict]:
        """Every JSON log line written so far."""
        out = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"msg": raw, "level": "raw"})
        return out

    def wait_for_log(self, msg: str, count: int = 1, timeout: float = PATIENCE_S) -> list[dict]:
        """Wait until `count` JSON log lines with exactly this message were written; return
        them. For events whose log line is what the test checks (a reload's added/removed
        devices); readiness is wait_ready()."""
        def found():
            lines = [line for line in self.lines() if line.get("msg") == msg]
            return lines if len(lines) >= count else None

        return wait.wait_until(found, timeout, f"{count} {msg!r} log line(s)", gone=self._gone,
                          detail=lambda: self.log_path.read_text()[-3000:])

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = PATIENCE_S) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the agent and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=PATIENCE_S)
        self._close()

    def _close(self) -> None:
        self._log.close()
        self._notify.close()

    def stop(self) -> int:
        """SIGTERM the agent (SIGKILL if it does not stop) and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=PATIENCE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        finally:
            self._close()


def read_only(db_path: Path) -> sqlite3.Connection:
    """Open the state database read-only, as `status` does."""
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10.0)


def outbox_rows(db_path: Path) -> dict[int, tuple[str, bytes]]:
    """Map seq -> (id, payload) of every outbox row, read-only; empty before the schema exists."""
    if not Path(db_path).exists():
        return {}
    db = read_only(db_path)
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] < 1:
            return {}
        return {seq: (env_id, bytes(payload)) for seq, env_id, payload in
                db.execute("SELECT seq, id, payload FROM outbox")}
    finally:
        db.close()


def wait_until(predicate, what: str, timeout: float = PATIENCE_S):
    """Kept for tests written before tests/support/wait.py, in their argument order
    (predicate, what, timeout); new tests import wait_until from wait, whose order is
    (predicate, timeout, what). Remove once no test imports it from here."""
    return wait.wait_until(predicate, timeout, what)
