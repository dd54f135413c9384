"""Import discipline: a host-only agent polls without importing a protocol or ML library."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import agent_env
from agentproc import host_config

HEAVY = ("paho", "pysnmp", "escpos", "onnxruntime", "onnx", "serial", "sklearn", "cryptography")

# Runs in a fresh interpreter: the CLI's parser (every command module), every collector's
# package (what check-config and probe load), then an agent with host devices until it has
# committed readings. Prints the heavy top-level modules that were imported.
SCRIPT = """
import asyncio, json, sys
from edge_agent import collectors
from edge_agent.cli.main import build_parser
from edge_agent.config import load_config
from edge_agent.agent import Agent

build_parser()
for kind in collectors.names():
    collectors.get(kind)
config = load_config(sys.argv[1])

async def main():
    agent = Agent(config, sys.argv[1])
    runner = asyncio.create_task(agent.run())
    while agent.recorder is None or agent.recorder.committed_rows == 0:
        await asyncio.sleep(0.02)
    agent.request_stop()
    return await runner

code = asyncio.run(main())
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"exit": code, "heavy": heavy}))
"""


SCORING_OFF = "[scoring]\nenabled = false\n"


@pytest.mark.parametrize("scoring,allowed", [
    (SCORING_OFF, set()),
    # The register is a scored device: with scoring on, the scorer needs onnxruntime (loaded
    # off the event loop), and still nothing of the protocols or of training.
    ("", {"onnxruntime"}),
], ids=["scoring off: no heavy library", "scoring on: onnxruntime and nothing else"])
def test_an_agent_with_only_host_devices_polls_without_importing_paho_pysnmp_escpos_or_onnx(
        tmp_path, scoring, allowed):
    config = tmp_path / "agent.toml"
    config.write_text(host_config(tmp_path / "state", devices=3, interval=0.05, extra=scoring))
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(config), json.dumps(HEAVY)],
                            capture_output=True, text=True, timeout=60, env=agent_env())
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["exit"] == 0
    assert set(out["heavy"]) <= allowed, f"imported: {out['heavy']}"


def test_the_run_command_imports_no_heavy_library_at_start_up(tmp_path):
    # -X importtime lists every module the real `run` imported before SIGTERM stopped it.
    config = tmp_path / "agent.toml"
    config.write_text(host_config(tmp_path / "state", devices=2, interval=0.05,
                                  extra=SCORING_OFF))
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "edge_agent", "run",
                             "--config", str(config), "--log-format", "json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=agent_env())
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if '"agent started"' in line:
                proc.terminate()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    imported = {line.split("|")[-1].strip().split(".")[0] for line in lines
                if line.startswith("import time:")}
    assert "edge_agent" in imported and "psutil" in imported, "importtime output was read"
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
