"""USB devices by vendor:product id: present or not, connects, disconnects, the node they have."""

from __future__ import annotations

from edge_agent.collectors import query
from edge_agent.collectors.usb.config import UsbConfig as Config
from edge_agent.errors import ConfigError, Problem

SCHEMES = ("usb",)
MATURITY = "beta"
CAPABILITIES = (
    "device.status", "device.vendor", "device.model", "device.serial", "usb.present",
    "usb.connects", "usb.disconnects", "usb.node", "usb.path", "poll.latency_ms",
)


def create(device):
    """Return the USB presence collector for a device."""
    from edge_agent.collectors.usb.collector import UsbCollector

    return UsbCollector(device)


def config_from_url(parts) -> Config:
    """Build the usb table from `usb://0c2e:0b61` or `usb://0c2e?serial=21012B4F52`."""
    from edge_agent.configschema import load

    vid, _, pid = parts.netloc.partition(":")
    if not vid:
        raise ConfigError(Problem("url", "expected usb://VID:PID, such as usb://0c2e:0b61"))
    if parts.path not in ("", "/"):
        raise ConfigError(Problem("url", f"unexpected path {parts.path!r}: use usb://VID:PID"))
    data: dict[str, object] = {"vendor_id": vid, "product_id": pid}
    q = query(parts)
    if "serial" in q:
        data["serial"] = q.pop("serial")
    if q:
        raise ConfigError([Problem(f"url.{k}", "unknown parameter") for k in q])
    return load(Config, data, "url")
