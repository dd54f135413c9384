"""The collector contract every protocol follows (Netdata's lifecycle, NUT's never-abort rule).

    open()   prepare; never fails because a device is absent (the first poll reports that)
    poll()   one poll: a Reading, stale with a reason when the device did not answer;
             never raises because of a device
    close()  release ports and sockets; safe to call twice

The core loop owns timing: interval, timeout, backoff and staleness. A collector only polls.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, Mapping

from edge_agent.config import DeviceConfig
from edge_agent.reading import Reading, Value, utcnow


class Collector(ABC):
    """One device's poller."""

    kind = ""

    def __init__(self, device: DeviceConfig):
        self.device = device
        self.options: Any = device.options

    async def open(self) -> None:
        """Prepare to poll."""

    @abstractmethod
    async def poll(self) -> Reading:
        """Poll the device once."""

    async def close(self) -> None:
        """Release what open() and poll() took."""

    def ok(self, values: Mapping[str, Value], started: float | None = None) -> Reading:
        """Build a fresh reading; with `started` (time.monotonic()) add poll.latency_ms."""
        values = dict(values)
        if started is not None:
            values["poll.latency_ms"] = round((time.monotonic() - started) * 1000.0, 3)
        return Reading(self.device.id, self.kind, utcnow(), values)

    def stale(self, reason: str, values: Mapping[str, Value] | None = None) -> Reading:
        """Build a stale reading that says why the device did not answer."""
        return Reading.failed(self.device.id, self.kind, reason, values=values)
