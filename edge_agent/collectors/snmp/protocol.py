"""Map raw SNMP values of a printer onto the shared vocabulary; pure functions, no I/O.

Values come in plain (see `plain` in collector.py): int for INTEGER, Counter, Gauge and
TimeTicks, bytes for OCTET STRING, str for an OBJECT IDENTIFIER, None for a missing value
(noSuchObject, noSuchInstance, endOfMibView, NULL). Every value is untrusted: any type may come
at any OID, and a value that does not fit is left out of the reading, never raised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Union

from edge_agent.collectors.snmp import oids
from edge_agent.collectors.snmp.vendors import Vendor, vendor_for

RawValue = Union[int, bytes, str, None]
Raw = Mapping[str, RawValue]

TICKS_MODULO = 2 ** 32
MAX_TEXT = 255
MAX_ROWS = 64  # rows of one table the reading carries at most
MAX_ALERTS = 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")

# How bad each device.status is, to combine several sources into the worst.
_RANK = {"ok": 0, "unknown": 1, "warning": 2, "error": 3}
_HR_STATUS = {"running": "ok", "unknown": "unknown", "warning": "warning", "testing": "warning",
              "down": "error"}
# Error-state bits that stop printing; the others are warnings. The second octet is
# unreliable on many printers (LibreNMS ignores it), so its bits only ever warn.
_CRITICAL_BITS = frozenset({"noPaper", "noToner", "doorOpen", "jammed", "offline",
                            "serviceRequested"})


# ---------------------------------------------------------------- plain value helpers

# SNMP's widest integer is Counter64 (unsigned); a value past a signed 64-bit integer fits no
# column at the hub and would get the whole telemetry message refused there (edge_protocol).
_INT_MIN, _INT_MAX = -2**63, 2**63 - 1


def as_int(value: RawValue) -> int | None:
    """Return an integer value within a signed 64-bit range, or None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and _INT_MIN <= value <= _INT_MAX:
        return value
    return None


def as_text(value: RawValue) -> str | None:
    """Return printable text: UTF-8 (Latin-1 when not UTF-8), controls removed, bounded."""
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value).rstrip(b"\x00")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        return None
    text = _CONTROL.sub(" ", text).strip()
    return text[:MAX_TEXT] if text else None


def as_oid(value: RawValue) -> str | None:
    """Return a dotted OID string, or None when the value is not an OID."""
    if not isinstance(value, str):
        return None
    text = value.strip().lstrip(".")
    return text if re.fullmatch(r"\d+(\.\d+)*", text) else None


def uptime_seconds(ticks: RawValue) -> float | None:
    """TimeTicks (1/100 s, modulo 2**32) as seconds."""
    t = as_int(ticks)
    if t is None or t < 0:
        return None
    return (t % TICKS_MODULO) / 100.0


def rebooted(before: int, after: int, elapsed_s: float, slack_s: float = 60.0) -> bool:
    """Tell a reboot from the 497-day wrap of sysUpTime between two polls `elapsed_s` apart."""
    before %= TICKS_MODULO
    after %= TICKS_MODULO
    if after >= before:
        return False
    expected = (before + int(elapsed_s * 100)) % TICKS_MODULO
    wrapped = before + int((elapsed_s + slack_s) * 100) >= TICKS_MODULO
    return not (wrapped and abs(after - expected) <= slack_s * 100)


# ---------------------------------------------------------------- hrPrinterDetectedErrorState

def error_bits(value: RawValue) -> list[str] | None:
    """Decode hrPrinterDetectedErrorState bit by bit, bit 0 being the MSB of the first octet."""
    if isinstance(value, str):
        value = value.encode("latin-1", "replace")
    if not isinstance(value, (bytes, bytearray)):
        return None
    names = []
    for bit, name in enumerate(oids.ERROR_BITS):
        octet, shift = divmod(bit, 8)
        if octet < len(value) and value[octet] & (0x80 >> shift):
            names.append(name)
    return names


def error_status(bits: Iterable[str]) -> str:
    """device.status that a set of error-state bits alone implies."""
    worst = "ok"
    for name in bits:
        if name in _CRITICAL_BITS:
            return "error"
        worst = "warning"
    return worst


def librenms_error_state(bits: Iterable[str]) -> int:
    """LibreNMS's 0-10 state for the first octet (tests compare with its expected data)."""
    first = [b for b in bits if oids.ERROR_BITS.index(b) < 8]
    codes = {"lowPaper": 1, "noPaper": 2, "lowToner": 3, "noToner": 4, "doorOpen": 5,
             "jammed": 6, "offline": 7, "serviceRequested": 8}
    if not first:
        return 0
    if len(first) == 1:
        return codes[first[0]]
    return 10 if any(b in _CRITICAL_BITS for b in first) else 9


# ---------------------------------------------------------------- layout: learned once

@dataclass(frozen=True)
class Layout:
    """Where a printer keeps its rows, learned once from a bounded walk."""

    hr_index: int | None = None              # the printer's hrDeviceIndex
    printer_mib: bool = False                # it answers anything under the Printer-MIB
    supplies: tuple[tuple[str, str], ...] = ()   # (row suffix such as "1.3", reading key "3")
    trays: tuple[tuple[str, str], ...] = ()
    markers: tuple[str, ...] = ()
    covers: tuple[str, ...] = ()

    def status_oids(self) -> list[str]:
        """OIDs read every poll: uptime, device and printer status, error state, covers."""
        out = [oids.SYS_UPTIME]
        if self.hr_index is not None:
            i = self.hr_index
            out += [f"{oids.HR_DEVICE_STATUS}.{i}", f"{oids.HR_PRINTER_STATUS}.{i}",
                    f"{oids.HR_PRINTER_ERROR_STATE}.{i}"]
        out += [f"{oids.PRT_COVER_STATUS}.{s}" for s in self.covers]
        return out

    def supply_oids(self) -> list[str]:
        """OIDs read every few polls: supply and tray levels, tray status, page counter."""
        out = [f"{oids.PRT_SUPPLY_LEVEL}.{s}" for s, _ in self.supplies]
        for s, _ in self.trays:
            out += [f"{oids.PRT_INPUT_CURRENT_LEVEL}.{s}", f"{oids.PRT_INPUT_STATUS}.{s}"]
        out += [f"{oids.PRT_MARKER_LIFE_COUNT}.{s}" for s in self.markers[:1]]
        return out


def _suffixes(raw: Raw, column: str) -> list[str]:
    prefix = column + "."
    found = [k[len(prefix):] for k in raw if k.startswith(prefix)]
    return sorted(set(found), key=_oid_key)[:MAX_ROWS]


def _oid_key(suffix: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in suffix.split("."))
    except ValueError:
        return (2 ** 63,)


def row_keys(suffixes: list[str]) -> tuple[tuple[str, str], ...]:
    """Name rows by their last index when that is unique, else by the whole index (1.3 -> 1_3)."""
    last = [s.rsplit(".", 1)[-1] for s in suffixes]
    unique = len(set(last)) == len(last)
    return tuple((s, last[i] if unique else s.replace(".", "_")) for i, s in enumerate(suffixes))


def learn(walked: Raw) -> Layout:
    """Find the printer's rows in the values of the identity walks."""
    hr_rows = _suffixes(walked, oids.HR_PRINTER_ERROR_STATE) or _suffixes(
        walked, oids.HR_PRINTER_STATUS)
    hr_index = None
    for s in hr_rows:
        if s.isdigit():
            hr_index = int(s)
            break
    if hr_index is None and (walked.get(f"{oids.HR_DEVICE_STATUS}.1") is not None
                             or walked.get(f"{oids.HR_DEVICE_DESCR}.1") is not None):
        hr_index = 1  # hrDeviceTable without hrPrinterTable: the first device is the printer.
    supplies = _suffixes(walked, oids.PRT_SUPPLY_LEVEL) or _suffixes(
        walked, oids.PRT_SUPPLY_DESCRIPTION)
    trays = _suffixes(walked, oids.PRT_INPUT_CURRENT_LEVEL) or _suffixes(
        walked, oids.PRT_INPUT_NAME)
    return Layout(
        hr_index=hr_index,
        printer_mib=any(k.startswith(oids.PRINTER_MIB + ".") for k in walked),
        supplies=row_keys(supplies),
        trays=row_keys(trays),
        markers=tuple(_suffixes(walked, oids.PRT_MARKER_LIFE_COUNT)),
        covers=tuple(_suffixes(walked, oids.PRT_COVER_STATUS)),
    )


# ---------------------------------------------------------------- the reading

def identity(raw: Raw, layout: Layout) -> dict:
    """device.description, object_id, vendor, model, firmware, serial."""
    values: dict = {}
    descr = as_text(raw.get(oids.SYS_DESCR))
    object_id = as_oid(raw.get(oids.SYS_OBJECT_ID))
    if descr is not None:
        values["device.description"] = descr
    if object_id is not None:
        values["device.object_id"] = object_id
    vendor = vendor_for(object_id)
    found = vendor.parse(descr)
    if vendor.name or found.get("vendor"):
        values["device.vendor"] = found.get("vendor") or vendor.name
    hr_model = None
    if layout.hr_index is not None:
        hr_model = as_text(raw.get(f"{oids.HR_DEVICE_DESCR}.{layout.hr_index}"))
    model = (found.get("model") or hr_model) if vendor.model_from_descr else (
        hr_model or found.get("model"))
    if model:
        values["device.model"] = model
    if found.get("firmware"):
        values["device.firmware"] = found["firmware"]
    serial = None
    if layout.hr_index is not None:
        serial = as_text(raw.get(f"{oids.PRT_GENERAL_SERIAL}.{layout.hr_index}"))
    serial = serial or next((as_text(v) for k, v in raw.items()
                             if k.startswith(oids.PRT_GENERAL_SERIAL + ".") and as_text(v)), None)
    serial = serial or found.get("serial")
    if serial:
        values["device.serial"] = serial
    return values


def status(raw: Raw, layout: Layout) -> dict:
    """Uptime, device and printer status, decoded error state, cover: read every poll."""
    values: dict = {"printer.mib": layout.printer_mib}
    uptime = uptime_seconds(raw.get(oids.SYS_UPTIME))
    if uptime is not None:
        values["device.uptime_s"] = uptime
    worst = None
    hr = None
    bits_worst = None
    if layout.hr_index is not None:
        i = layout.hr_index
        hr = oids.HR_DEVICE_STATUS_NAMES.get(as_int(raw.get(f"{oids.HR_DEVICE_STATUS}.{i}")))
        if hr:
            values["device.hr_status"] = hr
            worst = _HR_STATUS[hr]
        prt = oids.HR_PRINTER_STATUS_NAMES.get(as_int(raw.get(f"{oids.HR_PRINTER_STATUS}.{i}")))
        if prt:
            values["printer.status"] = prt
            worst = _worse(worst, "ok")
        state = raw.get(f"{oids.HR_PRINTER_ERROR_STATE}.{i}")
        bits = error_bits(state)
        if bits is not None:
            octets = state.encode("latin-1", "replace") if isinstance(state, str) else bytes(state)
            values["printer.error_state"] = octets[:8].hex()
            values["printer.errors"] = ",".join(bits)
            values.update(_from_bits(bits, hr))
            bits_worst = error_status(b for b in bits if oids.ERROR_BITS.index(b) < 8)
            if any(oids.ERROR_BITS.index(b) >= 8 for b in bits):
                bits_worst = _worse(bits_worst, "warning")
    cover = _cover(raw, layout)
    if cover is not None:
        values["printer.cover"] = cover
        if cover == "open":
            bits_worst = _worse(bits_worst, "error")
    if bits_worst is not None:
        # RFC 3805 2.2.13.4: the same error bits are a critical or a non-critical alert, and
        # hrDeviceStatus says which (down or warning). When the device says, follow it: bits
        # alone never make a running or warning printer an error.
        if hr in ("running", "warning", "testing"):
            bits_worst = "warning" if bits_worst == "error" else bits_worst
        worst = _worse(worst, bits_worst)
    values["device.status"] = worst or "unknown"
    return values


def _worse(a: str | None, b: str) -> str:
    return b if a is None or _RANK[b] > _RANK[a] else a


# Bits that are operator work (attention), whatever the severity: they explain a "down".
_ATTENTION_BITS = frozenset({"noPaper", "noToner", "doorOpen", "jammed", "offline"})


def _from_bits(bits: list[str], hr: str | None = None) -> dict:
    """Paper, jam, cover, toner and error from the error bits; `hr` is hrDeviceStatus.

    serviceRequested is unrecoverable only when the device says the alert is critical
    (hrDeviceStatus down) and no operator condition explains the stop; with warning(3) it is a
    service request, not a failure (the Konica bizhub C250i case, PROTOCOLS.md section 8).
    """
    on = set(bits)
    values: dict = {
        "printer.paper": "out" if "noPaper" in on else "near_end" if "lowPaper" in on else "ok",
        "printer.jam": "jammed" in on,
        "printer.online": "offline" not in on,
        "printer.cover": "open" if "doorOpen" in on else "closed",
        "printer.toner": "empty" if "noToner" in on else "low" if "lowToner" in on else "ok",
        "printer.service_requested": "serviceRequested" in on,
    }
    if "serviceRequested" in on and hr == "down" and not on & _ATTENTION_BITS:
        values["printer.error"] = "unrecoverable"
    elif on & _ATTENTION_BITS or "serviceRequested" in on:
        values["printer.error"] = "recoverable"
    else:
        values["printer.error"] = "none"
    return values


def _cover(raw: Raw, layout: Layout) -> str | None:
    states = [as_int(raw.get(f"{oids.PRT_COVER_STATUS}.{s}")) for s in layout.covers]
    if any(s in oids.COVER_OPEN for s in states):
        return "open"
    if states and all(s in oids.COVER_CLOSED for s in states):
        return "closed"
    return None


def level_state(level: int | None, vendor: Vendor) -> str:
    """What a supply or tray level means: measured, or one of the MIB's special values."""
    if level is None:
        return "unknown"
    special = vendor.level_codes.get(level)
    if special:
        return special
    if level >= 0:
        return "measured"
    return {oids.UNRESTRICTED: "unrestricted", oids.SOME_REMAINING: "some_remaining"}.get(
        level, "unknown")


def percent(level: int | None, capacity: int | None) -> float | None:
    """Level as a percentage of capacity, only when both are real amounts (not -1/-2/-3)."""
    if level is None or capacity is None or level < 0 or capacity <= 0:
        return None
    return round(min(100.0, 100.0 * level / capacity), 1)


def _amounts(level: int | None, capacity: int | None, vendor: Vendor) -> dict:
    """level_state, level, capacity and level_pct of one supply or tray row."""
    state = level_state(level, vendor)
    return {"level_state": state,
            "level": level if state == "measured" else None,
            "capacity": capacity if capacity is not None and capacity > 0 else None,
            "level_pct": percent(level, capacity) if state == "measured" else None}


def supplies(raw: Raw, layout: Layout) -> dict:
    """Supplies, trays and the page counter: read every few polls."""
    vendor = vendor_for(as_oid(raw.get(oids.SYS_OBJECT_ID)))
    values: dict = {}
    for suffix, key in layout.supplies:
        p = f"supply.{key}."
        descr = as_text(raw.get(f"{oids.PRT_SUPPLY_DESCRIPTION}.{suffix}"))
        if descr is not None:
            values[p + "description"] = vendor.clean_description(descr)
        kind = as_int(raw.get(f"{oids.PRT_SUPPLY_TYPE}.{suffix}"))
        if kind is not None:
            values[p + "type"] = oids.SUPPLY_TYPES.get(kind, "other")
        klass = as_int(raw.get(f"{oids.PRT_SUPPLY_CLASS}.{suffix}"))
        if klass is not None:
            values[p + "class"] = oids.SUPPLY_CLASSES.get(klass, "other")
        level = as_int(raw.get(f"{oids.PRT_SUPPLY_LEVEL}.{suffix}"))
        capacity = as_int(raw.get(f"{oids.PRT_SUPPLY_MAX_CAPACITY}.{suffix}"))
        unit = as_int(raw.get(f"{oids.PRT_SUPPLY_UNIT}.{suffix}"))
        amounts = _amounts(level, capacity, vendor)
        if amounts["level_pct"] is None and amounts["level_state"] == "measured" \
                and unit == 19 and level <= 100 and amounts["capacity"] is None:
            amounts["level_pct"] = float(level)  # Unit 19 (percent): the level is the share.
        values.update((p + k, v) for k, v in amounts.items())
    waste = [values.get(f"supply.{key}.level") for _, key in layout.supplies
             if values.get(f"supply.{key}.class") == "receptacle"
             and values.get(f"supply.{key}.level_state") == "measured"]
    if waste:
        # A receptacle's level is the space left in it: none left is a full waste box.
        values["printer.waste"] = "full" if any(w == 0 for w in waste) else "ok"
    for suffix, key in layout.trays:
        p = f"tray.{key}."
        name = None
        for column in (oids.PRT_INPUT_NAME, oids.PRT_INPUT_DESCRIPTION, oids.PRT_INPUT_MEDIA_NAME):
            name = as_text(raw.get(f"{column}.{suffix}"))
            if name:
                break
        if name:
            values[p + "name"] = name
        level = as_int(raw.get(f"{oids.PRT_INPUT_CURRENT_LEVEL}.{suffix}"))
        capacity = as_int(raw.get(f"{oids.PRT_INPUT_MAX_CAPACITY}.{suffix}"))
        values.update((p + k, v) for k, v in _amounts(level, capacity, vendor).items())
        st = as_int(raw.get(f"{oids.PRT_INPUT_STATUS}.{suffix}"))
        if st is not None and 0 <= st < 128:
            values[p + "status"] = st
    if layout.markers:
        count = as_int(raw.get(f"{oids.PRT_MARKER_LIFE_COUNT}.{layout.markers[0]}"))
        if count is not None and count >= 0:
            values["printer.page_count"] = count
    return values


def alerts(walked: Raw) -> dict:
    """The printer's alert table (prtAlertTable), at most MAX_ALERTS rows."""
    rows = _suffixes(walked, oids.PRT_ALERT_SEVERITY) or _suffixes(walked, oids.PRT_ALERT_CODE)
    values: dict = {"alert.count": len(rows)}
    for suffix, key in row_keys(rows[:MAX_ALERTS]):
        p = f"alert.{key}."
        sev = as_int(walked.get(f"{oids.PRT_ALERT_SEVERITY}.{suffix}"))
        if sev is not None:
            values[p + "severity"] = oids.ALERT_SEVERITIES.get(sev, str(sev))
        code = as_int(walked.get(f"{oids.PRT_ALERT_CODE}.{suffix}"))
        if code is not None:
            values[p + "code"] = oids.ALERT_CODES.get(code, str(code))
        descr = as_text(walked.get(f"{oids.PRT_ALERT_DESCRIPTION}.{suffix}"))
        if descr:
            values[p + "description"] = descr
    return values


def reading(raw: Raw, layout: Layout) -> dict:
    """Every value the collector reports, from everything read so far."""
    values = identity(raw, layout)
    values.update(status(raw, layout))
    if layout.supplies or layout.trays or layout.markers:
        values.update(supplies(raw, layout))
    return values


# ---------------------------------------------------------------- rates and events over polls

RATE_WINDOW_S = 7 * 86400.0   # rates are measured over at most a week of supply reads
RATE_MIN_S = 6 * 3600.0       # and only once the reads span six hours
JAM_CODES = frozenset({"jam"})
COVER_CODES = frozenset({"coverOpen", "doorOpen", "interlockOpen"})
SERVICE_CODES = frozenset({"subunitRecoverableFailure", "subunitUnrecoverableFailure",
                           "subunitMotorFailure", "subunitLifeOver", "markerOpcLifeOver",
                           "subunitRecoverableStorageError", "subunitUnrecoverableStorageError"})
MAX_SEEN_ALERTS = 256


class Trends:
    """Page rate and supply depletion from successive supply reads; alert-table rows and
    error-bit onsets counted as events since the agent started. Bounded: two samples a series
    (the oldest within the window and the latest) and at most MAX_SEEN_ALERTS alert rows."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[float, float]] = {}
        self.last: dict[str, tuple[float, float]] = {}
        self.events = {"printer.jam_count": 0, "printer.cover_opens": 0,
                       "printer.service_requests": 0}
        self._seen: dict[str, str] = {}
        self._bits: dict[str, bool] = {}

    def _rate(self, key: str, now: float, value: float, down_resets: bool) -> float | None:
        """Change per day since the series' first sample (None until it spans RATE_MIN_S).

        A series keeps (first, last); past the window the first moves up to the last, so the
        rate always spans between RATE_MIN_S... and the window. A counter that goes down was
        reset (or a cartridge replaced, for levels going up): the series starts again."""
        first, last = self.first.get(key), self.last.get(key)
        if first is None or (down_resets and value < first[1]) or \
                (not down_resets and value > first[1] + 5.0):
            self.first[key] = self.last[key] = (now, value)
            return None
        if now - first[0] > RATE_WINDOW_S and last is not None and now - last[0] >= RATE_MIN_S:
            first = self.first[key] = last
        self.last[key] = (now, value)
        span = now - first[0]
        if span < RATE_MIN_S:
            return None
        return (value - first[1]) / (span / 86400.0)

    def supply_values(self, now: float, values: Mapping[str, object]) -> dict:
        out: dict = {}
        count = values.get("printer.page_count")
        if isinstance(count, int) and not isinstance(count, bool):
            rate = self._rate("pages", now, float(count), True)
            if rate is not None and rate >= 0:
                out["printer.pages_per_day"] = round(rate, 1)
        for name, level in values.items():
            if not (name.startswith("supply.") and name.endswith(".level_pct")):
                continue
            key = name[:-len(".level_pct")]
            if values.get(key + ".class") == "receptacle" or not isinstance(level, float):
                continue
            rate = self._rate(key, now, level, False)
            used = -rate if rate is not None else None
            out[key + ".pct_per_day"] = round(used, 3) if used is not None else None
            out[key + ".days_to_empty"] = round(level / used, 1) if used and used > 0.01 \
                else None
        return out

    def count(self, values: Mapping[str, object]) -> dict:
        """Count new alert rows by code, or error-bit onsets when the table is empty."""
        rows = {k[:-len(".code")]: v for k, v in values.items()
                if k.startswith("alert.") and k.endswith(".code")}
        for row, code in rows.items():
            if self._seen.get(row) == code:
                continue
            if len(self._seen) >= MAX_SEEN_ALERTS:
                self._seen.clear()
            self._seen[row] = str(code)
            self._bump(str(code))
        for row in [r for r in self._seen if r not in rows]:
            del self._seen[row]  # a cleared alert: the same row index may come back
        if not rows:
            for name, on, code in (("jam", values.get("printer.jam") is True, "jam"),
                                   ("cover", values.get("printer.cover") == "open", "coverOpen"),
                                   ("service", values.get("printer.service_requested") is True,
                                    "subunitRecoverableFailure")):
                if on and not self._bits.get(name, False):
                    self._bump(code)
                self._bits[name] = on
        return dict(self.events)

    def _bump(self, code: str) -> None:
        if code in JAM_CODES:
            self.events["printer.jam_count"] += 1
        elif code in COVER_CODES:
            self.events["printer.cover_opens"] += 1
        elif code in SERVICE_CODES:
            self.events["printer.service_requests"] += 1
