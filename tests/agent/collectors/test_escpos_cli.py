"""`edge-agent simulate printer` and `edge-agent probe escpos+...://` run as a user would."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import agent_env, run_cli
from edge_agent.config import device_from_url
from edge_agent.errors import ConfigError


class Simulator:
    """`edge-agent simulate printer ARGS` in a subprocess, controlled through its stdin."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_agent", "simulate", "printer",
                                      *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=agent_env())
        self.banner = self.proc.stdout.readline()
        assert "printer simulator on" in self.banner, self.proc.stderr.read()
        self.url = self.banner.split("(", 1)[1].split(")", 1)[0]

    def tell(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def simulator():
    started = []

    def start(*args):
        sim = Simulator(*args)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        if sim.proc.poll() is None:
            sim.stop()


def probe(url: str):
    result = run_cli("probe", url, "--json", "--timeout", "5")
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout)


def test_probe_reads_a_tcp_printer_simulated_by_the_cli(simulator):
    sim = simulator("--tcp", "0", "--set", "paper near_end")
    assert sim.url.startswith("escpos+tcp://127.0.0.1:")
    code, reading = probe(sim.url)
    assert code == 0 and not reading["stale"]
    assert reading["values"]["printer.paper"] == "near_end"
    assert reading["values"]["device.model"] == "TM-T88V"
    assert sim.tell("cover open").startswith("ok")
    code, reading = probe(sim.url)
    assert reading["values"]["printer.cover"] == "open"
    assert reading["values"]["device.status"] == "error"
    assert sim.stop() == 0


def test_probe_reads_a_serial_printer_on_the_simulators_pty(simulator):
    sim = simulator("--pty", "--model", "TM-T20III")
    assert sim.url.startswith("escpos+serial:///dev/")
    code, reading = probe(sim.url + "?baudrate=19200&reply_timeout=5")
    assert code == 0, reading
    assert reading["values"]["device.model"] == "TM-T20III"
    assert reading["values"]["device.status"] == "ok"


def test_probe_of_a_hung_printer_exits_1_with_an_offline_stale_reading(simulator):
    sim = simulator("--tcp", "0", "--set", "hang")
    code, reading = probe(sim.url + "?reply_timeout=0.2")
    assert code == 1 and reading["stale"]
    assert reading["values"]["device.status"] == "offline"
    assert "no reply to DLE EOT 1" in reading["reason"]


def test_probe_of_a_usb_printer_without_a_bus_says_why():
    code, reading = probe("escpos+usb://04b8:0e28")
    assert code == 1 and reading["stale"]
    assert "usb" in reading["reason"].lower()


BAD_URLS = [
    ("a USB address without a colon", "escpos+usb://04b8", "VID:PID"),
    ("a USB id that is not hex", "escpos+usb://zzzz:0e28", "4 hex digits"),
    ("a TCP port that is not a number", "escpos+tcp://printer:abc", "HOST:PORT"),
    ("a TCP URL without a host", "escpos+tcp://", "url.host: required"),
    ("an unknown parameter", "escpos+tcp://printer:9100?speed=1", "url.speed: unknown"),
    ("an unknown model", "escpos+tcp://printer:9100?model=brother", "unknown model"),
    ("a baud rate that is not a number", "escpos+serial:///dev/ttyS0?baudrate=fast",
     "url.baudrate"),
]


@pytest.mark.parametrize("url, message", [b[1:] for b in BAD_URLS], ids=[b[0] for b in BAD_URLS])
def test_a_bad_escpos_url_is_a_users_mistake_with_a_clear_message(url, message):
    result = run_cli("probe", url)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (("--tcp", "70000"), "--tcp"),
    (("--tcp", "0", "--set", "explode"), "unknown command"),
], ids=["a port out of range", "an unknown start command"])
def test_simulate_rejects_bad_arguments_plainly(args, message):
    result = run_cli("simulate", "printer", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_check_config_names_the_key_a_tcp_printer_lacks(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nstore = "s1"\n\n[[devices]]\nid = "r1"\nkind = "escpos"\n\n'
                    '[devices.escpos]\ntransport = "tcp"\n')
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert "devices[0].escpos.host: required when transport = 'tcp'" in result.stderr


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(("escpos+tcp", "escpos+serial", "escpos+usb")), st.text(max_size=40))
def test_any_escpos_url_gives_a_device_or_a_config_error_never_a_crash(scheme, rest):
    try:
        device = device_from_url(f"{scheme}://{rest}")
    except ConfigError as err:
        assert err.problems
    else:
        assert device.kind == "escpos" and device.options.transport == scheme.split("+")[1]
