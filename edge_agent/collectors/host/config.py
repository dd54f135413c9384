"""The `[devices.host]` table."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.configschema import setting


def _check_targets(targets: tuple[str, ...]) -> str | None:
    for t in targets:
        host, sep, port = t.rpartition(":")
        if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            return f"{t!r} is not HOST:PORT"
    return None


@dataclass(frozen=True)
class HostConfig:
    """What to watch on the register PC."""

    disks: tuple[str, ...] = setting(("/",), doc="Mount points (or drives) whose use to report.")
    targets: tuple[str, ...] = setting(
        (), doc="HOST:PORT to TCP-connect to each poll, such as the payment gateway.",
        check=_check_targets)
    connect_timeout: float = setting(2.0, doc="Seconds a TCP connect may take.", gt=0, max=60)
    processes: tuple[str, ...] = setting(
        (), doc="Process names that must be running, such as the POS application.")
    temperature: bool = setting(True, doc="Report the hottest temperature sensor and the "
                                          "slowest fan, if the machine exposes them.")
    smart: bool = setting(True, doc="Report the system disk's health with smartctl --json "
                                    "where smartmontools is installed and the agent may read "
                                    "the disk (docs/service.md).")
    smart_device: str = setting("/dev/sda", doc="Disk node smartctl reads, such as /dev/sda or "
                                                "/dev/nvme0.")
    smart_interval: float = setting(3600.0, doc="Seconds between disk-health reads.",
                                    min=60, max=7 * 86400)
