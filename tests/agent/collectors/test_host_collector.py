"""The host collector against this machine: CPU, memory, disks, uptime, TCP targets, processes."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import namedtuple
from datetime import datetime

import psutil
import pytest

from conftest import free_port, run_cli
from edge_agent import blocking, collectors
from edge_agent.collectors.host.collector import CpuMeter, HostCollector, hottest, name_key
from edge_agent.reading import validate

OWN_NAME = psutil.Process().name()


def poll(url: str, polls: int = 1):
    """Open a host collector built from a probe URL and poll it; return the readings."""
    device = collectors.device_from_url(url, id="register")

    async def main():
        collector = collectors.get("host").create(device)
        await collector.open()
        try:
            return [await collector.poll() for _ in range(polls)]
        finally:
            await collector.close()

    try:
        return asyncio.run(main())
    finally:
        blocking.shutdown()


@pytest.fixture
def listener():
    """A real TCP listener on a free loopback port."""
    server = socket.create_server(("127.0.0.1", 0))
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_a_poll_reports_cpu_memory_swap_disk_uptime_and_boot_time_in_the_vocabulary():
    [reading] = poll("host://")
    v = reading.values
    assert not reading.stale and validate(reading) == []
    for name in ("host.cpu_pct", "host.mem_pct", "host.swap_pct", "host.disk_pct"):
        assert 0.0 <= v[name] <= 100.0, name
    assert v["host.disk_pct"] == v["host.disk.0.pct"] == pytest.approx(
        psutil.disk_usage("/").percent, abs=1.0)
    assert v["host.mem_pct"] == pytest.approx(psutil.virtual_memory().percent, abs=10.0)
    boot = datetime.fromisoformat(v["host.boot_time"].replace("Z", "+00:00"))
    assert boot.timestamp() == pytest.approx(psutil.boot_time(), abs=1.0)
    assert v["host.uptime_s"] == pytest.approx(time.time() - psutil.boot_time(), abs=5.0)
    assert v["device.status"] == "ok" and v["poll.latency_ms"] >= 0


def test_the_first_poll_reports_real_cpu_use_not_the_zero_of_an_unprimed_counter():
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    # Keep one core busy, so the machine's CPU use is well above zero while we measure.
    busy = threading.Thread(target=spin, daemon=True)
    busy.start()
    try:
        [reading] = poll("host://")
    finally:
        stop.set()
        busy.join()
    assert reading.values["host.cpu_pct"] > 0.0


FakeTimes = namedtuple("FakeTimes", "user nice system idle iowait guest guest_nice")


class FakeClock:
    """cpu_times() and monotonic() a test moves by hand: the meter's arithmetic, exactly."""

    def __init__(self):
        self.now = 100.0
        self.busy = 10.0
        self.idle = 50.0
        self.slept = []

    def times(self):
        return FakeTimes(self.busy, 0.0, 0.0, self.idle, 0.0, 0.0, 0.0)

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(round(seconds, 3))
        self.now += seconds
        self.busy += seconds * 0.5  # Half the CPU busy while it waits.
        self.idle += seconds * 0.5


def test_the_cpu_meter_waits_out_a_short_window_on_its_first_sample_only():
    fake = FakeClock()
    meter = CpuMeter(fake.times, fake.clock, fake.sleep)
    meter.prime()
    fake.now += 0.02
    assert meter.sample() == 50.0 and fake.slept == [0.08]
    fake.now += 1.0
    fake.busy += 0.25
    fake.idle += 0.75
    assert meter.sample() == 25.0 and fake.slept == [0.08]
    fake.now += 0.01  # Too short a window: the last real figure stands.
    assert meter.sample() == 25.0 and fake.slept == [0.08]


def test_two_host_collectors_keep_their_own_cpu_baselines():
    fake = FakeClock()
    a = CpuMeter(fake.times, fake.clock, fake.sleep)
    b = CpuMeter(fake.times, fake.clock, fake.sleep)
    a.prime()
    b.prime()
    fake.now += 1.0
    fake.busy += 1.0  # 100 % busy for a second
    assert a.sample() == 100.0
    fake.now += 1.0
    fake.idle += 1.0  # then idle for a second
    assert a.sample() == 0.0
    assert b.sample() == 50.0, "b measured both seconds, whatever a did"


Temp = namedtuple("Temp", "label current high critical")
HOTTEST = {
    "the hottest sensor wins": ({"coretemp": [Temp("a", 41.0, 0, 0), Temp("b", 67.5, 0, 0)],
                                 "acpitz": [Temp("", 55.0, 0, 0)]}, 67.5),
    "implausible readings are ignored": ({"x": [Temp("", 250.0, 0, 0), Temp("", -100.0, 0, 0),
                                                Temp("", 30.0, 0, 0)]}, 30.0),
    "a sensor without a value is ignored": ({"x": [Temp("", None, 0, 0)]}, None),
    "no sensors means no temperature": ({}, None),
}


@pytest.mark.parametrize("sensors,expected", HOTTEST.values(), ids=HOTTEST.keys())
def test_the_temperature_is_the_hottest_plausible_sensor(sensors, expected):
    # Sensor tables as psutil returns them; this machine (a VM) has none to read.
    assert hottest(sensors) == expected


def test_temperature_is_reported_exactly_when_the_machine_has_sensors():
    [reading] = poll("host://")
    sensors = getattr(psutil, "sensors_temperatures", lambda: {})()
    assert ("host.temp_c" in reading.values) == (hottest(sensors) is not None)
    [off] = poll("host://?temperature=false")
    assert "host.temp_c" not in off.values


def test_tcp_latency_is_measured_to_a_listener_and_null_for_a_closed_port(listener):
    closed = f"127.0.0.1:{free_port()}"
    [reading] = poll(f"host://?targets={listener},{closed}")
    v = reading.values
    assert isinstance(v["host.net.0.latency_ms"], float) and v["host.net.0.latency_ms"] >= 0
    assert v["host.net.1.latency_ms"] is None
    assert v["host.net.latency_ms"] == v["host.net.0.latency_ms"]
    assert v["device.status"] == "warning", "an unreachable target is a warning"
    assert validate(reading) == []


def test_all_targets_unreachable_gives_a_null_worst_latency():
    [reading] = poll(f"host://?targets=127.0.0.1:{free_port()}")
    assert reading.values["host.net.latency_ms"] is None and not reading.stale


def test_a_host_name_the_resolver_refuses_is_an_unreachable_target_not_a_crash():
    [reading] = poll("host://?targets=" + "a" * 70 + ".invalid:443")
    assert reading.values["host.net.0.latency_ms"] is None


def test_configured_processes_are_reported_running_or_not():
    [reading] = poll(f"host://?processes={OWN_NAME},no-such-process-here")
    v = reading.values
    assert v[f"host.proc.{name_key(OWN_NAME)}.running"] is True
    assert v["host.proc.no-such-process-here.running"] is False
    assert v["device.status"] == "warning"


def test_process_names_become_vocabulary_indexes():
    assert name_key("pos.exe") == "pos_exe"
    assert name_key("POS App") == "POS_App"
    assert name_key("") == "_"


def test_a_missing_mount_is_left_out_not_a_failure():
    [reading] = poll("host://?disks=/,/no/such/mount")
    assert "host.disk.0.pct" in reading.values and "host.disk.1.pct" not in reading.values
    assert not reading.stale


def test_probe_prints_the_host_reading_as_json(listener):
    result = run_cli("probe", f"host://?targets={listener}&processes={OWN_NAME}", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["kind"] == "host" and doc["stale"] is False
    assert doc["values"]["host.net.0.latency_ms"] is not None
    assert doc["values"][f"host.proc.{name_key(OWN_NAME)}.running"] is True


PROBE_MISTAKES = {
    "an unknown parameter is named": ("host://?colour=red", "url.colour: unknown parameter"),
    "a target without a port is named": ("host://?targets=gateway", "is not HOST:PORT"),
    "an unknown scheme is named": ("fax://x", "unknown scheme 'fax'"),
    "a URL without a scheme is named": ("register", "has no scheme"),
}


@pytest.mark.parametrize("url,message", PROBE_MISTAKES.values(), ids=PROBE_MISTAKES.keys())
def test_probe_rejects_a_bad_url_with_exit_2_and_no_traceback(url, message):
    result = run_cli("probe", url)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_host_collector_class_is_the_one_the_registry_creates():
    device = collectors.device_from_url("host://")
    assert isinstance(collectors.get("host").create(device), HostCollector)
