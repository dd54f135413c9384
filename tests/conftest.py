"""Shared fixtures: the repo root, running the CLI as a subprocess, free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Long scenarios that run in a background thread alongside the suite (tests/longrun.py).
pytest_plugins = ("longrun",)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """Return a port free on 127.0.0.1 now (TCP by default, UDP with SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agent_env(**extra: str) -> dict[str, str]:
    """Environment for running this checkout's agent in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 60, cwd: str | Path | None = None,
            module: str = "edge_agent") -> subprocess.CompletedProcess:
    """Run `python -m edge_agent ARGS` (or another module) and capture its output."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, env=agent_env(), cwd=cwd)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def mosquitto(tmp_path):
    """A fresh Mosquitto broker on a free loopback port, stopped after the test."""
    from brokers import Mosquitto

    broker = Mosquitto(tmp_path / "broker").start()
    yield broker
    broker.kill()


@pytest.fixture(params=["sqlite", "postgresql"])
def hub_db(request, tmp_path):
    """A fresh, empty fleet database URL: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield str(tmp_path / "hub.db")
        return
    from hubkit import create_pg_database, drop_pg_database, pg_reachable

    if not pg_reachable():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (trust auth, user postgres)")
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture(autouse=True)
def _no_hub_left_behind():
    """Kill any hub process a test started and did not stop (a failed assertion, say)."""
    yield
    hubkit = sys.modules.get("hubkit")
    if hubkit is not None:
        while hubkit.RUNNING:
            hubkit.RUNNING.pop().kill()
