"""Read the USB devices the kernel lists under sysfs: ids, serial number and the node each has."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEVICES = "bus/usb/devices"

# Where a USB interface shows the node a driver gave it, one row each: (glob under the interface
# folder, the /dev path it names). usb-serial: 1-1:1.0/ttyUSB0 (and .../tty/ttyUSB0); cdc-acm:
# 1-1:1.0/tty/ttyACM0; usblp: 1-1:1.0/usbmisc/lp0 (older kernels: usb/lp0); HID: hidraw.
NODES: tuple[tuple[str, str], ...] = (
    ("tty/tty*", "/dev/{name}"),
    ("ttyUSB*", "/dev/{name}"),
    ("usbmisc/lp*", "/dev/usb/{name}"),
    ("usb/lp*", "/dev/usb/{name}"),
    ("hidraw/hidraw*", "/dev/{name}"),
)


@dataclass(frozen=True)
class UsbDevice:
    """One USB device as sysfs shows it."""

    path: str  # bus path such as 1-1.2: the physical port, stable across replugs
    vendor_id: str
    product_id: str
    serial: str | None = None
    manufacturer: str | None = None
    product: str | None = None
    node: str | None = None


def _attr(folder: Path, name: str, limit: int = 256) -> str | None:
    try:
        with open(folder / name, "rb") as f:
            raw = f.read(limit)
    except OSError:
        return None
    text = raw.decode("utf-8", "replace").strip()
    # Descriptor strings come from the device: keep printable characters only.
    text = "".join(ch for ch in text if ch.isprintable())
    return text or None


def _node(folder: Path) -> str | None:
    for interface in sorted(folder.glob("*:*")):
        for pattern, dev in NODES:
            for found in sorted(interface.glob(pattern)):
                return dev.format(name=found.name)
    return None


def scan(root: str | Path = "/sys") -> list[UsbDevice]:
    """Return every USB device under root (the sysfs mount), sorted by bus path."""
    base = Path(root) / DEVICES
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return []
    out = []
    for entry in entries:
        if ":" in entry.name:
            continue  # an interface, not a device
        vid, pid = _attr(entry, "idVendor", 16), _attr(entry, "idProduct", 16)
        if vid is None or pid is None:
            continue
        out.append(UsbDevice(entry.name, vid.lower(), pid.lower(), _attr(entry, "serial"),
                             _attr(entry, "manufacturer"), _attr(entry, "product"), _node(entry)))
    return out


def matches(device: UsbDevice, vendor_id: str, product_id: str = "", serial: str = "") -> bool:
    """True when a device has the configured ids (and serial, if one is configured)."""
    return (device.vendor_id == vendor_id.lower()
            and (not product_id or device.product_id == product_id.lower())
            and (not serial or device.serial == serial))
