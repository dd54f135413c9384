"""Fake collectors for the core loop's tests, injected through the Scheduler's `factory`.

They stand in for devices that cannot be made to misbehave on demand here (a device that hangs
forever, a collector with a bug); the host collector and the real agent process are tested
against the real machine elsewhere.
"""

from __future__ import annotations

import asyncio
import threading

from edge_agent.blocking import run_blocking
from edge_agent.collectors.base import Collector
from edge_agent.config import DeviceConfig


class Counting(Collector):
    """Answers every poll at once and counts its polls."""

    kind = "host"

    def __init__(self, device: DeviceConfig):
        super().__init__(device)
        self.polls = 0

    async def poll(self):
        self.polls += 1
        return self.ok({"device.status": "ok"})


class ThreadCounting(Counting):
    """Answers through the blocking pool, as a serial or psutil collector does."""

    async def poll(self):
        await run_blocking(lambda: None)
        return await super().poll()


class Scripted(Collector):
    """Answers stale or fresh as a list of booleans says (True = fresh), then fresh forever."""

    kind = "host"

    def __init__(self, device: DeviceConfig, script: list[bool]):
        super().__init__(device)
        self.script = list(script)

    async def poll(self):
        fresh = self.script.pop(0) if self.script else True
        if fresh:
            return self.ok({"device.status": "ok"})
        return self.stale("no answer", {"device.status": "offline"})


class HungAsync(Collector):
    """Never answers: its poll awaits an event nobody sets."""

    kind = "host"

    def __init__(self, device: DeviceConfig):
        super().__init__(device)
        self.started = 0
        self.returned = 0

    async def poll(self):
        self.started += 1
        try:
            await asyncio.Event().wait()
        finally:
            self.returned += 1


class HungThread(Collector):
    """Blocks a device-I/O thread until `release` is set (the test sets it when done)."""

    kind = "host"

    def __init__(self, device: DeviceConfig, release: threading.Event):
        super().__init__(device)
        self.release = release
        self.entered = 0

    def _block(self):
        self.entered += 1
        self.release.wait()

    async def poll(self):
        await run_blocking(self._block)
        return self.ok({"device.status": "ok"})


class Raising(Collector):
    """A collector with a bug: poll() raises."""

    kind = "host"

    async def poll(self):
        raise ZeroDivisionError("division by zero in the collector")
