"""ESC/POS receipt printers on TCP 9100, a serial port or USB: paper, cover, cutter, errors."""

from __future__ import annotations

from edge_agent.collectors import query
from edge_agent.collectors.escpos.config import EscposConfig as Config
from edge_agent.errors import ConfigError, Problem

SCHEMES = ("escpos+tcp", "escpos+serial", "escpos+usb")
MATURITY = "beta"
CAPABILITIES = (
    "device.status", "device.model", "device.firmware", "printer.online", "printer.cover",
    "printer.paper", "printer.cutter", "printer.error", "printer.drawer", "poll.latency_ms",
    "printer.mechanical", "printer.overheat", "printer.cutter_errors", "printer.error_count",
    "printer.overheats", "printer.head_km", "printer.cut_count", "printer.operating_hours",
    "printer.counter.<n>",
)

# Query parameters a probe URL may carry, with the type each is read as.
_PARAMS = {"baudrate": int, "reply_timeout": float, "connect_timeout": float, "model": str,
           "identify": bool, "wake": bool, "drawer_open_when": str, "connection": str}


def create(device):
    """Return the ESC/POS collector for a device."""
    from edge_agent.collectors.escpos.collector import EscposCollector

    return EscposCollector(device)


def _value(key: str, text: str, problems: list[Problem]) -> object:
    kind = _PARAMS[key]
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
    else:
        try:
            return kind(text)
        except ValueError:
            pass
    problems.append(Problem(f"url.{key}", f"{text!r} is not {kind.__name__}"))
    return None


def config_from_url(parts) -> Config:
    """Build the table from `escpos+tcp://HOST:PORT`, `escpos+serial:///dev/ttyS0?baudrate=19200`
    or `escpos+usb://04b8:0e15`, each with optional ?model=&reply_timeout=&identify=&wake=."""
    from edge_agent.configschema import load

    problems: list[Problem] = []
    transport = parts.scheme.split("+", 1)[1]
    data: dict[str, object] = {"transport": transport}
    if transport == "tcp":
        try:
            port = parts.port
        except ValueError:
            port = None
            problems.append(Problem("url", f"{parts.netloc!r} is not HOST:PORT"))
        data["host"] = parts.hostname or ""
        if port is not None:
            data["port"] = port
    elif transport == "serial":
        data["device"] = (parts.netloc + parts.path) if parts.netloc else parts.path
    else:
        vid, sep, pid = parts.netloc.partition(":")
        if not sep:
            problems.append(Problem("url", f"{parts.netloc!r} is not VID:PID (such as 04b8:0e15)"))
        data["vid"], data["pid"] = vid, pid
    for key, text in query(parts).items():
        if key not in _PARAMS:
            problems.append(Problem(f"url.{key}", "unknown parameter"))
            continue
        value = _value(key, text, problems)
        if value is not None:
            data[key] = value
    if problems:
        raise ConfigError(problems)
    return load(Config, data, "url")
