"""Watch one USB device's presence in sysfs: connects, disconnects, and the node it has now."""

from __future__ import annotations

import logging
import os
import threading
import time

from edge_agent.blocking import run_blocking
from edge_agent.collectors.base import Collector
from edge_agent.collectors.usb import sysfs
from edge_agent.reading import Reading

log = logging.getLogger(__name__)

# Test-only: tests point the collector at a fake sysfs tree, since no USB bus exists there.
SYSFS_ENV = "EDGE_AGENT_TEST_SYSFS"


def default_root() -> str:
    """Return the sysfs mount to read: /sys, unless a test set EDGE_AGENT_TEST_SYSFS."""
    return os.environ.get(SYSFS_ENV) or "/sys"


class UdevCounter:
    """Count udev add/remove events for the configured ids between polls (pyudev, optional).

    Polling sysfs misses a device pulled and plugged back between two polls; the kernel's
    netlink events do not. Without pyudev or udev this stays off and sysfs alone counts.
    """

    def __init__(self, vendor_id: str, product_id: str):
        self.want = (int(vendor_id, 16), int(product_id, 16) if product_id else None)
        self.lock = threading.Lock()
        self.adds = 0
        self.removes = 0
        self.observer = None

    def start(self) -> bool:
        try:
            import pyudev
        except ImportError:
            return False
        try:
            monitor = pyudev.Monitor.from_netlink(pyudev.Context())
            monitor.filter_by("usb", device_type="usb_device")
            self.observer = pyudev.MonitorObserver(monitor, callback=self._event)
            self.observer.start()
        except Exception as err:  # No netlink in a container, no libudev: sysfs still works.
            log.info("udev events unavailable; counting from sysfs only",
                     extra={"error": f"{type(err).__name__}: {err}"})
            self.observer = None
            return False
        return True

    def _event(self, device) -> None:
        # PRODUCT is "vid/pid/bcdDevice" in hex without leading zeros, present on remove too.
        try:
            vid, pid = (int(x, 16) for x in str(device.get("PRODUCT", "")).split("/")[:2])
        except ValueError:
            return
        if vid != self.want[0] or (self.want[1] is not None and pid != self.want[1]):
            return
        with self.lock:
            if device.action == "add":
                self.adds += 1
            elif device.action == "remove":
                self.removes += 1

    def take(self) -> tuple[int, int]:
        """Return and reset the events counted since the last call."""
        with self.lock:
            counts = (self.adds, self.removes)
            self.adds = self.removes = 0
        return counts

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.send_stop()
            self.observer = None


class UsbCollector(Collector):
    """Presence of one USB device (by vendor:product id and optional serial)."""

    kind = "usb"

    def __init__(self, device, sysfs_root: str | None = None):
        super().__init__(device)
        self.root = sysfs_root or default_root()
        self.connects = 0
        self.disconnects = 0
        self.seen: set[str] | None = None  # bus paths present at the last look
        self.udev: UdevCounter | None = None

    @property
    def wanted(self) -> str:
        o = self.options
        return f"{o.vendor_id}:{o.product_id or '*'}" + (f" serial {o.serial}" if o.serial else "")

    async def open(self) -> None:
        if self.root == "/sys":
            udev = UdevCounter(self.options.vendor_id, self.options.product_id)
            if await run_blocking(udev.start):
                self.udev = udev
        await self._look()  # The devices present at start are the baseline, not connects.

    async def _look(self) -> list[sysfs.UsbDevice]:
        o = self.options
        found = [d for d in await run_blocking(sysfs.scan, self.root)
                 if sysfs.matches(d, o.vendor_id, o.product_id, o.serial)]
        now = {d.path for d in found}
        adds, removes = self.udev.take() if self.udev is not None else (0, 0)
        if self.seen is not None:
            added, removed = len(now - self.seen), len(self.seen - now)
            if added or removed:
                log.info("usb device change", extra={"device": self.device.id, "added": added,
                                                     "removed": removed, "usb": self.wanted})
            self.connects += max(added, adds)
            self.disconnects += max(removed, removes)
        self.seen = now
        return found

    async def poll(self) -> Reading:
        started = time.monotonic()
        found = await self._look()
        values = {"usb.present": bool(found), "usb.connects": self.connects,
                  "usb.disconnects": self.disconnects,
                  "usb.node": found[0].node if found else None,
                  "usb.path": found[0].path if found else None}
        if not found:
            values["device.status"] = "offline"
            return self.stale(f"no USB device {self.wanted} on the bus", values)
        first = found[0]
        for name, value in (("device.vendor", first.manufacturer), ("device.model", first.product),
                            ("device.serial", first.serial)):
            if value:
                values[name] = value
        values["device.status"] = "ok"
        return self.ok(values, started)

    async def close(self) -> None:
        if self.udev is not None:
            self.udev.stop()
            self.udev = None
