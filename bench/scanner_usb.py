"""Measure the scanner framers, a scanner collector over a pty, and a USB sysfs look."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_agent.collectors.scanner import protocol  # noqa: E402
from edge_agent.collectors.scanner.collector import ScannerCollector  # noqa: E402
from edge_agent.collectors.usb.collector import UsbCollector  # noqa: E402
from edge_agent.config import device_from_url  # noqa: E402
from edge_agent.simulators.scanner import GOOD_CODE, ScannerSimulator  # noqa: E402

FRAMES = 100_000


def cpu() -> float:
    return time.process_time()


def bench_framers() -> None:
    text = (GOOD_CODE.encode() + b"\r") * FRAMES
    packet = protocol.ssi_build(protocol.DECODE_DATA, b"\x0b" + GOOD_CODE.encode(), source=0)
    ssi = packet * FRAMES
    for name, framer, stream in (
            ("text framer, EAN-13 check", protocol.TextFramer("cr", "ean_upc"), text),
            ("text framer, honeywell replies", protocol.TextFramer("cr", honeywell_replies=True),
             text),
            ("SSI framer", protocol.SsiFramer("ean_upc"), ssi)):
        start = cpu()
        n = 0
        for i in range(0, len(stream), 4096):
            n += len(framer.feed(stream[i:i + 4096]))
        spent = cpu() - start
        assert n == FRAMES, (name, n)
        print(f"{name}: {FRAMES} frames in {spent:.2f} CPU-s = {spent / FRAMES * 1e6:.1f} us/frame")


async def bench_pty(frames: int = 20_000, idle_s: float = 5.0) -> None:
    sim = ScannerSimulator("honeywell")
    path = await sim.start()
    device = device_from_url(
        f"scanner+serial://{path}?heartbeat=honeywell&heartbeat_interval=1")
    collector = ScannerCollector(device)
    await collector.open()
    await collector.poll()
    start = cpu()
    for i in range(frames):
        sim.scan()
        if i % 200 == 199:
            await asyncio.sleep(0)  # Let the reader drain, as a real line would pace frames.
            while collector.reads < i - 400:
                await asyncio.sleep(0.001)
    while collector.reads < frames:
        await asyncio.sleep(0.001)
    spent = cpu() - start
    print(f"pty, simulator and collector in one process: {frames} scans in {spent:.2f} CPU-s "
          f"= {spent / frames * 1e6:.0f} us/scan for both sides")
    start = cpu()
    await asyncio.sleep(idle_s)
    spent = cpu() - start
    print(f"idle scanner with a 1 s heartbeat: {spent * 1000 / idle_s:.2f} CPU-ms per second "
          f"(simulator included), {sim.heartbeats_seen} heartbeats answered")
    await collector.close()
    await sim.stop()


async def bench_usb(devices: int = 50, polls: int = 200) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(devices):
            folder = Path(tmp) / "bus/usb/devices" / f"1-{i}"
            (folder / f"1-{i}:1.0/tty/ttyACM{i}").mkdir(parents=True)
            (folder / "idVendor").write_text("0c2e\n" if i == devices - 1 else "1d6b\n")
            (folder / "idProduct").write_text("0b61\n")
            (folder / "serial").write_text(f"SN{i}\n")
        collector = UsbCollector(device_from_url("usb://0c2e:0b61"), sysfs_root=tmp)
        await collector.open()
        start = cpu()
        for _ in range(polls):
            reading = await collector.poll()
        spent = cpu() - start
        assert reading.values["usb.present"]
        print(f"usb: one poll over a sysfs of {devices} devices: "
              f"{spent / polls * 1000:.2f} CPU-ms")


def bench_import_rss() -> None:
    code = ("import resource, asyncio\n"
            "from edge_agent import collectors\n"
            "{}\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    for label, line in (("bare agent registry", "pass"),
                        ("+ scanner collector (pyserial)",
                         "import edge_agent.collectors.scanner.collector"),
                        ("+ usb collector", "import edge_agent.collectors.usb.collector")):
        out = subprocess.run([sys.executable, "-c", code.format(line)], capture_output=True,
                             text=True, env=env, check=True).stdout
        print(f"max RSS, {label}: {int(out) / 1024:.1f} MB")


def main() -> None:
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; CPU-s are process "
          "CPU time, so other load on the machine inflates them little")
    bench_framers()
    asyncio.run(bench_pty())
    asyncio.run(bench_usb())
    bench_import_rss()
    print(f"this benchmark's max RSS: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB")


if __name__ == "__main__":
    main()
