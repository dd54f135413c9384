"""Where the checkout is and how to run its code in a subprocess (shared by conftest.py, the
support modules and bench/)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
