"""The `[devices.usb]` table."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge_agent.configschema import setting

_HEX4 = re.compile(r"[0-9a-fA-F]{4}\Z")


def _check_id(value: str) -> str | None:
    return None if _HEX4.match(value) else f"{value!r} is not 4 hex digits (such as 0c2e)"


def _check_optional_id(value: str) -> str | None:
    return None if value == "" else _check_id(value)


@dataclass(frozen=True)
class UsbConfig:
    """A USB device whose presence to watch, by vendor and product id (as `lsusb` shows them)."""

    vendor_id: str = setting(doc="USB vendor id, 4 hex digits (0c2e Honeywell, 05e0 Zebra).",
                             check=_check_id, example="0c2e")
    product_id: str = setting("", doc="USB product id, 4 hex digits; empty matches any product.",
                              check=_check_optional_id)
    serial: str = setting("", doc="USB serial number to match; empty matches any.")
