"""The shared vocabulary: every dotted reading name, its type and its allowed values.

Collectors map their protocol onto these names (as Network UPS Tools does with ups.status), so
features, policies, the hub and people see the same words whatever the wire was. A name not in
this table is not a valid reading name: add it here and document it in docs/vocabulary.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

DEVICE_STATUSES = ("ok", "warning", "error", "offline", "asleep", "unknown")
# Printer-MIB levels: a measured amount, or -1 unrestricted, -2 unknown, -3 some remaining;
# "low" is a maker's own code for almost empty (vendors.py).
LEVEL_STATES = ("measured", "unrestricted", "unknown", "some_remaining", "low")


@dataclass(frozen=True)
class Name:
    """One vocabulary entry: a dotted name (with <n> for an index), its type and its unit."""

    pattern: str
    type: str  # "str", "int", "float", "bool", "enum"
    choices: tuple[str, ...] = ()
    unit: str = ""
    doc: str = ""
    nullable: bool = False


NAMES: tuple[Name, ...] = (
    # Every device.
    Name("device.status", "enum", DEVICE_STATUSES, doc="overall state of the device"),
    Name("device.model", "str", doc="model name as the device reports it"),
    Name("device.firmware", "str", doc="firmware or ROM version"),
    Name("device.serial", "str", doc="serial number"),
    Name("device.vendor", "str", doc="manufacturer"),
    Name("device.description", "str", doc="free-text description (SNMP sysDescr)"),
    Name("device.object_id", "str", doc="SNMP sysObjectID"),
    Name("device.uptime_s", "float", unit="s", doc="time since the device booted"),
    Name("device.hr_status", "enum", ("unknown", "running", "warning", "testing", "down"),
         doc="SNMP hrDeviceStatus of the printer device"),
    # Receipt and network printers.
    Name("printer.status", "enum", ("idle", "printing", "warmup", "other", "unknown"),
         doc="hrPrinterStatus"),
    Name("printer.online", "bool", doc="the printer accepts jobs"),
    Name("printer.paper", "enum", ("ok", "near_end", "out"), doc="paper roll or input paper"),
    Name("printer.cover", "enum", ("open", "closed")),
    Name("printer.cutter", "enum", ("ok", "error")),
    Name("printer.error", "enum", ("none", "recoverable", "unrecoverable")),
    Name("printer.jam", "bool"),
    Name("printer.drawer", "enum", ("open", "closed"), doc="cash drawer kick-out connector pin 3"),
    Name("printer.page_count", "int", unit="pages", doc="lifetime counter"),
    Name("printer.error_state", "str", doc="hrPrinterDetectedErrorState as hex"),
    Name("printer.mib", "bool", doc="the device answers the Printer-MIB (RFC 3805)"),
    Name("printer.errors", "str", doc="decoded error-state bits, comma-separated"),
    Name("printer.cut_count", "int", unit="cuts", doc="lifetime autocutter cuts"),
    Name("printer.head_km", "float", unit="km", doc="paper length run under the head"),
    Name("printer.head_temp_c", "float", unit="C"),
    Name("printer.jam_count", "int", unit="jams",
         doc="paper jams seen since the agent started (health features)"),
    Name("printer.cutter_errors", "int", unit="errors",
         doc="autocutter errors seen since the agent started (health features)"),
    Name("printer.error_count", "int", unit="errors",
         doc="recoverable or unrecoverable errors seen since the agent started"),
    Name("printer.mechanical", "enum", ("ok", "error"),
         doc="ESC/POS mechanical (carriage) error, impact models"),
    Name("printer.overheat", "bool", doc="ESC/POS auto-recoverable error (head overheat)"),
    Name("printer.operating_hours", "int", unit="h",
         doc="lifetime operating time (ESC/POS GS g 2 counter 198)"),
    Name("printer.counter.<n>", "int",
         doc="raw Epson maintenance counter n (GS g 2), such as 148 line feeds, 149 head "
             "energizing, 178 autocuts, 198 hours"),
    Name("printer.overheats", "int", unit="errors",
         doc="auto-recoverable (head overheat) errors seen since the agent started"),
    Name("printer.toner", "enum", ("ok", "low", "empty"),
         doc="lowToner / noToner error bits (SNMP)"),
    Name("printer.waste", "enum", ("ok", "full"),
         doc="a waste receptacle supply with no space left (SNMP)"),
    Name("printer.service_requested", "bool", doc="serviceRequested error bit (SNMP)"),
    Name("printer.pages_per_day", "float", unit="pages/day",
         doc="page rate from prtMarkerLifeCount between two supply reads"),
    Name("printer.cover_opens", "int",
         doc="cover or door open alerts seen since the agent started (SNMP alert codes)"),
    Name("printer.service_requests", "int",
         doc="service-request and subunit-failure alerts seen since the agent started"),
    Name("tray.<n>.name", "str"),
    Name("tray.<n>.level", "int", unit="sheets", nullable=True,
         doc="sheets left; null when unknown"),
    Name("tray.<n>.capacity", "int", unit="sheets", nullable=True),
    Name("tray.<n>.status", "int", doc="prtInputStatus as the MIB sums it"),
    Name("tray.<n>.level_pct", "float", unit="%", nullable=True,
         doc="level as a share of capacity; null unless both are known amounts"),
    Name("tray.<n>.level_state", "enum", LEVEL_STATES,
         doc="measured, or what a special level value (-1/-2/-3) means"),
    Name("supply.<n>.description", "str"),
    Name("supply.<n>.type", "str", doc="toner, ink, opc, fuser... (prtMarkerSuppliesType)"),
    Name("supply.<n>.class", "enum", ("consumed", "receptacle", "other")),
    Name("supply.<n>.level", "int", nullable=True, doc="raw level; null when unknown"),
    Name("supply.<n>.capacity", "int", nullable=True, doc="raw capacity; null when unknown"),
    Name("supply.<n>.level_pct", "float", unit="%", nullable=True,
         doc="null when the device reports unknown or 'some remaining'"),
    Name("supply.<n>.level_state", "enum", LEVEL_STATES,
         doc="measured, or what a special level value (-1/-2/-3) means"),
    Name("supply.<n>.pct_per_day", "float", unit="%/day", nullable=True,
         doc="depletion: level points used per day over the last reads; null until known"),
    Name("supply.<n>.days_to_empty", "float", unit="days", nullable=True,
         doc="days left at that rate; null when not depleting or unknown"),
    Name("alert.count", "int", doc="rows in the printer's alert table"),
    Name("alert.<n>.severity", "str"),
    Name("alert.<n>.code", "str"),
    Name("alert.<n>.description", "str"),
    # Barcode scanners.
    Name("scanner.connected", "bool", doc="the scanner's serial port is open"),
    Name("scanner.reads", "int", doc="frames decoded since the agent started"),
    Name("scanner.no_reads", "int"),
    Name("scanner.decode_errors", "int", doc="malformed frames"),
    Name("scanner.reconnects", "int", doc="times the port came back after it was lost"),
    Name("scanner.last_scan_age_s", "float", unit="s", nullable=True,
         doc="time since the last good scan; null before the first"),
    Name("scanner.heartbeat", "enum", ("ok", "missing", "off"),
         doc="the last heartbeat was answered, was not, or none is configured"),
    # USB presence.
    Name("usb.present", "bool", doc="a device with the configured ids is on the bus"),
    Name("usb.connects", "int", doc="times it appeared since the agent started"),
    Name("usb.disconnects", "int", doc="times it disappeared since the agent started"),
    Name("usb.node", "str", nullable=True, doc="tty or printer node the device has now"),
    Name("usb.path", "str", nullable=True, doc="sysfs bus path"),
    # The register PC.
    Name("host.cpu_pct", "float", unit="%"),
    Name("host.mem_pct", "float", unit="%"),
    Name("host.swap_pct", "float", unit="%"),
    Name("host.disk_pct", "float", unit="%"),
    Name("host.disk.<n>.pct", "float", unit="%"),
    Name("host.temp_c", "float", unit="C", doc="hottest sensor"),
    Name("host.uptime_s", "float", unit="s"),
    Name("host.boot_time", "str", doc="ISO 8601 UTC"),
    Name("host.load_1m", "float"),
    Name("host.net.latency_ms", "float", unit="ms", nullable=True,
         doc="worst TCP-connect latency to the configured hosts; null if none answered"),
    Name("host.net.<n>.latency_ms", "float", unit="ms", nullable=True,
         doc="TCP-connect latency to one configured host; null when it did not answer"),
    Name("host.proc.<n>.running", "bool", doc="a configured process is running"),
    Name("host.fan_rpm", "float", unit="rpm", doc="slowest fan the machine exposes"),
    Name("host.smart.passed", "bool", doc="the system disk's SMART overall self-assessment"),
    Name("host.smart.reallocated", "int", unit="sectors", doc="ATA attribute 5"),
    Name("host.smart.pending", "int", unit="sectors", doc="ATA attribute 197"),
    Name("host.smart.uncorrectable", "int", unit="sectors",
         doc="ATA attributes 187 + 198 (reported and offline uncorrectable)"),
    Name("host.smart.crc_errors", "int", doc="ATA attribute 199, interface CRC errors"),
    Name("host.smart.media_errors", "int", doc="NVMe media and data integrity errors"),
    Name("host.smart.percentage_used", "int", unit="%", doc="NVMe/SSD life used"),
    Name("host.smart.power_on_hours", "int", unit="h"),
    Name("host.smart.temp_c", "float", unit="C", doc="disk temperature"),
    # Polling itself.
    Name("poll.latency_ms", "float", unit="ms"),
    Name("poll.errors", "int", doc="consecutive failed polls"),
    Name("poll.timeouts", "int", doc="polls that timed out since the agent started"),
)

_INDEX = r"[A-Za-z0-9_\-]+"


def _compile(pattern: str) -> re.Pattern[str]:
    parts = [(_INDEX if p == "<n>" else re.escape(p)) for p in pattern.split(".")]
    return re.compile(r"\.".join(parts) + r"\Z")


_EXACT = {n.pattern: n for n in NAMES if "<n>" not in n.pattern}
_INDEXED = [(n, _compile(n.pattern)) for n in NAMES if "<n>" in n.pattern]


def lookup(name: str) -> Name | None:
    """Return the vocabulary entry for a reading name, or None if it is not a known name."""
    entry = _EXACT.get(name)
    if entry is not None:
        return entry
    for entry, rx in _INDEXED:
        if rx.match(name):
            return entry
    return None


def check_value(name: str, value: object) -> str | None:
    """Return why a value is not valid for a name, or None if it is."""
    entry = lookup(name)
    if entry is None:
        return "not in the vocabulary"
    if value is None:
        return None if entry.nullable else "must not be null"
    t = entry.type
    if t == "bool":
        ok = isinstance(value, bool)
    elif t == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and isinstance(value, int):
            ok = abs(value) < 2 ** 1023  # math.isfinite() raises on an int this large.
        ok = ok and math.isfinite(value)
    elif t == "enum":
        ok = value in entry.choices
    else:
        ok = isinstance(value, str)
    if ok:
        return None
    expected = f"one of {', '.join(entry.choices)}" if t == "enum" else t
    return f"expected {expected}, got {value!r}"
