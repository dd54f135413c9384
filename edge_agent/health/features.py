"""Health features: per-device rolling windows updated reading by reading, bounded and persisted.

Each device keeps 28 buckets of 6 hours (7 days) of sums and counts, plus the last value of each
counter it reports; a feature vector is computed from them at any time. Memory per device is
bounded (at most 28 buckets of len(ACC) numbers), whatever the poll rate. The same code computes
features for the fleet simulator at training time and for the agent at run time, so the model
sees the same numbers in both places.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from edge_agent.reading import Reading

BUCKET_S = 6 * 3600
N_BUCKETS = 28  # 7 days of 6-hour buckets
RECENT = 4  # the last 24 hours
DAY = 86400.0
MIN_SPAN_S = 6 * 3600.0  # rates over less than this are scaled as if over this
# Rated lives from datasheets (models/README.md cites them): Epson's TM-T90 specification
# rates its thermal head 150 km and its autocutter 2,000,000 cuts; TM-T88-class printers are
# taken to be alike.
RATED_HEAD_KM = 150.0
RATED_CUTS = 2_000_000.0
MAX_DEVICES = 10_000  # windows kept in memory at most; a store has tens of devices

CLASSES = {"host": 0.0, "printer": 1.0, "scanner": 2.0, "other": 3.0}
# The classes as a model card names them (its per-class thresholds): code by name.
CLASS_CODES = {"register": 0.0, "printer": 1.0, "scanner": 2.0, "other": 3.0}

# Per-bucket accumulators, by slot.
ACC = ("n", "stale", "cut_err", "err", "overheat", "jam", "decode", "reconn", "timeouts",
       "temp_s", "temp_n", "fan_s", "fan_n", "disk_s", "disk_n", "lat_s", "lat_n",
       "smart_s", "smart_n")
_I = {name: i for i, name in enumerate(ACC)}

# Counters (lifetime or since-agent-start) whose increments are events, with the slot they fill.
COUNTERS = {"printer.cutter_errors": "cut_err", "printer.error_count": "err",
            "printer.overheats": "overheat", "printer.jam_count": "jam",
            "scanner.decode_errors": "decode", "scanner.reconnects": "reconn",
            "usb.disconnects": "reconn", "poll.timeouts": "timeouts"}
# When a device reports no counter for an event, count the state's transitions instead.
TRANSITIONS = (("printer.cutter", "error", "printer.cutter_errors", "cut_err"),
               ("printer.jam", True, "printer.jam_count", "jam"),
               ("printer.error", ("recoverable", "unrecoverable"), "printer.error_count", "err"))
# Levels averaged per bucket: (name, sum slot, count slot).
MEANS = (("host.temp_c", "temp_s", "temp_n"), ("host.fan_rpm", "fan_s", "fan_n"),
         ("host.disk_pct", "disk_s", "disk_n"))
SMART_BAD = ("host.smart.reallocated", "host.smart.pending", "host.smart.uncorrectable",
             "host.smart.media_errors")
# Every reading name the features read: the train/serve parity test checks that a collector
# declares each one (tests/agent/health/test_model_parity.py).
READS = tuple(sorted(set(COUNTERS) | {t[0] for t in TRANSITIONS} | {m[0] for m in MEANS}
                     | set(SMART_BAD) | {"printer.head_km", "printer.cut_count",
                                         "host.net.latency_ms", "poll.latency_ms",
                                         "device.serial"}))


@dataclass(frozen=True)
class Feature:
    """One model input: its name, unit and how to say it in words."""

    name: str
    unit: str
    doc: str
    words: str  # format string for explanations; {v} is the value


FEATURES: tuple[Feature, ...] = (
    Feature("device_class", "code", "0 register, 1 printer, 2 scanner, 3 other",
            "device class {v:.0f}"),
    Feature("head_wear", "fraction", "printer.head_km over the rated 150 km",
            "print head at {p:.0f}% of its rated life"),
    Feature("cutter_wear", "fraction", "printer.cut_count over the rated 2,000,000 cuts",
            "autocutter at {p:.0f}% of its rated cuts"),
    Feature("cutter_errors_per_day", "1/day", "autocutter error onsets in the last 24 h",
            "cutter errors {v:.0f}/day"),
    Feature("cutter_errors_trend", "1/day", "last 24 h rate minus the previous 6 days' rate",
            "cutter errors up {v:.1f}/day on the week"),
    Feature("printer_errors_per_day", "1/day", "printer error onsets in the last 24 h",
            "printer errors {v:.1f}/day"),
    Feature("printer_errors_trend", "1/day", "last 24 h rate minus the previous 6 days' rate",
            "printer errors up {v:.1f}/day on the week"),
    Feature("overheats_per_day", "1/day", "head overheat (auto-recoverable) errors, last 24 h",
            "print head overheated {v:.0f} times in a day"),
    Feature("overheats_trend", "1/day", "last 24 h rate minus the previous 6 days' rate",
            "head overheats up {v:.1f}/day on the week"),
    Feature("jams_per_day", "1/day", "paper jams in the last 24 h", "paper jams {v:.1f}/day"),
    Feature("decode_errors_per_day", "1/day", "scanner bad frames in the last 24 h",
            "scanner bad frames {v:.0f}/day"),
    Feature("decode_errors_trend", "1/day", "last 24 h rate minus the previous 6 days' rate",
            "scanner bad frames up {v:.0f}/day on the week"),
    Feature("reconnects_per_day", "1/day", "reconnects or USB disconnects in the last 24 h",
            "reconnects {v:.1f}/day"),
    Feature("reconnects_trend", "1/day", "last 24 h rate minus the previous 6 days' rate",
            "reconnects up {v:.1f}/day on the week"),
    Feature("host_temp_c", "C", "mean hottest sensor, last 24 h", "register at {v:.0f} C"),
    Feature("host_temp_trend_c", "C", "mean temperature, last 24 h minus previous 6 days",
            "register {v:+.1f} C warmer than last week"),
    Feature("fan_ratio", "ratio", "mean slowest fan, last 24 h over previous 6 days (1: no fan)",
            "fan at {p:.0f}% of last week's speed"),
    Feature("disk_pct", "%", "mean disk use, last 24 h", "disk {v:.0f}% full"),
    Feature("disk_trend_pct_per_day", "%/day", "disk use growth per day over the week",
            "disk filling {v:.1f} points/day"),
    Feature("smart_bad_sectors", "sectors", "reallocated + pending + uncorrectable (SMART)",
            "disk has {v:.0f} bad sectors"),
    Feature("smart_bad_trend", "1/day", "bad sectors added per day over the week",
            "disk gaining {v:.1f} bad sectors a day"),
    Feature("latency_ms", "ms", "mean network or poll latency, last 24 h",
            "latency {v:.0f} ms"),
    Feature("latency_trend_ratio", "ratio", "mean latency, last 24 h over previous 6 days",
            "latency x{v:.1f} on the week"),
    Feature("timeouts_per_day", "1/day", "poll timeouts in the last 24 h",
            "poll timeouts {v:.0f}/day"),
    Feature("timeouts_trend", "1/day", "last 24 h rate minus the previous 6 days' rate",
            "poll timeouts up {v:.0f}/day on the week"),
    Feature("stale_fraction", "fraction", "stale readings over readings, last 24 h",
            "unanswered {p:.0f}% of polls"),
)
NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)


def describe(index: int, value: float, rising: bool = False) -> str:
    """Say one feature's value in words, e.g. 'cutter errors 14/day and rising'."""
    f = FEATURES[index]
    text = f.words.format(v=value, p=100.0 * value)
    return text + " and rising" if rising else text


def device_class(values: Mapping[str, Any], kind: str) -> float:
    """Return the class code of a device from its reading names (or its collector kind)."""
    for name in values:
        head = name.split(".", 1)[0]
        if head in ("printer", "tray", "supply"):
            return CLASSES["printer"]
        if head == "scanner":
            return CLASSES["scanner"]
        if head == "host":
            return CLASSES["host"]
    return {"escpos": 1.0, "snmp": 1.0, "scanner": 2.0, "host": 0.0}.get(kind, 3.0)


class DeviceWindows:
    """One device's rolling windows; update with readings, read a feature vector."""

    __slots__ = ("cls", "buckets", "last", "first_ts", "last_ts", "head_km", "cuts", "serial")

    def __init__(self) -> None:
        self.cls: float | None = None
        self.buckets: dict[int, list[float]] = {}
        self.last: dict[str, Any] = {}
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.head_km = 0.0
        self.cuts = 0.0
        self.serial: str | None = None

    def update(self, reading: Reading) -> None:
        """Fold one reading into the windows (a reading older than the windows is ignored)."""
        ts = reading.ts.timestamp()
        idx = int(ts // BUCKET_S)
        if self.last_ts is not None and idx <= int(self.last_ts // BUCKET_S) - N_BUCKETS:
            return
        values = reading.values
        if self.cls is None or self.cls == CLASSES["other"]:
            self.cls = device_class(values, reading.kind)
        b = self.buckets.get(idx)
        if b is None:
            b = self.buckets[idx] = [0.0] * len(ACC)
            floor = idx - N_BUCKETS
            for old in [k for k in self.buckets if k <= floor]:
                del self.buckets[old]
        b[0] += 1
        if reading.stale:
            b[1] += 1
        last = self.last
        seen_counters = set()
        for name, slot in COUNTERS.items():
            v = values.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                seen_counters.add(name)
                prev = last.get(name)
                if prev is not None:
                    # A counter that went down was reset (agent or device restart): count from 0.
                    b[_I[slot]] += v - prev if v >= prev else v
                last[name] = v
        for name, bad, counter, slot in TRANSITIONS:
            if counter in seen_counters or name not in values:
                continue
            v = values[name]
            is_bad = v in bad if isinstance(bad, tuple) else v == bad
            key = "~" + name
            if is_bad and not last.get(key, False):
                b[_I[slot]] += 1
            last[key] = is_bad
        for name, s, n in MEANS:
            v = values.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                b[_I[s]] += v
                b[_I[n]] += 1
        bad = [values.get(k) for k in SMART_BAD]
        bad = [v for v in bad if isinstance(v, int) and not isinstance(v, bool)]
        if bad:
            b[_I["smart_s"]] += sum(bad)
            b[_I["smart_n"]] += 1
        lat = values.get("host.net.latency_ms")
        if not isinstance(lat, (int, float)) or isinstance(lat, bool):
            lat = values.get("poll.latency_ms")
        if isinstance(lat, (int, float)) and not isinstance(lat, bool) and not reading.stale:
            b[_I["lat_s"]] += lat
            b[_I["lat_n"]] += 1
        km = values.get("printer.head_km")
        if isinstance(km, (int, float)) and not isinstance(km, bool):
            self.head_km = float(km)
        cuts = values.get("printer.cut_count")
        if isinstance(cuts, int) and not isinstance(cuts, bool):
            self.cuts = float(cuts)
        if self.first_ts is None or ts < self.first_ts:
            self.first_ts = ts
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts

    def _split(self, now: float) -> tuple[list[float], list[float], float, float, float, float]:
        """Sum the recent (24 h) and prior buckets; return sums, spans and centres in days."""
        cur = int(now // BUCKET_S)
        rb, pb = [], []
        rc = pc = rw = pw = 0.0
        for idx, b in self.buckets.items():
            age = cur - idx
            if age < 0 or age >= N_BUCKETS:
                continue
            if age < RECENT:
                rb.append(b)
                rc += idx * b[0]
                rw += b[0]
            else:
                pb.append(b)
                pc += idx * b[0]
                pw += b[0]
        zero = [0.0] * len(ACC)
        recent = [sum(c) for c in zip(*rb)] if rb else zero
        prior = [sum(c) for c in zip(*pb)] if pb else list(zero)
        first = self.first_ts if self.first_ts is not None else now
        start_recent = (cur - RECENT + 1) * BUCKET_S
        recent_span = max(now - max(first, start_recent), MIN_SPAN_S)
        prior_span = max(start_recent - max(first, (cur - N_BUCKETS + 1) * BUCKET_S), 0.0)
        gap = ((rc / rw) - (pc / pw)) * BUCKET_S / DAY if rw and pw else 0.0
        return recent, prior, recent_span / DAY, prior_span / DAY, gap, rw

    def vector(self, now: float | None = None) -> list[float]:
        """Return the feature vector (in NAMES order) as of `now` (default: the last reading)."""
        now = now if now is not None else (self.last_ts or 0.0)
        r, p, rdays, pdays, gap, _ = self._split(now)

        def rate(slot: str) -> float:
            return r[_I[slot]] / rdays

        def trend(slot: str) -> float:
            if pdays < 0.5:
                return 0.0
            return r[_I[slot]] / rdays - p[_I[slot]] / pdays

        def mean(a: list[float], s: str, n: str) -> float | None:
            return a[_I[s]] / a[_I[n]] if a[_I[n]] else None

        def mean_trend(s: str, n: str) -> float:
            a, b = mean(r, s, n), mean(p, s, n)
            return a - b if a is not None and b is not None else 0.0

        disk = mean(r, "disk_s", "disk_n")
        disk_growth = mean_trend("disk_s", "disk_n") / gap if gap > 0.1 else 0.0
        smart = mean(r, "smart_s", "smart_n")
        smart_growth = mean_trend("smart_s", "smart_n") / gap if gap > 0.1 else 0.0
        fan, fan_prior = mean(r, "fan_s", "fan_n"), mean(p, "fan_s", "fan_n")
        fan_ratio = fan / fan_prior if fan is not None and fan_prior else 1.0
        lat = mean(r, "lat_s", "lat_n")
        lat_prior = mean(p, "lat_s", "lat_n")
        lat_ratio = lat / max(lat_prior, 1.0) if lat is not None and lat_prior is not None \
            else 1.0
        n = r[_I["n"]]
        return [
            self.cls if self.cls is not None else CLASSES["other"],
            self.head_km / RATED_HEAD_KM,
            self.cuts / RATED_CUTS,
            rate("cut_err"), trend("cut_err"),
            rate("err"), trend("err"),
            rate("overheat"), trend("overheat"),
            rate("jam"),
            rate("decode"), trend("decode"),
            rate("reconn"), trend("reconn"),
            mean(r, "temp_s", "temp_n") or 0.0,
            mean_trend("temp_s", "temp_n"),
            min(fan_ratio, 5.0),
            disk or 0.0, disk_growth,
            smart or 0.0, smart_growth,
            lat or 0.0, lat_ratio,
            rate("timeouts"), trend("timeouts"),
            r[_I["stale"]] / n if n else 0.0,
        ]

    def to_json(self) -> str:
        """Serialize the windows for the state database."""
        return json.dumps({"v": 2, "cls": self.cls, "b": {str(k): v for k, v in
                                                           self.buckets.items()},
                           "last": self.last, "first": self.first_ts, "lastts": self.last_ts,
                           "km": self.head_km, "cuts": self.cuts, "serial": self.serial},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "DeviceWindows":
        """Rebuild windows saved by to_json; raise ValueError if the text is not such a dump."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("v") != 2:
            # Version 1 windows had other slots: a device starts its windows again.
            raise ValueError("not a feature-window dump of version 2")
        w = cls()
        w.cls = data["cls"]
        w.buckets = {int(k): [float(x) for x in v][:len(ACC)] + [0.0] * (len(ACC) - len(v))
                     for k, v in data["b"].items()}
        if len(w.buckets) > N_BUCKETS:
            for k in sorted(w.buckets)[:-N_BUCKETS]:
                del w.buckets[k]
        w.last = dict(data["last"])
        w.first_ts, w.last_ts = data["first"], data["lastts"]
        w.head_km, w.cuts = float(data["km"]), float(data["cuts"])
        serial = data.get("serial")
        w.serial = serial if isinstance(serial, str) else None
        return w


class FeatureStore:
    """The windows of every device, fed by readings, saved to and loaded from the state db."""

    def __init__(self, max_devices: int = MAX_DEVICES):
        self.windows: dict[str, DeviceWindows] = {}
        self.kinds: dict[str, str] = {}
        self.dirty: set[str] = set()
        self.max_devices = max_devices
        self.refused = 0

    def observe(self, reading: Reading) -> None:
        """Fold one reading into its device's windows."""
        w = self.windows.get(reading.device)
        serial = reading.values.get("device.serial")
        if w is not None and isinstance(serial, str) and w.serial not in (None, serial):
            # Another serial number: the device was replaced, its history is not this one's.
            w = self.windows[reading.device] = DeviceWindows()
        if w is None:
            if len(self.windows) >= self.max_devices:
                self.refused += 1
                return
            w = self.windows[reading.device] = DeviceWindows()
            self.kinds[reading.device] = reading.kind
        if isinstance(serial, str):
            w.serial = serial
        w.update(reading)
        self.dirty.add(reading.device)

    def vectors(self, devices: Iterable[str], now: float | None = None) -> list[list[float]]:
        """Return one feature vector per device, in order."""
        return [self.windows[d].vector(now) for d in devices]

    def forget(self, keep: set[str]) -> None:
        """Drop the windows of devices no longer configured."""
        for dev in [d for d in self.windows if d not in keep]:
            del self.windows[dev]
            self.kinds.pop(dev, None)
            self.dirty.discard(dev)

    def save(self, db: sqlite3.Connection, now: float) -> int:
        """Write the windows changed since the last save; return how many (database thread)."""
        rows = [(dev, self.kinds.get(dev, ""), self.windows[dev].to_json(), now)
                for dev in list(self.dirty) if dev in self.windows]
        self.dirty.clear()
        if rows:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO feature_windows (device, kind, windows, updated)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT(device) DO UPDATE SET kind = excluded.kind,"
                    " windows = excluded.windows, updated = excluded.updated", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return len(rows)

    def load(self, db: sqlite3.Connection) -> int:
        """Load saved windows (a row that cannot be read is skipped); return how many."""
        n = 0
        for dev, kind, text in db.execute("SELECT device, kind, windows FROM feature_windows"):
            try:
                self.windows[dev] = DeviceWindows.from_json(text)
            except (ValueError, KeyError, TypeError):
                continue
            self.kinds[dev] = kind
            n += 1
        return n


def finite(vector: list[float]) -> list[float]:
    """Replace any non-finite number by 0 so the model never sees NaN."""
    return [v if math.isfinite(v) else 0.0 for v in vector]
