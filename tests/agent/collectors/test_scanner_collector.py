"""The scanner collector against a simulated scanner on a real pty pair (no mocked serial port)."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import collectors
from edge_agent.collectors.scanner.collector import ScannerCollector
from edge_agent.errors import DeviceError
from edge_agent.reading import validate
from edge_agent.simulators.scanner import GOOD_CODE, ScannerSimulator
from wait import until

# Fast heartbeats so the tests run quickly; the waits below are caps, not timed assertions.
FAST = "&heartbeat_interval=0.05&heartbeat_timeout=0.3"


def scanner_device(path: str, vendor: str = "none", extra: str = ""):
    return collectors.device_from_url(f"scanner+serial://{path}?heartbeat={vendor}{FAST}{extra}")


def scenario(vendor: str = "none", link: bool = False, extra: str = ""):
    """Run `body(sim, collector)` with a started simulator and an opened collector."""
    def wrap(body):
        async def main(tmp_path):
            sim = ScannerSimulator(vendor, link=(tmp_path / "by-id-scanner") if link else None)
            path = await sim.start()
            collector = ScannerCollector(scanner_device(path, vendor, extra))
            await collector.open()
            try:
                await body(sim, collector)
            finally:
                await collector.close()
                await sim.stop()
        return lambda tmp_path: asyncio.run(main(tmp_path))
    return wrap


@pytest.mark.parametrize("vendor", ["none", "honeywell", "zebra"])
def test_good_and_malformed_frames_are_counted_and_readings_are_valid(vendor, tmp_path):
    @scenario(vendor)
    async def body(sim, collector):
        sim.scan()
        sim.malformed()
        sim.scan()
        await until(lambda: collector.reads == 2 and collector.decode_errors == 1)
        reading = await collector.poll()
        assert not reading.stale
        assert reading.values["scanner.connected"] is True
        assert reading.values["scanner.reads"] == 2
        assert reading.values["scanner.decode_errors"] == 1
        assert validate(reading) == []
    body(tmp_path)


def test_a_bad_ean_check_digit_counts_as_a_decode_error_when_ean_upc_is_checked(tmp_path):
    @scenario("none", extra="&symbology=ean_upc")
    async def body(sim, collector):
        sim.malformed("check_digit")
        sim.scan()
        await until(lambda: collector.reads + collector.decode_errors == 2)
        assert (collector.reads, collector.decode_errors) == (1, 1)
    body(tmp_path)


def test_last_scan_age_is_null_before_any_scan_and_grows_after_one(tmp_path):
    @scenario()
    async def body(sim, collector):
        first = await collector.poll()
        assert first.values["scanner.last_scan_age_s"] is None
        sim.scan()
        await until(lambda: collector.reads == 1)
        age1 = (await collector.poll()).values["scanner.last_scan_age_s"]
        await asyncio.sleep(0.05)
        age2 = (await collector.poll()).values["scanner.last_scan_age_s"]
        assert 0 <= age1 < age2
    body(tmp_path)


def test_the_scanned_data_never_appears_in_a_reading(tmp_path):
    @scenario()
    async def body(sim, collector):
        sim.scan("LOYALTY-CARD-98765")
        await until(lambda: collector.reads == 1)
        text = json.dumps((await collector.poll()).to_dict())
        assert "98765" not in text and GOOD_CODE not in text
    body(tmp_path)


@pytest.mark.parametrize("vendor", ["honeywell", "zebra"])
def test_a_scanner_that_answers_its_heartbeat_is_ok(vendor, tmp_path):
    @scenario(vendor)
    async def body(sim, collector):
        reading = await collector.poll()
        assert reading.values["scanner.heartbeat"] == "ok"
        assert reading.values["device.status"] == "ok"
        assert sim.heartbeats_seen >= 1
    body(tmp_path)


@pytest.mark.parametrize("vendor", ["honeywell", "zebra"])
def test_a_scanner_that_stops_answering_its_heartbeat_is_flagged_then_recovers(vendor, tmp_path):
    @scenario(vendor)
    async def body(sim, collector):
        assert (await collector.poll()).values["scanner.heartbeat"] == "ok"
        sim.answering = False
        await until(lambda: collector.heartbeat == "missing")
        reading = await collector.poll()
        assert not reading.stale  # The port is there; the scanner behind it is not answering.
        assert reading.values["scanner.heartbeat"] == "missing"
        assert reading.values["device.status"] == "error"
        sim.answering = True
        await until(lambda: collector.heartbeat == "ok")
        assert (await collector.poll()).values["device.status"] == "ok"
    body(tmp_path)


def test_heartbeat_is_off_when_no_vendor_is_configured(tmp_path):
    @scenario("none")
    async def body(sim, collector):
        assert (await collector.poll()).values["scanner.heartbeat"] == "off"
        assert sim.heartbeats_seen == 0
    body(tmp_path)


def test_zebra_decode_data_packets_are_acknowledged_as_ssi_requires(tmp_path):
    @scenario("zebra")
    async def body(sim, collector):
        sim.scan()
        sim.scan()
        await until(lambda: sim.acks_seen == 2)
    body(tmp_path)


@pytest.mark.parametrize("vendor", ["none", "honeywell"])
def test_unplug_gives_a_stale_offline_reading_and_replug_a_reconnect(vendor, tmp_path):
    @scenario(vendor, link=True)
    async def body(sim, collector):
        sim.scan()
        await until(lambda: collector.reads == 1)
        await sim.unplug()
        await until(lambda: collector.transport is None)
        gone = await collector.poll()
        assert gone.stale and gone.reason
        assert gone.values["scanner.connected"] is False
        assert gone.values["device.status"] == "offline"
        assert validate(gone) == []
        await sim.start()  # Plugged back in: a new pty behind the same by-id link.
        back = await collector.poll()
        assert not back.stale
        assert back.values["scanner.reconnects"] == 1
        assert back.values["scanner.reads"] == 1  # Counts survive the reconnect.
        sim.scan()
        await until(lambda: collector.reads == 2)
    body(tmp_path)


def test_a_port_that_does_not_exist_gives_a_stale_reading_naming_the_port(tmp_path):
    async def main():
        collector = ScannerCollector(scanner_device(str(tmp_path / "ttyNONE")))
        await collector.open()
        reading = await collector.poll()
        await collector.close()
        assert reading.stale and "ttyNONE" in reading.reason
        assert validate(reading) == []
    asyncio.run(main())


def test_closing_twice_is_safe(tmp_path):
    @scenario("honeywell")
    async def body(sim, collector):
        await collector.close()
        await collector.close()
    body(tmp_path)


# --- Any bytes through the transport seam: the collector never raises and its readings are valid.

class ScriptedTransport:
    """A transport that hands out given chunks, then waits forever (the seam tests may swap)."""

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.written: list[bytes] = []

    async def read(self) -> bytes:
        if not self.chunks:
            await asyncio.Event().wait()
        chunk = self.chunks.pop(0)
        if chunk is None:
            raise DeviceError("port lost: scripted")
        return chunk

    async def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        pass


@settings(max_examples=40, deadline=None)
@given(chunks=st.lists(st.one_of(st.binary(max_size=120), st.none()), max_size=8),
       vendor=st.sampled_from(["none", "honeywell", "zebra"]),
       symbology=st.sampled_from(["any", "ean_upc"]))
def test_any_bytes_from_the_port_give_valid_readings(chunks, vendor, symbology):
    device = scanner_device("/dev/ttyFAKE", vendor, f"&symbology={symbology}&max_frame=64&heartbeat_timeout=0.01")

    async def main():
        collector = ScannerCollector(device, opener=lambda port, baud: ScriptedTransport(chunks))
        await collector.open()
        for _ in range(3):
            await asyncio.sleep(0)
            reading = await collector.poll()
            assert validate(reading) == []
        await collector.close()
    asyncio.run(main())


def test_the_scanner_table_rejects_bad_values_with_their_key_paths():
    from edge_agent.config import parse_text
    from edge_agent.errors import ConfigError

    text = """
[agent]
store = "s1"
[[devices]]
id = "scanner-1"
kind = "scanner"
[devices.scanner]
baudrate = 9601
suffix = "tab"
heartbeat_timeout = 0
"""
    with pytest.raises(ConfigError) as err:
        parse_text(text)
    paths = {p.path for p in err.value.problems}
    assert paths == {"devices[0].scanner.port", "devices[0].scanner.baudrate",
                     "devices[0].scanner.suffix", "devices[0].scanner.heartbeat_timeout"}


def test_scanner_device_url_keeps_the_port_path_and_options():
    device = collectors.device_from_url("scanner+serial:///dev/ttyS0?baudrate=115200&suffix=crlf")
    assert dataclasses.asdict(device.options)["port"] == "/dev/ttyS0"
    assert device.options.baudrate == 115200 and device.options.suffix == "crlf"


def test_the_pool_thread_fallback_for_loops_without_add_reader_counts_frames_and_sees_an_unplug(
        tmp_path):
    from edge_agent.collectors.scanner.collector import SerialTransport

    def blocking_transport(port, baudrate):
        transport = SerialTransport(port, baudrate)
        transport.fd = None  # As on Windows: pyserial reads on the pool with a short timeout.
        return transport

    async def main():
        sim = ScannerSimulator("honeywell")
        path = await sim.start()
        collector = ScannerCollector(scanner_device(path, "honeywell"), opener=blocking_transport)
        await collector.open()
        try:
            assert (await collector.poll()).values["scanner.heartbeat"] == "ok"
            sim.scan()
            sim.malformed()
            await until(lambda: collector.reads == 1 and collector.decode_errors == 1)
            await sim.unplug()
            await until(lambda: collector.transport is None)
            assert (await collector.poll()).stale
        finally:
            await collector.close()
            await sim.stop()
    asyncio.run(main())
