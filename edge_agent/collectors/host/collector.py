"""Poll the register PC through psutil, off the event loop; TCP connects run on the loop."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timezone

import psutil

from edge_agent.blocking import run_blocking
from edge_agent.collectors.base import Collector
from edge_agent.reading import Reading, format_ts

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


def name_key(name: str) -> str:
    """Turn a process name into a vocabulary index: 'pos.exe' -> 'pos_exe'."""
    return _UNSAFE.sub("_", name) or "_"


class HostCollector(Collector):
    """The register PC."""

    kind = "host"

    async def open(self) -> None:
        # cpu_percent(None) compares with the previous call; prime it so the first poll is real.
        await run_blocking(psutil.cpu_percent, None)

    async def poll(self) -> Reading:
        started = time.monotonic()
        values = await run_blocking(self._sample)
        latencies = await asyncio.gather(*(self._connect(t) for t in self.options.targets))
        for i, ms in enumerate(latencies):
            values[f"host.net.{i}.latency_ms"] = ms
        if latencies:
            answered = [ms for ms in latencies if ms is not None]
            values["host.net.latency_ms"] = max(answered) if answered else None
        problems = [v is None for v in latencies]
        problems += [v is False for k, v in values.items() if k.startswith("host.proc.")]
        values["device.status"] = "warning" if any(problems) else "ok"
        return self.ok(values, started)

    def _sample(self) -> dict:
        values: dict = {"host.cpu_pct": float(psutil.cpu_percent(None)),
                        "host.mem_pct": float(psutil.virtual_memory().percent),
                        "host.swap_pct": float(psutil.swap_memory().percent)}
        worst = None
        for i, mount in enumerate(self.options.disks):
            try:
                pct = float(psutil.disk_usage(mount).percent)
            except OSError:
                continue  # A missing mount is not a host failure; it is simply not reported.
            values[f"host.disk.{i}.pct"] = pct
            worst = pct if worst is None else max(worst, pct)
        if worst is not None:
            values["host.disk_pct"] = worst
        if self.options.temperature:
            temp = _hottest()
            if temp is not None:
                values["host.temp_c"] = temp
        boot = psutil.boot_time()
        values["host.boot_time"] = format_ts(datetime.fromtimestamp(boot, timezone.utc))
        values["host.uptime_s"] = round(max(0.0, time.time() - boot), 1)
        try:
            values["host.load_1m"] = float(psutil.getloadavg()[0])
        except (AttributeError, OSError):
            pass
        if self.options.processes:
            running = set()
            for proc in psutil.process_iter(["name"]):
                name = proc.info.get("name")
                if name:
                    running.add(name)
            for name in self.options.processes:
                values[f"host.proc.{name_key(name)}.running"] = name in running
        return values

    async def _connect(self, target: str) -> float | None:
        host, _, port = target.rpartition(":")
        started = time.monotonic()
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)),
                                               self.options.connect_timeout)
        except (OSError, asyncio.TimeoutError):
            return None
        ms = round((time.monotonic() - started) * 1000.0, 3)
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return ms


def _hottest() -> float | None:
    sensors = getattr(psutil, "sensors_temperatures", None)
    if sensors is None:
        return None
    try:
        temps = sensors()
    except (OSError, RuntimeError):
        return None
    current = [t.current for entries in temps.values() for t in entries
               if t.current is not None and -40.0 < t.current < 150.0]
    return float(max(current)) if current else None
