"""Serial bar code scanners: scans and malformed frames counted, heartbeats, reconnects."""

from __future__ import annotations

from edge_agent.collectors import query
from edge_agent.collectors.scanner.config import ScannerConfig as Config
from edge_agent.errors import ConfigError, Problem

SCHEMES = ("scanner+serial",)
MATURITY = "beta"
CAPABILITIES = (
    "device.status", "scanner.connected", "scanner.reads", "scanner.decode_errors",
    "scanner.reconnects", "scanner.last_scan_age_s", "scanner.heartbeat", "poll.latency_ms",
)

# Probe URL parameters and the type each is converted to before the config checks it.
_URL_TYPES = {"baudrate": int, "suffix": str, "symbology": str, "max_frame": int,
              "heartbeat": str, "heartbeat_interval": float, "heartbeat_timeout": float}


def create(device):
    """Return the scanner collector for a device."""
    from edge_agent.collectors.scanner.collector import ScannerCollector

    return ScannerCollector(device)


def config_from_url(parts) -> Config:
    """Build the scanner table from `scanner+serial:///dev/ttyUSB0?baudrate=9600&heartbeat=zebra`."""
    from edge_agent.configschema import load

    if parts.netloc:
        raise ConfigError(Problem("url", "a serial port URL has no host: use "
                                         "scanner+serial:///dev/ttyUSB0 (three slashes)"))
    if not parts.path:
        raise ConfigError(Problem("url.port", "required: scanner+serial:///dev/ttyUSB0"))
    data: dict[str, object] = {"port": parts.path}
    problems = []
    for key, value in query(parts).items():
        convert = _URL_TYPES.get(key)
        if convert is None:
            problems.append(Problem(f"url.{key}", "unknown parameter"))
            continue
        try:
            data[key] = convert(value)
        except ValueError:
            problems.append(Problem(f"url.{key}", f"expected {convert.__name__}, got {value!r}"))
    if problems:
        raise ConfigError(problems)
    return load(Config, data, "url")
