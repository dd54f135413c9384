"""The core loop: one asyncio task per device, with its interval, jitter, timeout and backoff.

A device that hangs or raises only ever delays itself: each poll runs under its own timeout, a
failure becomes a stale reading, and a device that keeps failing is polled less and less often
(exponential backoff up to `backoff_max`). The scheduler never does device I/O itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable

from edge_agent import blocking, collectors
from edge_agent.collectors.base import Collector
from edge_agent.config import DeviceConfig
from edge_agent.errors import DeviceError, DeviceTimeout
from edge_agent.reading import Reading

log = logging.getLogger(__name__)

# The first poll of each device is spread over at most this many seconds, so a store with 50
# devices does not poll them all in the same instant, yet answers soon after start.
FIRST_POLL_SPREAD_S = 0.2
# Seconds a collector's close() may take.
CLOSE_GRACE_S = 1.0


@dataclass
class DeviceState:
    """What the loop knows of one device between polls."""

    device: DeviceConfig
    failures: int = 0
    timeouts: int = 0
    polls: int = 0
    last: Reading | None = None
    last_good: Reading | None = None
    last_good_at: float | None = None  # time.monotonic() of the last good reading
    next_delay: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def is_stale(self, now: float | None = None) -> bool:
        """True when the last good reading is older than the device's max_age (or absent)."""
        now = time.monotonic() if now is None else now
        return self.last_good_at is None or now - self.last_good_at > self.device.stale_after


Sink = Callable[[Reading, DeviceState], None]
Factory = Callable[[DeviceConfig], Collector]


def default_factory(device: DeviceConfig) -> Collector:
    """Create the collector of a device's kind."""
    return collectors.get(device.kind).create(device)


def backoff_delay(device: DeviceConfig, failures: int, rand: random.Random | None = None) -> float:
    """Seconds until the next poll: the interval, doubled per consecutive failure, capped, jittered.

    The cap is `backoff_max` (or the interval, if that is longer): jitter never takes a failing
    device's wait past it.
    """
    cap = max(device.backoff_max, device.interval)
    base = device.interval
    if failures > 0:
        base = min(device.interval * 2.0 ** min(failures, 40), cap)
    spread = device.jitter * base
    delay = base + (rand or random).uniform(-spread, spread)
    return max(0.0, min(delay, cap) if failures > 0 else delay)


class DeviceRunner:
    """Poll one device forever, handing each reading to the sink."""

    def __init__(self, device: DeviceConfig, sink: Sink, factory: Factory = default_factory,
                 after: asyncio.Task | None = None):
        self.state = DeviceState(device)
        self.sink = sink
        self.factory = factory
        self.collector: Collector | None = None
        # The task of this device's previous runner (a reload changed it): wait for it to close
        # its port before opening ours, so the two never hold one serial port at once.
        self.after = after
        self._opened = False
        self.wake = asyncio.Event()

    @property
    def device(self) -> DeviceConfig:
        return self.state.device

    async def run(self) -> None:
        """Open the collector, then poll at the device's pace until cancelled."""
        blocking.owner(self.device.id)
        if self.after is not None and not self.after.done():
            await asyncio.wait([self.after], timeout=CLOSE_GRACE_S + 1.0)
        self.after = None
        try:
            await self.open()
            await asyncio.sleep(random.uniform(0, min(FIRST_POLL_SPREAD_S,
                                                      self.device.interval * self.device.jitter)))
            while True:
                reading = await self.poll_once()
                try:
                    self.sink(reading, self.state)
                except Exception:
                    log.exception("sink failed", extra={"device": self.device.id})
                self.state.next_delay = backoff_delay(self.device, self.state.failures)
                try:  # a remote "repoll" command wakes the runner early (edge_agent/control)
                    await asyncio.wait_for(self.wake.wait(), self.state.next_delay)
                except asyncio.TimeoutError:
                    pass
                self.wake.clear()
        finally:
            await self._close()

    async def open(self) -> None:
        """Create and open the collector; a failure is logged and retried at the next poll."""
        dev = self.device
        if self.collector is None:
            try:
                if self.factory is default_factory:
                    # Import the protocol library (pysnmp takes ~0.4 s) on a thread, so that it
                    # does not hold up every other device's first poll on the event loop.
                    await asyncio.to_thread(collectors.preload, dev.kind)
                self.collector = self.factory(dev)
            except Exception as err:  # A collector that cannot even be built: report, retry.
                if self.state.failures == 0:
                    log.error("collector cannot start", extra={
                        "device": dev.id, "error": f"{type(err).__name__}: {err}"})
                return
        if self._opened:
            return
        # open() must not fail because a device is absent; if it fails or hangs anyway, poll()
        # reports the device, so one attempt is enough.
        self._opened = True
        try:
            await blocking.within(self.collector.open(), dev.timeout)
        except asyncio.TimeoutError:
            log.warning("device open timed out", extra={"device": dev.id})
        except Exception as err:
            log.warning("device open failed", extra={"device": dev.id,
                                                     "error": f"{type(err).__name__}: {err}"})

    async def poll_once(self) -> Reading:
        """Poll once under the device's timeout; turn every failure into a stale reading."""
        st, dev = self.state, self.device
        st.polls += 1
        if self.collector is None:
            await self.open()
        if self.collector is None:
            reading = Reading.failed(dev.id, dev.kind, "collector could not be created",
                                     values={"device.status": "unknown"})
        else:
            try:
                reading = await blocking.within(self.collector.poll(), dev.timeout)
            except asyncio.TimeoutError:
                st.timeouts += 1
                reading = Reading.failed(dev.id, dev.kind, f"no answer within {dev.timeout:g} s",
                                         values={"device.status": "offline"})
            except asyncio.CancelledError:
                raise
            except DeviceError as err:
                # A collector should return this as a stale reading itself; accept it anyway.
                if isinstance(err, DeviceTimeout):
                    st.timeouts += 1
                reading = Reading.failed(dev.id, dev.kind, str(err) or type(err).__name__,
                                         values={"device.status": "offline"})
            except Exception as err:
                # poll() must not raise; if it does, that is a bug in the collector, not the
                # device. The traceback is logged once per run of failures, not every poll.
                if st.failures == 0:
                    log.exception("collector raised", extra={"device": dev.id})
                reading = Reading.failed(dev.id, dev.kind,
                                         f"collector error: {type(err).__name__}: {err}",
                                         values={"device.status": "unknown"})
            if not isinstance(reading, Reading):
                reading = Reading.failed(dev.id, dev.kind,
                                         f"collector error: poll() returned "
                                         f"{type(reading).__name__}, not a Reading",
                                         values={"device.status": "unknown"})
        was_failing = st.failures > 0
        if reading.stale:
            st.failures += 1
            if st.failures == 1:
                log.warning("device not answering", extra={"device": dev.id,
                                                          "reason": reading.reason})
        else:
            if was_failing:
                log.info("device answering again", extra={"device": dev.id,
                                                          "after_failures": st.failures})
            st.failures = 0
            st.last_good = reading
            st.last_good_at = time.monotonic()
        values = dict(reading.values)
        values["poll.errors"] = st.failures
        values["poll.timeouts"] = st.timeouts
        reading = Reading(reading.device, reading.kind, reading.ts, values, reading.stale,
                          reading.reason)
        st.last = reading
        return reading

    async def _close(self) -> None:
        if self.collector is None:
            return
        try:
            await blocking.within(self.collector.close(), CLOSE_GRACE_S)
        except (Exception, asyncio.TimeoutError, asyncio.CancelledError):
            log.warning("device close failed", extra={"device": self.device.id})


class Scheduler:
    """Run one DeviceRunner task per enabled device; apply new device lists without a restart."""

    def __init__(self, sink: Sink, factory: Factory = default_factory):
        self.sink = sink
        self.factory = factory
        self.runners: dict[str, tuple[DeviceRunner, asyncio.Task]] = {}

    def apply(self, devices: tuple[DeviceConfig, ...]) -> dict[str, list[str]]:
        """Start added devices, stop removed ones, restart changed ones; return what changed."""
        wanted = {d.id: d for d in devices if d.enabled}
        changes: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
        previous: dict[str, asyncio.Task] = {}
        for dev_id in list(self.runners):
            runner, task = self.runners[dev_id]
            if dev_id not in wanted:
                task.cancel()
                del self.runners[dev_id]
                changes["removed"].append(dev_id)
            elif wanted[dev_id] != runner.device:
                task.cancel()
                del self.runners[dev_id]
                previous[dev_id] = task
                changes["changed"].append(dev_id)
        for dev_id, device in wanted.items():
            if dev_id not in self.runners:
                runner = DeviceRunner(device, self.sink, self.factory, after=previous.get(dev_id))
                task = asyncio.get_running_loop().create_task(runner.run(), name=f"device:{dev_id}")
                self.runners[dev_id] = (runner, task)
                if dev_id not in changes["changed"]:
                    changes["added"].append(dev_id)
        return changes

    def states(self) -> list[DeviceState]:
        """Return every running device's state."""
        return [runner.state for runner, _ in self.runners.values()]

    async def stop(self, grace: float = 2.0) -> None:
        """Cancel every device task and wait (at most `grace` seconds) for them to close."""
        tasks = [task for _, task in self.runners.values()]
        self.runners.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
