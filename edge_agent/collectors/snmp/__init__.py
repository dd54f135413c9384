"""Network printers over SNMP: status, error state, supplies, trays, page counter, alerts."""

from __future__ import annotations

from urllib.parse import unquote

from edge_agent.collectors import query
from edge_agent.collectors.snmp.config import SnmpConfig as Config, problems
from edge_agent.errors import ConfigError, Problem

SCHEMES = ("snmp",)
MATURITY = "beta"
CAPABILITIES = (
    "device.status", "device.hr_status", "device.description", "device.object_id",
    "device.vendor", "device.model", "device.firmware", "device.serial", "device.uptime_s",
    "printer.mib", "printer.status", "printer.error_state", "printer.errors", "printer.paper",
    "printer.jam", "printer.online", "printer.cover", "printer.error", "printer.page_count",
    "supply.<n>.description", "supply.<n>.type", "supply.<n>.class", "supply.<n>.level",
    "supply.<n>.capacity", "supply.<n>.level_pct", "supply.<n>.level_state",
    "tray.<n>.name", "tray.<n>.level", "tray.<n>.capacity", "tray.<n>.level_pct",
    "tray.<n>.level_state", "tray.<n>.status",
    "alert.count", "alert.<n>.severity", "alert.<n>.code", "alert.<n>.description",
    "poll.latency_ms", "printer.toner", "printer.waste", "printer.service_requested",
    "printer.pages_per_day", "supply.<n>.pct_per_day", "supply.<n>.days_to_empty",
    "printer.jam_count", "printer.cover_opens", "printer.service_requests",
)
_URL_KEYS = ("version", "user", "auth", "auth_key", "priv", "priv_key", "context", "timeout",
             "retries", "supplies_every", "identity_every")


def create(device):
    """Return the SNMP printer collector for a device."""
    from edge_agent.collectors.snmp.collector import SnmpCollector

    return SnmpCollector(device)


def config_from_url(parts) -> Config:
    """Build the table from `snmp://COMMUNITY@HOST:PORT?version=3&user=..&auth=SHA&...`."""
    from edge_agent.configschema import load

    if not parts.hostname:
        raise ConfigError(Problem("url", "snmp:// needs a host, such as snmp://public@10.0.0.5"))
    data: dict[str, object] = {"host": parts.hostname}
    try:
        port = parts.port
    except ValueError as err:
        raise ConfigError(Problem("url.port", str(err))) from err
    if port is not None:
        data["port"] = port
    if parts.password is not None:
        raise ConfigError(Problem("url", "snmp:// takes COMMUNITY@HOST; give SNMPv3 keys as "
                                         "?user=..&auth_key=..&priv_key=.."))
    if parts.username:
        data["community"] = unquote(parts.username)
    q = query(parts)
    for key in _URL_KEYS:
        if key not in q:
            continue
        text = q.pop(key)
        if key in ("timeout",):
            try:
                data[key] = float(text)
            except ValueError:
                raise ConfigError(Problem(f"url.{key}",
                                          f"expected a number, got {text!r}")) from None
        elif key in ("retries", "supplies_every", "identity_every"):
            if not text.lstrip("-").isdigit():
                raise ConfigError(Problem(f"url.{key}", f"expected an integer, got {text!r}"))
            data[key] = int(text)
        elif key in ("auth", "priv"):
            data[key] = text.upper()
        else:
            data[key] = text
    if q:
        raise ConfigError([Problem(f"url.{k}", "unknown parameter") for k in q])
    config = load(Config, data, "url")
    wrong = problems(config, "url")
    if wrong:
        raise ConfigError(wrong)
    return config
