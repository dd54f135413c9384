"""Run the real agent (`python -m edge_agent run`) in a subprocess, and read its state database."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from testenv import agent_env

# Upper bound of every wait: long enough for a loaded 2-core machine, short enough that a bug
# fails the test instead of hanging it. Never asserted as a speed.
PATIENCE_S = 30.0


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
    """One `edge-agent run` process with its stderr (JSON log lines) in a file."""

    def __init__(self, config: Path, log: Path):
        self.config = Path(config)
        self.log_path = Path(log)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(config),
             "--log-format", "json"],
            stdout=subprocess.DEVNULL, stderr=self._log, env=agent_env())
        self.pid = self.proc.pid

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
        """Wait until `count` log lines with message `msg` were written; return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.lines() if line.get("msg") == msg]
            if len(found) >= count:
                return found
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {msg!r} log line; agent exit code {self.proc.poll()}; "
                                     f"log:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.02)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = PATIENCE_S) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the agent and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=PATIENCE_S)
        self._log.close()

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
            self._log.close()


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


def wait_until(predicate, what: str, timeout: float = PATIENCE_S) -> None:
    """Wait until predicate() holds; raise AssertionError naming `what` if it never does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)
