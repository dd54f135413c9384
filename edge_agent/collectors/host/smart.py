"""The register's system disk health from smartmontools: `smartctl --json -a DEVICE`.

smartctl needs root or CAP_SYS_RAWIO on the disk node (docs/service.md says how the service
gets it). Where smartctl is missing or may not read the disk, the host reading simply carries
no `host.smart.*` values; the reason is logged once. smartctl's exit status is a bit mask:
bits 0-2 mean no data (command line, device open, SMART command failed), bits 3-7 are disk
conditions, so a non-zero status with JSON is data, not an error (PROTOCOLS.md section 8).
Every field of the JSON is checked before it is used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from typing import Any, Mapping

log = logging.getLogger(__name__)

MAX_OUTPUT = 1024 * 1024
TIMEOUT_S = 20.0
# ATA attribute ids (keyed on the id, names vary by maker): 5 reallocated sectors, 187 reported
# uncorrectable, 197 current pending sectors, 198 offline uncorrectable, 199 UDMA CRC errors.
ATA_REALLOCATED, ATA_REPORTED_UNCORRECT, ATA_PENDING, ATA_OFFLINE_UNCORRECT, ATA_CRC = (
    5, 187, 197, 198, 199)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and \
        0 <= value < 2 ** 63 else None


def _raw(row: Mapping[str, Any]) -> int | None:
    raw = row.get("raw")
    if not isinstance(raw, dict):
        return None
    value = _int(raw.get("value"))
    if value is None:
        return None
    # Some drives pack more than the count into the 48-bit raw value: keep the low 32 bits.
    return value & 0xFFFFFFFF


def smart_values(data: Any) -> dict[str, Any]:
    """Map smartctl's JSON onto host.smart.*; anything missing or malformed is left out."""
    if not isinstance(data, dict):
        return {}
    values: dict[str, Any] = {}
    status = data.get("smart_status")
    if isinstance(status, dict) and isinstance(status.get("passed"), bool):
        values["host.smart.passed"] = status["passed"]
    pot = data.get("power_on_time")
    if isinstance(pot, dict) and _int(pot.get("hours")) is not None:
        values["host.smart.power_on_hours"] = pot["hours"]
    temp = data.get("temperature")
    if isinstance(temp, dict):
        t = temp.get("current")
        if isinstance(t, (int, float)) and not isinstance(t, bool) and -40 < t < 150:
            values["host.smart.temp_c"] = float(t)
    ata = data.get("ata_smart_attributes")
    table = ata.get("table") if isinstance(ata, dict) else None
    if isinstance(table, list):
        by_id = {}
        for row in table[:256]:
            if isinstance(row, dict) and _int(row.get("id")) is not None:
                raw = _raw(row)
                if raw is not None:
                    by_id[row["id"]] = raw
        if ATA_REALLOCATED in by_id:
            values["host.smart.reallocated"] = by_id[ATA_REALLOCATED]
        if ATA_PENDING in by_id:
            values["host.smart.pending"] = by_id[ATA_PENDING]
        unc = [by_id[i] for i in (ATA_REPORTED_UNCORRECT, ATA_OFFLINE_UNCORRECT) if i in by_id]
        if unc:
            values["host.smart.uncorrectable"] = sum(unc)
        if ATA_CRC in by_id:
            values["host.smart.crc_errors"] = by_id[ATA_CRC]
    nvme = data.get("nvme_smart_health_information_log")
    if isinstance(nvme, dict):
        for key, name in (("percentage_used", "host.smart.percentage_used"),
                          ("media_errors", "host.smart.media_errors"),
                          ("power_on_hours", "host.smart.power_on_hours")):
            v = _int(nvme.get(key))
            if v is not None:
                values[name] = min(v, 2 ** 31) if key != "percentage_used" else min(v, 255)
        t = nvme.get("temperature")
        if "host.smart.temp_c" not in values and isinstance(t, int) and \
                not isinstance(t, bool) and -40 < t < 150:
            values["host.smart.temp_c"] = float(t)
    return values


def parse_output(stdout: bytes, returncode: int) -> tuple[dict[str, Any], str | None]:
    """Return (values, why not) from smartctl's output and exit status."""
    if returncode & 0b111 and not stdout.strip():
        return {}, f"smartctl exit status {returncode} (cannot open or query the disk)"
    try:
        data = json.loads(stdout[:MAX_OUTPUT])
    except (ValueError, UnicodeDecodeError):
        return {}, "smartctl did not print JSON (smartmontools 7 or later is needed)"
    if returncode & 0b110:
        msgs = data.get("smartctl", {}).get("messages") if isinstance(data, dict) else None
        text = ""
        if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict):
            text = str(msgs[0].get("string", ""))[:160]
        return {}, f"smartctl could not read the disk (status {returncode}) {text}".strip()
    return smart_values(data), None


class SmartReader:
    """Runs smartctl on a slow cadence; remembers why it cannot, and says it once."""

    def __init__(self, device: str, interval: float, program: str = "smartctl"):
        self.device = device
        self.interval = interval
        self.program = program
        self.values: dict[str, Any] = {}
        self.next_at = 0.0
        self.why_not: str | None = None

    async def read(self, now: float) -> dict[str, Any]:
        """Return fresh host.smart.* values when due (the first call reads), else {}."""
        if now < self.next_at:
            return {}
        self.next_at = now + self.interval
        exe = shutil.which(self.program)
        if exe is None:
            self._not(f"{self.program} is not installed (Debian: apt install smartmontools)")
            return {}
        try:
            proc = await asyncio.create_subprocess_exec(
                exe, "--json", "-a", self.device or "/dev/sda", stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                self._not(f"smartctl took over {TIMEOUT_S:g} s")
                return {}
        except OSError as err:
            self._not(f"cannot run smartctl: {err.strerror or err}")
            return {}
        values, why = parse_output(out, proc.returncode or 0)
        if why:
            self._not(why)
            return {}
        self.why_not = None
        self.values = values
        return values

    def _not(self, why: str) -> None:
        if why != self.why_not:
            log.info("no disk health", extra={"reason": why})
        self.why_not = why
