"""The ESC/POS collector against the simulated printer, over real TCP sockets and real ptys."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.collectors.escpos.collector import EscposCollector
from edge_agent.collectors.escpos.config import EscposConfig
from edge_agent.collectors.escpos.transport import SerialPoolTransport, Transport, UsbTransport
from edge_agent.config import DeviceConfig
from edge_agent.configschema import load
from edge_agent.errors import DeviceError
from edge_agent.reading import validate
from edge_agent.scheduler import Scheduler
from edge_agent.simulators.escpos_printer import PrinterSimulator

from conftest import ROOT

REPLY_TIMEOUT = 0.2


async def start(sim: PrinterSimulator, transport: str, **options) -> DeviceConfig:
    """Serve the simulator on a transport; return a device config that points at it."""
    data = {"reply_timeout": REPLY_TIMEOUT, **options}
    if transport == "tcp":
        host, port = await sim.start_tcp()
        data.update(transport="tcp", host=host, port=port)
    else:
        data.update(transport="serial", device=await sim.start_pty(), baudrate=19200)
    return DeviceConfig(id="receipt-1", kind="escpos", timeout=5.0,
                        options=load(EscposConfig, data))


def run_with_printer(transport, body, *commands, **options):
    """Run body(sim, collector) against a fresh simulator told `commands`."""

    async def main():
        sim = PrinterSimulator()
        for c in commands:
            assert sim.command(c).startswith("ok"), c
        device = await start(sim, transport, **options)
        if transport == "pty-pool":
            collector = EscposCollector(device, transport_factory=lambda o: SerialPoolTransport(
                o.device, o.baudrate))
        else:
            collector = EscposCollector(device)
        await collector.open()
        try:
            return await body(sim, collector)
        finally:
            await collector.close()
            await sim.stop()

    return asyncio.run(main())


async def poll(sim, collector):
    reading = await collector.poll()
    assert validate(reading) == []
    return reading


TRANSPORTS = ("tcp", "pty")
# The pool transport (short blocking reads, for Windows COM ports) runs here on a pty too.
ALL_TRANSPORTS = TRANSPORTS + ("pty-pool",)

# (sentence, simulator commands, stale?, expected values or reason fragment).
FAULTS = [
    ("a healthy printer is ok and says its model and firmware", (), False,
     {"device.status": "ok", "printer.paper": "ok", "printer.cover": "closed",
      "printer.error": "none", "printer.online": True, "device.model": "TM-T88V",
      "device.firmware": "30.01 ESC/POS"}),
    ("an open cover is an error", ("cover open",), False,
     {"device.status": "error", "printer.cover": "open", "printer.online": False}),
    ("paper near its end is a warning", ("paper near_end",), False,
     {"device.status": "warning", "printer.paper": "near_end", "printer.online": True}),
    ("paper out is an error", ("paper out",), False,
     {"device.status": "error", "printer.paper": "out", "printer.online": False}),
    ("a jammed cutter is a recoverable error", ("jam",), False,
     {"printer.cutter": "error", "printer.error": "recoverable", "device.status": "error"}),
    ("an unrecoverable error is reported as such", ("fatal on",), False,
     {"printer.error": "unrecoverable", "device.status": "error"}),
    ("an overheated head is a recoverable error with the cutter ok", ("overheat on",), False,
     {"printer.error": "recoverable", "printer.cutter": "ok"}),
    ("a printer in power save is asleep, not failed, and still reports its paper",
     ("sleep", "paper near_end"), False,
     {"device.status": "warning", "printer.paper": "near_end"}),
    ("a healthy printer in power save is asleep", ("sleep",), False,
     {"device.status": "asleep", "printer.paper": "ok"}),
    ("garbage before each reply is skipped", ("garbage before", "paper near_end"), False,
     {"device.status": "warning", "printer.paper": "near_end"}),
    ("ASB blocks and XON before each reply are skipped", ("asb on", "cover open"), False,
     {"printer.cover": "open"}),
    ("an old reply trailing each answer is not taken for the next one", ("stale on",), False,
     {"printer.paper": "ok", "device.status": "ok"}),
    ("a printer that accepts but never answers is offline, never ok", ("hang",), True,
     "no reply to DLE EOT 1 within 0.2 s, nor after the wake byte"),
    ("a printer that answers only garbage is offline with the reason", ("garbage only",), True,
     "fit no reply"),
    ("a printer that answers some requests and not others is offline", ("partial on",), True,
     "no reply to DLE EOT 3"),
    ("replies later than the reply timeout make the printer offline", ("late 1",), True,
     "no reply to DLE EOT 1"),
]


@pytest.mark.parametrize("transport", ALL_TRANSPORTS)
@pytest.mark.parametrize("commands, stale, expected", [f[1:] for f in FAULTS],
                         ids=[f[0] for f in FAULTS])
def test_printer_condition_is_reported(transport, commands, stale, expected):
    reading = run_with_printer(transport, poll, *commands)
    assert reading.stale is stale
    if stale:
        assert expected in reading.reason
        assert reading.values["device.status"] == "offline"
    else:
        assert {k: reading.values.get(k) for k in expected} == expected
        assert reading.values["poll.latency_ms"] >= 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_late_replies_are_flushed_before_the_next_request(transport):
    async def body(sim, collector):
        sim.command("late 0.4")
        sim.command("cover open")
        first = await collector.poll()
        assert first.stale
        # The late replies (cover open, offline) arrive after the poll gave up.
        for _ in range(100):
            if collector.transport.inbox.data:
                break
            await asyncio.sleep(0.05)
        assert collector.transport.inbox.data
        sim.command("clear")
        second = await collector.poll()
        assert not second.stale
        assert second.values["printer.cover"] == "closed"
        assert second.values["printer.online"] is True
        assert collector.flushed >= 2

    run_with_printer(transport, body, connection="kept")


@pytest.mark.parametrize("connection, connections", [("auto", 3), ("kept", 1)],
                         ids=["by default a TCP connection lasts one poll, so the POS can print",
                              "a kept TCP connection serves every poll"])
def test_tcp_connection_lifetime(connection, connections):
    async def body(sim, collector):
        for _ in range(3):
            assert not (await collector.poll()).stale
        return sim.connections

    assert run_with_printer("tcp", body, connection=connection) == connections


def test_the_model_is_asked_again_after_a_failed_poll_since_the_printer_may_be_another():
    async def body(sim, collector):
        await collector.poll()
        await collector.poll()
        sim.engine.identity.model = "TM-T20III"
        sim.command("hang")
        await collector.poll()
        sim.command("answer")
        return await collector.poll()

    assert run_with_printer("tcp", body).values["device.model"] == "TM-T20III"


@pytest.mark.parametrize("transport", ALL_TRANSPORTS)
def test_a_printer_that_stops_answering_goes_offline_and_comes_back(transport):
    async def body(sim, collector):
        assert (await collector.poll()).values["device.status"] == "ok"
        sim.command("hang")
        silent = await collector.poll()
        assert silent.stale and silent.values["device.status"] == "offline"
        sim.command("answer")
        back = await collector.poll()
        assert not back.stale and back.values["device.status"] == "ok"

    run_with_printer(transport, body)


def test_a_star_printer_that_is_silent_is_offline_since_it_cannot_be_told_asleep():
    reading = run_with_printer("tcp", poll, "sleep", model="star-escpos")
    assert reading.stale and reading.values["device.status"] == "offline"
    assert "wake" not in reading.reason


def test_with_wake_off_a_sleeping_printer_is_offline():
    reading = run_with_printer("tcp", poll, "sleep", wake=False)
    assert reading.stale and reading.values["device.status"] == "offline"


def test_a_printer_without_gs_i_still_reports_its_status():
    async def body(sim, collector):
        sim.faults.gs_i = False
        return await collector.poll()

    reading = run_with_printer("tcp", body)
    assert not reading.stale and "device.model" not in reading.values
    assert reading.values["device.status"] == "ok"


def test_a_printer_that_is_gone_is_offline_with_the_connect_error():
    async def main():
        sim = PrinterSimulator()
        device = await start(sim, "tcp")
        await sim.stop()
        collector = EscposCollector(device)
        await collector.open()
        reading = await collector.poll()
        await collector.close()
        return reading

    reading = asyncio.run(main())
    assert reading.stale and "cannot connect" in reading.reason


def test_a_pty_printer_unplugged_mid_run_is_offline():
    async def body(sim, collector):
        assert not (await collector.poll()).stale
        await sim.stop()
        return await collector.poll()

    reading = run_with_printer("pty", body)
    assert reading.stale and reading.values["device.status"] == "offline"


def test_wear_over_simulated_time_brings_rising_recoverable_errors():
    async def body(sim, collector):
        sim.command("wear 0.05")
        counts = []
        for _ in range(3):
            errors = 0
            for _ in range(20):
                reading = await collector.poll()
                errors += reading.values.get("printer.error") == "recoverable"
            counts.append(errors)
            sim.command("advance 8")
        return counts

    counts = run_with_printer("tcp", body)
    assert counts[0] == 0
    assert counts[2] > counts[1] > 0


class ReplayTransport(Transport):
    """Answers each request from a table of request -> reply bytes, as a recorded exchange
    replayed through the transport seam. It also stands in for USB printers: no USB bus can
    exist on a test machine."""

    def __init__(self, replies: dict[bytes, bytes]):
        self.replies, self.out, self._open = replies, b"", False
        self.where = "replay"

    @property
    def is_open(self) -> bool:
        return self._open

    async def open(self, timeout):
        self._open = True

    async def write(self, data):
        self.out = self.replies.get(data, b"")

    async def read(self, timeout):
        if not self.out:
            await asyncio.sleep(max(timeout, 0))
        out, self.out = self.out, b""
        return out

    async def flush(self):
        return 0

    async def close(self):
        self._open = False


def poll_replay(replies: dict[bytes, bytes], table: dict) -> object:
    options = load(EscposConfig, {"reply_timeout": 0.05, **table})
    device = DeviceConfig(id="receipt-1", kind="escpos", options=options)
    collector = EscposCollector(device, transport_factory=lambda o: ReplayTransport(replies))

    async def main():
        await collector.open()
        return await collector.poll()

    return asyncio.run(main())


def test_a_usb_printer_is_polled_through_the_transport_seam():
    replies = {b"\x10\x04\x01": b"\x16", b"\x10\x04\x02": b"\x12", b"\x10\x04\x03": b"\x12",
               b"\x10\x04\x04": b"\x1e", b"\x1dIC": b"\x5fTM-T20III\x00",
               b"\x1dIA": b"\x5f10.02\x00"}
    reading = poll_replay(replies, {"transport": "usb", "vid": "04b8", "pid": "0e28"})
    assert reading.values["printer.paper"] == "near_end"
    assert reading.values["device.model"] == "TM-T20III"
    assert reading.values["device.firmware"] == "10.02"


FIXTURES = sorted((ROOT / "tests" / "fixtures" / "escpos").glob("*.json"))


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_recorded_exchanges_replay_to_the_expected_reading(path):
    fixture = json.loads(path.read_text())
    replies = {bytes.fromhex(k): bytes.fromhex(v) for k, v in fixture["exchanges"].items()}
    reading = poll_replay(replies, {"transport": "tcp", "host": "replay",
                                    "model": fixture["model"]})
    assert validate(reading) == []
    assert not reading.stale, reading.reason
    assert {k: reading.values.get(k) for k in fixture["expect"]} == fixture["expect"]
    assert not set(fixture["absent"]) & set(reading.values)


def test_the_real_usb_transport_fails_with_a_clear_error_when_it_cannot_open():
    async def main():
        with pytest.raises(DeviceError) as err:
            await UsbTransport("04b8", "0e28").open(1.0)
        return str(err.value)

    message = asyncio.run(main())
    assert "pyusb" in message or "usb 04b8:0e28" in message


def test_one_hung_printer_does_not_delay_the_polls_of_the_others():
    async def main():
        sims = [PrinterSimulator(seed=i) for i in range(4)]
        devices = []
        for i, sim in enumerate(sims):
            d = await start(sim, "tcp" if i % 2 == 0 else "pty")
            devices.append(DeviceConfig(id=f"p{i}", kind="escpos", interval=0.05, timeout=3.0,
                                        jitter=0.0, backoff_max=0.05, options=d.options))
        sims[0].command("hang")
        readings: dict[str, list] = {d.id: [] for d in devices}
        hung_polls = asyncio.Event()

        def sink(reading, state):
            readings[reading.device].append(reading)
            if len(readings["p0"]) >= 2:
                hung_polls.set()

        scheduler = Scheduler(sink)
        scheduler.apply(tuple(devices))
        try:
            await asyncio.wait_for(hung_polls.wait(), 30)
        finally:
            await scheduler.stop()
            for sim in sims:
                await sim.stop()
        return readings

    readings = asyncio.run(main())
    assert all(r.stale for r in readings["p0"])
    # Each silent poll of p0 waits two reply timeouts plus the wake delay; meanwhile the others
    # are polled every 50 ms, so many of their polls fit in the time p0 spends on two.
    for dev in ("p1", "p2", "p3"):
        assert len(readings[dev]) >= 5, (dev, len(readings[dev]))
        assert not any(r.stale for r in readings[dev])


def test_importing_the_collector_package_and_simulators_loads_no_protocol_library():
    import subprocess
    import sys

    from conftest import agent_env

    code = ("import sys, edge_agent.collectors.escpos as e, edge_agent.simulators as s; "
            "s.modules(); e.config_from_url; "
            "print(','.join(m for m in ('serial', 'escpos', 'usb', 'pysnmp', 'paho') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=agent_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


class ScriptedPrinter(ReplayTransport):
    """Answers each request with the next scripted chunk of bytes, whatever they are; silent
    (after waiting the read timeout) once the script runs out."""

    def __init__(self, chunks):
        super().__init__({})
        self.chunks = list(chunks)

    async def write(self, data):
        if self.chunks:
            self.out += self.chunks.pop(0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=12), max_size=8),
       st.sampled_from(("epson-tm", "bixolon", "citizen", "star-escpos", "generic")))
def test_any_bytes_a_printer_sends_give_a_valid_reading_and_never_an_exception(chunks, model):
    options = load(EscposConfig, {"transport": "tcp", "host": "x", "reply_timeout": 0.001,
                                  "model": model})
    device = DeviceConfig(id="receipt-1", kind="escpos", options=options)
    collector = EscposCollector(device, transport_factory=lambda o: ScriptedPrinter(chunks))
    collector.model = dataclasses.replace(collector.model, wake_delay_s=0.0)

    async def main():
        await collector.open()
        return await collector.poll()

    reading = asyncio.run(main())
    assert validate(reading) == []
    assert reading.stale or reading.values["device.status"] in ("ok", "warning", "error",
                                                                "asleep")
