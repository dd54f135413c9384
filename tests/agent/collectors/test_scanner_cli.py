"""`edge-agent probe scanner+serial://...` and `simulate scanner` against the pty simulator."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import pytest

from conftest import agent_env, run_cli
from edge_agent.simulators import scanner as sim_module
from edge_agent.simulators.scanner import ScannerSimulator


def probe_against(vendor: str, answering: bool = True, query: str = "") -> tuple[int, dict, str]:
    """Run the probe CLI in a subprocess while the simulator answers in this process's loop."""
    async def main():
        sim = ScannerSimulator(vendor, answering=answering)
        path = await sim.start()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edge_agent", "probe", "--json",
                f"scanner+serial://{path}?baudrate=9600&heartbeat={vendor}{query}",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=agent_env())
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            await sim.stop()
        return proc.returncode, json.loads(out or b"{}"), err.decode()
    return asyncio.run(main())


@pytest.mark.parametrize("vendor", ["honeywell", "zebra"])
def test_probe_reports_a_scanner_that_answers_its_heartbeat(vendor):
    code, reading, err = probe_against(vendor)
    assert code == 0, err
    assert reading["values"]["scanner.connected"] is True
    assert reading["values"]["scanner.heartbeat"] == "ok"
    assert reading["values"]["device.status"] == "ok"


def test_probe_flags_a_scanner_that_ignores_its_heartbeat():
    code, reading, err = probe_against("honeywell", answering=False,
                                       query="&heartbeat_timeout=0.5")
    assert reading["values"]["scanner.heartbeat"] == "missing"
    assert reading["values"]["device.status"] == "error"


def test_probe_of_a_missing_port_is_stale_and_exits_1(tmp_path):
    done = run_cli("probe", f"scanner+serial://{tmp_path}/ttyGONE")
    assert done.returncode == 1
    assert "STALE" in done.stdout and "ttyGONE" in done.stdout


@pytest.mark.parametrize("url,message", [
    ("scanner+serial://", "url.port: required"),
    ("scanner+serial://dev/ttyS0", "three slashes"),
    ("scanner+serial:///dev/ttyS0?baudrate=fast", "url.baudrate: expected int"),
    ("scanner+serial:///dev/ttyS0?heartbeat=datalogic", "url.heartbeat: must be one of"),
    ("scanner+serial:///dev/ttyS0?heartbeat_interval=nan", "url.heartbeat_interval"),
], ids=["no port", "a host instead of a path", "a baud rate that is not a number",
        "an unknown heartbeat vendor", "a NaN interval"])
def test_probe_rejects_a_bad_scanner_url_without_a_traceback(url, message):
    done = run_cli("probe", url)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_simulate_scanner_subcommand_sends_scans_and_malformed_frames_a_collector_counts(
        tmp_path):
    from edge_agent import collectors
    from edge_agent.collectors.scanner.collector import ScannerCollector

    parser = argparse.ArgumentParser()
    sim_module.register(parser.add_subparsers())
    link = tmp_path / "scanner"
    args = parser.parse_args(["scanner", "--link", str(link), "--every", "0.05", "--count", "6",
                              "--malformed-every", "2"])

    async def main():
        served = asyncio.create_task(sim_module._serve(args))
        while not link.exists():
            assert not served.done()
            await asyncio.sleep(0.01)
        collector = ScannerCollector(collectors.device_from_url(f"scanner+serial://{link}"))
        await collector.open()
        assert await served == 0
        for _ in range(1000):  # The simulator's exit unplugs it; wait (capped) to see that.
            if collector.transport is None:
                break
            await asyncio.sleep(0.01)
        await collector.close()
        return collector

    collector = asyncio.run(main())
    assert collector.reads >= 2 and collector.decode_errors >= 2
    assert collector.lost_reason  # The simulator's exit unplugged it.
    assert not link.exists()


def test_the_running_agent_records_a_simulated_scanners_counts(tmp_path):
    import signal

    link = tmp_path / "scanner"
    config = tmp_path / "agent.toml"
    config.write_text(f"""
[agent]
store = "s1"
state_dir = "{tmp_path / 'state'}"
[[devices]]
id = "scanner-1"
kind = "scanner"
interval = 0.2
[devices.scanner]
port = "{link}"
heartbeat = "zebra"
heartbeat_interval = 0.2
""")

    async def status() -> dict:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent", "status", "--config", str(config), "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=agent_env())
        out, _ = await proc.communicate()
        devices = json.loads(out or b"{}").get("devices") or [{}]
        return devices[0].get("values") or {}

    async def main():
        sim = ScannerSimulator("zebra", link=link)
        await sim.start()
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent", "run", "--config", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=agent_env())
        try:
            values: dict = {}
            for _ in range(200):  # A cap, not a timing assertion.
                if sim.heartbeats_seen:
                    sim.scan()
                    sim.malformed()
                values = await status()
                if values.get("scanner.reads", 0) >= 2 and values.get("scanner.heartbeat") == "ok":
                    break
                await asyncio.sleep(0.1)
            return values
        finally:
            agent.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(agent.communicate(), 30)
            assert agent.returncode == 0, err.decode()
            await sim.stop()

    values = asyncio.run(main())
    assert values["scanner.reads"] >= 2
    assert values["scanner.decode_errors"] >= 1
    assert values["scanner.heartbeat"] == "ok"
    assert values["device.status"] == "ok"
