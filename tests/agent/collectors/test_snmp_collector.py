"""The SNMP printer collector against snmpsim serving every recording of the LibreNMS corpus."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, free_port, run_cli
from edge_agent.collectors import device_from_url, snmp
from edge_agent.collectors.snmp import oids, protocol
from edge_agent.config import DeviceConfig
from edge_agent.reading import validate
from edge_agent.scheduler import Scheduler
from edge_agent.simulators.snmp import SnmpSimulator

CORPUS = ROOT / "tests" / "fixtures" / "snmp"
RECORDINGS = sorted(p.name[:-len(".snmprec")] for p in (CORPUS / "snmpsim").glob("*.snmprec"))
INT_TYPES = {"2", "65", "66", "67", "70"}


def parse_snmprec(name: str) -> dict[str, object]:
    """Read a recording ourselves: OID|type|value, hex for 4x, into the collector's plain values."""
    raw: dict[str, object] = {}
    for line in (CORPUS / "snmpsim" / f"{name}.snmprec").read_bytes().splitlines():
        parts = line.split(b"|", 2)
        if len(parts) != 3:
            continue
        oid, kind, value = parts[0].decode().lstrip("."), parts[1].decode(), parts[2]
        if kind in INT_TYPES:
            raw[oid] = int(value)
        elif kind == "4x":
            raw[oid] = bytes.fromhex(value.decode())
        elif kind == "4":
            raw[oid] = value
        elif kind == "6":
            raw[oid] = value.decode().lstrip(".")
        else:
            raw[oid] = value
    return raw


def rows(raw: dict, column: str) -> dict[str, object]:
    prefix = column + "."
    return {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}


def expected_json(name: str) -> dict | None:
    path = CORPUS / "data" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def words(value) -> str:
    """Compare texts by their words: recordings keep line breaks that the collector drops."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).replace("\x00", " ").split())


@pytest.fixture(scope="session")
def snmpsim():
    """One snmpsim serving the whole corpus for the session."""
    with SnmpSimulator(CORPUS / "snmpsim") as sim:
        yield sim


def snmp_device(sim: SnmpSimulator, name: str, **options) -> DeviceConfig:
    device = device_from_url(f"snmp://{sim.community(name)}@{sim.host}:{sim.port}",
                             id=name.replace("@", "-"))
    return dataclasses.replace(device, timeout=20.0, options=dataclasses.replace(
        device.options, timeout=3.0, retries=1, **options))


async def poll_once(device: DeviceConfig, times: int = 1):
    collector = snmp.create(device)
    await collector.open()
    try:
        return [await collector.poll() for _ in range(times)]
    finally:
        await collector.close()


@pytest.mark.parametrize("name", RECORDINGS)
def test_recording_is_read_as_recorded_and_as_librenms_expects(snmpsim, name):
    raw = parse_snmprec(name)
    reading, again = asyncio.run(poll_once(snmp_device(snmpsim, name), times=2))
    assert not reading.stale, reading.reason
    assert validate(reading) == [] and validate(again) == []
    v = reading.values

    # Identity, against the recording.
    if raw.get(oids.SYS_DESCR):
        assert words(v["device.description"]) == words(raw[oids.SYS_DESCR])
    if oids.SYS_OBJECT_ID in raw:
        assert v["device.object_id"] == raw[oids.SYS_OBJECT_ID]
    if oids.SYS_UPTIME in raw:
        assert v["device.uptime_s"] == raw[oids.SYS_UPTIME] / 100
    assert v["printer.mib"] == any(k.startswith(oids.PRINTER_MIB + ".") for k in raw)
    serials = [s for s in rows(raw, oids.PRT_GENERAL_SERIAL).values() if words(s)]
    if serials:
        assert words(v["device.serial"]) == words(serials[0])

    # Status, against the recording.
    errors = rows(raw, oids.HR_PRINTER_ERROR_STATE)
    hr = next(iter(errors), "1" if f"{oids.HR_DEVICE_STATUS}.1" in raw else None)
    if hr is not None and f"{oids.HR_DEVICE_STATUS}.{hr}" in raw:
        code = raw[f"{oids.HR_DEVICE_STATUS}.{hr}"]
        assert v["device.hr_status"] == oids.HR_DEVICE_STATUS_NAMES[code]
    if errors:
        state = errors[hr]
        assert v["printer.error_state"] == state.hex()
        assert v["printer.errors"].split(",") == [""] if not any(state) else \
            v["printer.errors"].split(",")
    if not v["printer.mib"] and hr is None:
        # A device without the Printer-MIB or hrDeviceTable is identified, not failed.
        assert v["device.status"] == "unknown"
        assert not any(k.startswith(("supply.", "tray.")) for k in v)

    # Supplies, trays and page counter, against the recording.
    levels = rows(raw, oids.PRT_SUPPLY_LEVEL)
    keys = dict(protocol.row_keys(sorted(levels, key=protocol._oid_key)))
    for suffix, level in levels.items():
        p = f"supply.{keys[suffix]}."
        capacity = raw.get(f"{oids.PRT_SUPPLY_MAX_CAPACITY}.{suffix}")
        assert v[p + "level"] == (level if level >= 0 else None)
        assert v[p + "capacity"] == (capacity if isinstance(capacity, int) and capacity > 0
                                     else None)
        assert v[p + "level_state"] == {-1: "unrestricted", -2: "unknown",
                                        -3: "some_remaining"}.get(level, "measured")
        if level >= 0 and isinstance(capacity, int) and capacity > 0:
            assert v[p + "level_pct"] == round(min(100.0, 100 * level / capacity), 1)
        descr = raw.get(f"{oids.PRT_SUPPLY_DESCRIPTION}.{suffix}")
        if descr and words(descr):
            assert words(v[p + "description"]) == words(descr)
    trays = rows(raw, oids.PRT_INPUT_CURRENT_LEVEL)
    tray_keys = dict(protocol.row_keys(sorted(trays, key=protocol._oid_key)))
    for suffix, level in trays.items():
        assert v[f"tray.{tray_keys[suffix]}.level"] == (level if level >= 0 else None)
    counts = rows(raw, oids.PRT_MARKER_LIFE_COUNT)
    if counts:
        assert v["printer.page_count"] == counts[sorted(counts, key=protocol._oid_key)[0]]

    # Against LibreNMS's expected data, where the corpus has it.
    expected = expected_json(name)
    if expected is None:
        return
    sensors = expected.get("sensors", {}).get("discovery", {}).get("sensors", [])
    for sensor in sensors:
        if sensor["sensor_type"] == "hrDeviceStatus":
            assert v["device.hr_status"] == oids.HR_DEVICE_STATUS_NAMES[sensor["sensor_current"]]
        if sensor["sensor_type"] == "hrPrinterDetectedErrorState":
            bits = [b for b in v["printer.errors"].split(",") if b]
            assert protocol.librenms_error_state(bits) == sensor["sensor_current"]
    supplies = expected.get("printer-supplies", {}).get("discovery", {}).get(
        "printer_supplies", [])
    if not any(k.startswith("supply.") for k in v) and \
            (CORPUS / "snmpsim" / f"{name}@Jetdirect.snmprec").exists():
        # LibreNMS reads this HP's supplies in the SNMP context "Jetdirect".
        (context_reading,) = asyncio.run(poll_once(snmp_device(snmpsim, f"{name}@Jetdirect")))
        v = context_reading.values
    ours = {k.split(".")[1] for k in v if k.startswith("supply.")}
    ours = [k for k in ours if v[f"supply.{k}.level_state"] != "unknown"]  # LibreNMS skips -2
    # LibreNMS lists only named trays (prtInputName); fujifilm's trays have no names.
    ours_trays = [k.split(".")[1] for k in v
                  if k.startswith("tray.") and k.endswith(".level_state")
                  and v[k] != "unknown" and f"tray.{k.split('.')[1]}.name" in v]
    assert len(ours) == len([s for s in supplies if s["supply_type"] != "input"])
    assert len(ours_trays) == len([s for s in supplies if s["supply_type"] == "input"])
    for row in supplies:
        kind = "tray" if row["supply_type"] == "input" else "supply"
        key = row["supply_oid"].rsplit(".", 1)[1]
        assert librenms_percent(v, f"{kind}.{key}.") == row["supply_current"], row


def librenms_percent(values: dict, prefix: str) -> int:
    """What LibreNMS would store for our raw level and capacity (PrinterSupplies.php)."""
    state = values[prefix + "level_state"]
    if state == "some_remaining":
        return 50
    if state == "unrestricted":
        return 0
    capacity = values[prefix + "capacity"] or 100
    return round(values[prefix + "level"] / capacity * 100)


def test_snmpv3_with_sha_and_aes_reads_the_same_printer_as_v2c(snmpsim):
    v2c = snmp_device(snmpsim, "sharp")
    v3 = dataclasses.replace(v2c, options=dataclasses.replace(
        v2c.options, version="3", user=snmpsim.v3_user, auth="SHA",
        auth_key=snmpsim.v3_auth_key, priv="AES", priv_key=snmpsim.v3_priv_key,
        context="sharp"))
    (a,) = asyncio.run(poll_once(v2c))
    (b,) = asyncio.run(poll_once(v3))
    assert not b.stale, b.reason
    assert b.values["printer.errors"] == "lowToner"
    drop = ("poll.latency_ms",)
    assert {k: x for k, x in b.values.items() if k not in drop} == \
        {k: x for k, x in a.values.items() if k not in drop}


def test_snmpv3_with_a_wrong_key_is_stale_with_a_reason(snmpsim):
    device = snmp_device(snmpsim, "sharp")
    device = dataclasses.replace(device, options=dataclasses.replace(
        device.options, version="3", user=snmpsim.v3_user, auth_key="not-the-key",
        priv_key=snmpsim.v3_priv_key, context="sharp", timeout=1.0, retries=0))
    (reading,) = asyncio.run(poll_once(device))
    assert reading.stale and "SNMP" in reading.reason
    assert validate(reading) == []


@pytest.fixture
def asked(monkeypatch) -> list[list[str]]:
    """The OIDs of every v1/v2c request sent; a spy on the socket: requests still go out."""
    from edge_agent.collectors.snmp import collector as module

    sent: list[list[str]] = []
    real = module.UdpGets.get

    async def spy(self, addr, version, community, wanted, *args):
        sent.append(list(wanted))
        return await real(self, addr, version, community, wanted, *args)

    monkeypatch.setattr(module.UdpGets, "get", spy)
    return sent


def test_supplies_are_read_every_nth_poll_and_status_every_poll(snmpsim, asked):
    device = snmp_device(snmpsim, "jetdirect_m880", supplies_every=3)

    async def polls():
        collector = snmp.create(device)
        await collector.open()
        per_poll, readings = [], []
        try:
            for _ in range(5):
                start = len(asked)
                readings.append(await collector.poll())
                per_poll.append({oid for request in asked[start:] for oid in request})
        finally:
            await collector.close()
        return per_poll, readings

    per_poll, readings = asyncio.run(polls())
    assert all(not r.stale for r in readings), [r.reason for r in readings]
    level = f"{oids.PRT_SUPPLY_LEVEL}.1.1"
    status = f"{oids.HR_PRINTER_ERROR_STATE}.1"
    later = per_poll[1:]  # the first poll learned the rows with walks
    assert all(status in oids_asked for oids_asked in later)
    assert [level in oids_asked for oids_asked in later] == [False, False, True, False]
    assert all(r.values["supply.1.level"] == 92 for r in readings)


def test_dead_printers_are_stale_within_their_snmp_timeout_and_do_not_delay_others(snmpsim):
    good = [snmp_device(snmpsim, n) for n in ("sharp", "brother")]
    good = [dataclasses.replace(d, interval=0.05, jitter=0) for d in good]
    silent_port = free_port(__import__("socket").SOCK_DGRAM)
    dead = [
        device_from_url(f"snmp://no-such-community@{snmpsim.host}:{snmpsim.port}", id="unknown"),
        device_from_url(f"snmp://public@127.0.0.1:{silent_port}", id="closed"),
    ]
    dead = [dataclasses.replace(d, interval=60, timeout=30, options=dataclasses.replace(
        d.options, timeout=2.0, retries=0)) for d in dead]
    seen: dict[str, list] = {}

    async def run():
        scheduler = Scheduler(lambda r, s: seen.setdefault(r.device, []).append(r))
        scheduler.apply(tuple(good + dead))
        try:
            while not all(seen.get(d.id) for d in dead):
                await asyncio.sleep(0.05)
        finally:
            await scheduler.stop()

    asyncio.run(asyncio.wait_for(run(), 60))
    for d in dead:
        first = seen[d.id][0]
        # The collector gave up at its own SNMP timeout (2 s), not the loop's (30 s).
        assert first.stale and first.reason.startswith("no SNMP answer"), first.reason
        assert first.values["device.status"] == "offline"
        assert validate(first) == []
    for d in good:
        fresh = [r for r in seen[d.id] if not r.stale]
        assert len(fresh) >= 2, f"{d.id} was held up by the dead printers"


def test_probe_reads_a_printer_through_the_cli(snmpsim):
    url = f"snmp://samsungprinter_m4080fx@{snmpsim.host}:{snmpsim.port}"
    done = run_cli("probe", url, "--json")
    assert done.returncode == 0, done.stderr
    reading = json.loads(done.stdout)
    assert reading["values"]["printer.paper"] == "near_end"
    assert reading["values"]["printer.page_count"] == 22934


def test_probe_of_a_v3_printer_through_the_cli(snmpsim):
    url = (f"snmp://{snmpsim.host}:{snmpsim.port}?version=3&user={snmpsim.v3_user}"
           f"&auth=SHA&auth_key={snmpsim.v3_auth_key}&priv=AES&priv_key={snmpsim.v3_priv_key}"
           f"&context=konica_2")
    done = run_cli("probe", url, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["values"]["supply.1.level"] == 8


def test_probe_of_a_silent_printer_exits_1_saying_why(snmpsim):
    url = f"snmp://nobody@{snmpsim.host}:{snmpsim.port}?timeout=0.5&retries=0"
    done = run_cli("probe", url)
    assert done.returncode == 1
    assert "no SNMP answer" in done.stdout and "Traceback" not in done.stderr


def test_probe_with_a_bad_snmp_url_exits_2_without_a_traceback():
    done = run_cli("probe", "snmp://printer?version=9")
    assert done.returncode == 2
    assert "url.version" in done.stderr and "Traceback" not in done.stderr


def test_simulator_refuses_a_recording_it_does_not_have():
    with pytest.raises(ValueError):
        SnmpSimulator(CORPUS / "snmpsim", ["no-such-printer"])


def test_simulator_leaves_no_process_behind():
    sim = SnmpSimulator(CORPUS / "snmpsim", ["epson"])

    async def run():
        await sim.start()
        proc = sim.proc
        (reading,) = await poll_once(snmp_device(sim, "epson"))
        await sim.stop()
        return proc, reading

    proc, reading = asyncio.run(run())
    assert not reading.stale and reading.values["device.hr_status"] == "warning"
    assert proc.poll() is not None
    assert not Path(str(sim._workdir or "/nonexistent")).exists()


def test_simulate_snmp_refuses_a_folder_without_recordings(tmp_path):
    import argparse

    from edge_agent.errors import ConfigError
    from edge_agent.simulators import snmp as simulator

    parser = argparse.ArgumentParser()
    simulator.register(parser.add_subparsers())
    args = parser.parse_args(["snmp", "--dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="no .snmprec recordings"):
        args.func(args)


# ------------------------------------------------------------ v1/v2c without pysnmp

LEAN_AGENT = """
import asyncio, json, sys
from edge_agent import collectors
from edge_agent.config import load_config
from edge_agent.agent import Agent

config = load_config(sys.argv[1])

async def main():
    agent = Agent(config, sys.argv[1])
    runner = asyncio.create_task(agent.run())
    while agent.recorder is None or agent.recorder.committed_rows < 6:
        await asyncio.sleep(0.02)
    agent.request_stop()
    code = await runner
    # The same devices polled twice more here: the first poll walks, the second GETs.
    readings = []
    for device in config.devices:
        collector = collectors.get("snmp").create(device)
        await collector.open()
        try:
            readings += [await collector.poll() for _ in range(2)]
        finally:
            await collector.close()
    return code, readings

code, readings = asyncio.run(main())
print(json.dumps({"exit": code, "pysnmp": sorted(m for m in sys.modules
                                                 if m.split(".")[0] in ("pysnmp", "pyasn1")),
                  "stale": [r.reason for r in readings if r.stale],
                  "levels": [r.values.get("supply.1.level") for r in readings]}))
"""


def test_an_agent_polling_only_v1_and_v2c_printers_never_imports_pysnmp(snmpsim, tmp_path):
    from agentproc import host_config

    from conftest import agent_env

    config = tmp_path / "agent.toml"
    text = host_config(tmp_path / "state", devices=0, extra="[scoring]\nenabled = false\n")
    for i, version in enumerate(("2c", "1", "2c")):
        text += (f'\n[[devices]]\nid = "p{i}"\nkind = "snmp"\ninterval = 0.1\n'
                 f'[devices.snmp]\nhost = "{snmpsim.host}"\nport = {snmpsim.port}\n'
                 f'version = "{version}"\ncommunity = "{snmpsim.community("jetdirect_m880")}"\n')
    config.write_text(text)
    result = subprocess.run([sys.executable, "-c", LEAN_AGENT, str(config)], capture_output=True,
                            text=True, timeout=60, env=agent_env())
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["exit"] == 0
    assert out["stale"] == []
    assert out["levels"] == [92] * 6  # walked rows and GET rows both read the supply level
    assert out["pysnmp"] == []


@pytest.mark.parametrize("name", ["jetdirect_m880", "sharp", "brother"])
def test_a_v1_printer_walked_with_getnext_reads_as_its_v2c_self_walked_with_getbulk(snmpsim,
                                                                                    name):
    v2c = snmp_device(snmpsim, name)
    v1 = dataclasses.replace(v2c, options=dataclasses.replace(v2c.options, version="1"))
    (two,) = asyncio.run(poll_once(v2c))
    (one,) = asyncio.run(poll_once(v1))
    assert not one.stale and not two.stale, (one.reason, two.reason)
    timed = ("device.uptime_s", "poll.latency_ms")
    assert {k: v for k, v in one.values.items() if k not in timed} == \
        {k: v for k, v in two.values.items() if k not in timed}
    assert len(one.values) > 20


def test_walks_stop_at_their_row_bound_and_still_give_a_reading(snmpsim, asked, monkeypatch):
    from edge_agent.collectors.snmp import collector as module

    (whole,) = asyncio.run(poll_once(snmp_device(snmpsim, "jetdirect_m880")))
    unbounded = len(asked)
    asked.clear()
    monkeypatch.setitem(module.WALK_LIMIT, oids.PRINTER_MIB, 30)
    (cut,) = asyncio.run(poll_once(snmp_device(snmpsim, "jetdirect_m880")))
    assert not whole.stale and not cut.stale, (whole.reason, cut.reason)
    # Identity GET, hrPrinterTable walk, Printer-MIB walk cut at 30 rows (2 bulks), GETs.
    assert len(asked) <= 6 < unbounded
    assert len(cut.values) < len(whole.values)
