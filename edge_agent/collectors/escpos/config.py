"""The `[devices.escpos]` table."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge_agent.configschema import setting

TRANSPORTS = ("tcp", "serial", "usb")
_VIDPID = re.compile(r"[0-9A-Fa-f]{4}\Z")


def _check_hex_id(value: str) -> str | None:
    if value and not _VIDPID.match(value):
        return f"{value!r} is not 4 hex digits (such as 04b8)"
    return None


def _check_model(value: str) -> str | None:
    from edge_agent.collectors.escpos.models import MODELS

    if value not in MODELS:
        return f"unknown model {value!r}; known: {', '.join(MODELS)}"
    return None


@dataclass(frozen=True)
class EscposConfig:
    """How to reach one ESC/POS receipt printer and how to read its status."""

    transport: str = setting("tcp", doc="How the printer is attached: tcp, serial or usb.",
                             choices=TRANSPORTS)
    host: str = setting("", doc="Printer address for tcp (a name or an IP).")
    port: int = setting(9100, doc="TCP port for tcp (raw printing port).", min=1, max=65535)
    device: str = setting("", doc="Serial port for serial, such as /dev/ttyS0 or "
                                  "/dev/serial/by-id/...")
    baudrate: int = setting(9600, doc="Serial speed in bit/s.", min=50, max=4_000_000)
    vid: str = setting("", doc="USB vendor id for usb, 4 hex digits (04b8 is Epson).",
                       check=_check_hex_id)
    pid: str = setting("", doc="USB product id for usb, 4 hex digits.", check=_check_hex_id)
    reply_timeout: float = setting(1.0, doc="Seconds to wait for each status reply; keep four "
                                            "of them under the device's timeout.",
                                   gt=0, max=30)
    connect_timeout: float = setting(2.0, doc="Seconds a TCP connect or port open may take.",
                                     gt=0, max=60)
    model: str = setting("epson-tm", doc="Model family (see the collector's README): epson-tm, "
                                         "epson-tm-legacy, epson-tm-impact, bixolon, citizen, "
                                         "star-escpos, generic.",
                         check=_check_model)
    connection: str = setting("auto", doc="auto: a TCP connection lasts one poll (printers "
                                          "take one client at a time, the POS must print); "
                                          "a serial or USB port stays open. per_poll or kept "
                                          "force one way.",
                              choices=("auto", "per_poll", "kept"))
    identify: bool = setting(True, doc="Ask the model and firmware with GS I once (again after "
                                       "a failed poll), where the model answers it.")
    wake: bool = setting(True, doc="When the printer is silent, send the model's wake byte once "
                                   "to tell power save (asleep) from a hang (offline).")
    counters: bool = setting(True, doc="Read the maintenance counters (GS g 2: paper fed, "
                                       "autocuts, operating hours) where the model answers "
                                       "them: on the first poll and every counters_interval.")
    counters_interval: float = setting(3600.0, doc="Seconds between maintenance-counter reads.",
                                       min=60, max=7 * 86400)
    drawer_open_when: str = setting("low", doc="Level of drawer connector pin 3 that means "
                                               "open: low, high, or none to not report it.",
                                    choices=("low", "high", "none"))

    def where(self) -> str:
        """Say where the printer is, for logs and reasons."""
        if self.transport == "tcp":
            return f"{self.host}:{self.port}"
        if self.transport == "serial":
            return self.device
        return f"usb {self.vid}:{self.pid}"

    def cross_check(self) -> list[tuple[str, str]]:
        """Return (key, message) for settings the chosen transport needs but lacks."""
        need = {"tcp": ("host",), "serial": ("device",), "usb": ("vid", "pid")}[self.transport]
        return [(k, f"required when transport = {self.transport!r}") for k in need
                if not getattr(self, k)]
