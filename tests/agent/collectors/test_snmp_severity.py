"""SNMP severity follows the device (RFC 3805 2.2.13.4): the Konica bizhub C250i recording."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from conftest import ROOT
from edge_agent.collectors import device_from_url, snmp
from edge_agent.collectors.snmp import protocol
from edge_agent.health.policy import DeviceHealth, Thresholds, decide, note_reading
from edge_agent.reading import validate
from edge_agent.simulators.snmp import SnmpSimulator

CORPUS = ROOT / "tests" / "fixtures" / "snmp"


def test_the_konica_c250i_recording_is_a_warning_not_an_unrecoverable_error():
    with SnmpSimulator(CORPUS / "snmpsim") as sim:
        device = device_from_url(f"snmp://{sim.community('konica_c250i')}@{sim.host}:{sim.port}",
                                 id="konica")
        device = dataclasses.replace(device, timeout=20.0, options=dataclasses.replace(
            device.options, timeout=3.0, retries=1))

        async def once():
            c = snmp.create(device)
            await c.open()
            try:
                return await c.poll()
            finally:
                await c.close()

        reading = asyncio.run(once())
    assert not reading.stale, reading.reason
    assert validate(reading) == []
    v = reading.values
    assert v["device.hr_status"] == "warning"
    assert v["printer.errors"] == "serviceRequested"
    assert v["device.status"] == "warning"
    assert v["printer.error"] != "unrecoverable"
    assert v["printer.service_requested"] is True
    health = DeviceHealth()
    note_reading(health, reading)
    decide("konica", health, reading, None, {}, [], None, Thresholds(0.8, 0.4),
           reading.ts.timestamp())
    assert health.decision != "failed"


HR = {2: "running", 3: "warning", 5: "down"}


@pytest.mark.parametrize("hr,state,status,error", [
    (3, b"\x01\x00", "warning", "recoverable"),      # serviceRequested, non-critical
    (5, b"\x01\x00", "error", "unrecoverable"),      # serviceRequested, critical
    (5, b"\x40\x00", "error", "recoverable"),        # noPaper: down, but operator work
    (2, b"\x40\x00", "warning", "recoverable"),      # running yet noPaper: the device says ok-ish
    (3, b"\x80\x00", "warning", "none"),             # lowPaper
    (2, b"\x00\x00", "ok", "none"),
])
def test_hr_device_status_decides_how_bad_the_error_bits_are(hr, state, status, error):
    layout = protocol.Layout(hr_index=1)
    raw = {f"1.3.6.1.2.1.25.3.2.1.5.1": hr, "1.3.6.1.2.1.25.3.5.1.2.1": state}
    v = protocol.status(raw, layout)
    assert (v["device.status"], v["printer.error"]) == (status, error)
