"""The register PC itself: CPU, memory, disks, temperatures, uptime, reachability, processes."""

from __future__ import annotations

from edge_agent.collectors.host.config import HostConfig as Config
from edge_agent.errors import ConfigError, Problem
from edge_agent.collectors import query

SCHEMES = ("host",)
MATURITY = "stable"
CAPABILITIES = (
    "device.status", "host.cpu_pct", "host.mem_pct", "host.swap_pct", "host.disk_pct",
    "host.disk.<n>.pct", "host.temp_c", "host.uptime_s", "host.boot_time", "host.load_1m",
    "host.net.latency_ms", "host.net.<n>.latency_ms", "host.proc.<n>.running",
    "poll.latency_ms", "host.fan_rpm", "host.smart.passed", "host.smart.reallocated",
    "host.smart.pending", "host.smart.uncorrectable", "host.smart.crc_errors",
    "host.smart.media_errors", "host.smart.percentage_used", "host.smart.power_on_hours",
    "host.smart.temp_c",
)


def create(device):
    """Return the host collector for a device."""
    from edge_agent.collectors.host.collector import HostCollector

    return HostCollector(device)


def config_from_url(parts) -> Config:
    """Build the host table from `host://?disks=/,/var&targets=gw:443&processes=pos`."""
    from edge_agent.configschema import load

    q = query(parts)
    data: dict[str, object] = {}
    for key in ("disks", "targets", "processes"):
        if key in q:
            data[key] = [v for v in q.pop(key).split(",") if v]
    if "temperature" in q:
        data["temperature"] = q.pop("temperature").lower() in ("1", "true", "yes")
    if q:
        raise ConfigError([Problem(f"url.{k}", "unknown parameter") for k in q])
    return load(Config, data, "url")
