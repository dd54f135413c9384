"""The `[devices.scanner]` table."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.configschema import setting

BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


@dataclass(frozen=True)
class ScannerConfig:
    """A serial bar code scanner (RS-232 or a USB virtual COM port)."""

    port: str = setting(doc="Serial port; prefer the stable /dev/serial/by-id/ name.",
                        check=lambda v: None if v.strip() else "must not be empty",
                        example="/dev/serial/by-id/usb-Honeywell_Imaging_Xenon_1902-if00")
    baudrate: int = setting(9600, doc="Line speed the scanner is set to (8N1).", choices=BAUDRATES)
    suffix: str = setting("cr", doc="Suffix the scanner appends to each bar code.",
                          choices=("cr", "lf", "crlf"))
    symbology: str = setting("any", doc="Extra check of each frame: any (printable text only) or "
                                        "ean_upc (digits with a valid EAN/UPC check digit).",
                             choices=("any", "ean_upc"))
    max_frame: int = setting(512, doc="Longest frame in bytes; longer ones count as malformed.",
                             min=16, max=65536)
    heartbeat: str = setting("none", doc="Ask the scanner if it is alive: none, honeywell "
                                         "(SYN M '?' menu query) or zebra (SSI REQUEST_REVISION; "
                                         "the scanner must be in SSI mode).",
                             choices=("none", "honeywell", "zebra"))
    heartbeat_interval: float = setting(30.0, doc="Seconds between heartbeats.", gt=0, max=3600)
    heartbeat_timeout: float = setting(2.0, doc="Seconds a heartbeat may take to be answered.",
                                       gt=0, max=60)
