"""Poll the register PC through psutil, off the event loop; TCP connects run on the loop."""

from __future__ import annotations

import asyncio
import re
import threading
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


# CPU use is measured over at least this many seconds: shorter windows hold too few clock ticks
# (100 a second per CPU) to mean anything.
MIN_CPU_WINDOW_S = 0.1


def cpu_busy(times) -> tuple[float, float]:
    """Return (busy, total) CPU seconds from psutil.cpu_times(), as psutil counts them."""
    total = sum(times)
    # On Linux guest time is already counted in user and nice.
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


class CpuMeter:
    """CPU use since this meter's last sample.

    psutil.cpu_percent(None) keeps one baseline for the whole process, so two host devices (or a
    probe) polling it would each see the other's window, and an unprimed first call returns 0.
    Each collector keeps its own baseline instead, and the first sample waits out a short window.
    """

    def __init__(self, times=psutil.cpu_times, clock=time.monotonic, sleep=time.sleep):
        self._times, self._clock, self._sleep = times, clock, sleep
        self._last: tuple[float, float, float] | None = None  # (at, busy, total)
        self.value: float | None = None

    def prime(self) -> None:
        """Take the baseline sample (blocking; run it off the loop)."""
        self._last = (self._clock(), *cpu_busy(self._times()))

    def wait_needed(self) -> float:
        """Seconds to wait before the first sample can be real (0 once there is a figure)."""
        if self.value is not None or self._last is None:
            return 0.0
        return max(0.0, MIN_CPU_WINDOW_S - (self._clock() - self._last[0]))

    def sample(self) -> float:
        """Return CPU use in percent since the last sample (blocking; run it off the loop).

        Callers on the event loop await wait_needed() first, so that this never sleeps there.
        """
        if self._last is None:
            self.prime()
        at = self._last[0]
        waited = self._clock() - at
        if waited < MIN_CPU_WINDOW_S:
            if self.value is not None:
                return self.value  # The previous window's figure is real; this one is too short.
            self._sleep(MIN_CPU_WINDOW_S - waited)
        now = self._clock()
        busy, total = cpu_busy(self._times())
        _, busy0, total0 = self._last
        if total - total0 <= 0:
            pct = self.value if self.value is not None else 0.0
        else:
            pct = min(100.0, max(0.0, 100.0 * (busy - busy0) / (total - total0)))
        self._last = (now, busy, total)
        self.value = round(pct, 1)
        return self.value


class HostCollector(Collector):
    """The register PC."""

    kind = "host"

    def __init__(self, device):
        super().__init__(device)
        self.cpu = CpuMeter()
        from edge_agent.collectors.host.smart import SmartReader

        self.smart = SmartReader(self.options.smart_device, self.options.smart_interval) \
            if self.options.smart else None

    async def open(self) -> None:
        # Take the CPU baseline now so that the first poll reports a real figure.
        await run_blocking(self.cpu.prime)

    async def poll(self) -> Reading:
        started = time.monotonic()
        # Wait out the first CPU window here rather than in a device-I/O thread.
        wait = self.cpu.wait_needed()
        if wait:
            await asyncio.sleep(wait)
        values = await run_blocking(self._sample)
        latencies = await asyncio.gather(*(self._connect(t) for t in self.options.targets))
        for i, ms in enumerate(latencies):
            values[f"host.net.{i}.latency_ms"] = ms
        if latencies:
            answered = [ms for ms in latencies if ms is not None]
            values["host.net.latency_ms"] = max(answered) if answered else None
        if self.smart is not None:
            # Read hourly; the last values go with every reading (a failing disk stays failing).
            await self.smart.read(time.monotonic())
            values.update(self.smart.values)
        problems = [v is None for v in latencies]
        problems += [v is False for k, v in values.items() if k.startswith("host.proc.")]
        values["device.status"] = "warning" if any(problems) else "ok"
        return self.ok(values, started)

    def _sample(self) -> dict:
        values: dict = {"host.cpu_pct": self.cpu.sample(),
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
            temp = hottest(_sensors())
            if temp is not None:
                values["host.temp_c"] = temp
            fan = slowest_fan(_fans())
            if fan is not None:
                values["host.fan_rpm"] = fan
        boot = psutil.boot_time()
        values["host.boot_time"] = format_ts(datetime.fromtimestamp(boot, timezone.utc))
        values["host.uptime_s"] = round(max(0.0, time.time() - boot), 1)
        try:
            values["host.load_1m"] = float(psutil.getloadavg()[0])
        except (AttributeError, OSError):
            pass
        if self.options.processes:
            running = process_names()
            for name in self.options.processes:
                values[f"host.proc.{name_key(name)}.running"] = name in running
        return values

    async def _connect(self, target: str) -> float | None:
        host, _, port = target.rpartition(":")
        started = time.monotonic()
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)),
                                               self.options.connect_timeout)
        except (OSError, asyncio.TimeoutError, ValueError):
            # ValueError: a host name the resolver refuses (such as a label over 63 characters).
            return None
        ms = round((time.monotonic() - started) * 1000.0, 3)
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return ms


# Listing processes reads /proc/<pid>/stat for every process (4 ms for 110 processes here), so
# host devices polled at nearly the same time share one listing this many seconds old at most.
PROCESS_LIST_MAX_AGE_S = 0.5
_process_lock = threading.Lock()
_process_cache: tuple[float, frozenset[str]] = (-1e9, frozenset())


def process_names() -> frozenset[str]:
    """Return the names of the running processes (blocking; run it off the loop)."""
    global _process_cache
    with _process_lock:
        at, names = _process_cache
        now = time.monotonic()
        if now - at > PROCESS_LIST_MAX_AGE_S:
            names = frozenset(p.info["name"] for p in psutil.process_iter(["name"])
                              if p.info.get("name"))
            _process_cache = (time.monotonic(), names)
        return names


def _sensors() -> dict:
    """Return psutil's temperature sensors, or {} where the platform has none."""
    sensors = getattr(psutil, "sensors_temperatures", None)
    if sensors is None:  # Windows and macOS builds of psutil.
        return {}
    try:
        return sensors() or {}
    except (OSError, RuntimeError):
        return {}


def hottest(temps: dict) -> float | None:
    """Return the hottest plausible reading of psutil's sensors_temperatures(), or None."""
    current = [t.current for entries in temps.values() for t in entries
               if isinstance(t.current, (int, float)) and -40.0 < t.current < 150.0]
    return round(float(max(current)), 1) if current else None


def _fans() -> dict:
    """Return psutil's fan sensors, or {} where the platform has none."""
    fans = getattr(psutil, "sensors_fans", None)
    if fans is None:
        return {}
    try:
        return fans() or {}
    except (OSError, RuntimeError):
        return {}


def slowest_fan(fans: dict) -> float | None:
    """Return the slowest plausible fan speed (rpm) of psutil's sensors_fans(), or None.

    A stopped fan (0 rpm) counts: it is the failure this reports."""
    current = [f.current for entries in fans.values() for f in entries
               if isinstance(f.current, (int, float)) and 0 <= f.current < 50_000]
    return float(min(current)) if current else None
