"""A fleet simulator of store devices, in readings shaped exactly as the collectors shape them.

Every device is one of three classes (an Epson receipt printer polled by the `escpos` collector,
a serial barcode scanner polled by `scanner`, the register PC polled by `host`) and reports a
reading every `step_s` seconds with only the names its collector declares (CAPABILITIES) plus
the poll loop's `poll.errors`/`poll.timeouts`: event counters are counts since the agent
started, states are what a poll would see at that instant, the maintenance counters (GS g 2)
and SMART are refreshed hourly, a silent device gives the scheduler's stale reading.
tests/agent/health/test_model_parity.py holds it to that.

Failure modes with a precursor that grows over an onset of days:
- printer `cutter`: a worn autocutter (high GS g 2 cut count) errs more and more, then stays in
  error; `head`: the head overheats (auto-recoverable errors) more and more, then an
  unrecoverable error; `link`: a degrading link (latency rising, more and more unanswered
  polls), then silence;
- scanner `cable`: reconnects and bad frames rising, then disconnected;
- register `fan`: the fan slows, the temperature climbs over days, then the machine stops;
  `disk_wear`: SMART bad sectors grow, then SMART fails; `disk_fill`: a runaway log fills the
  disk;
- every class: `sudden`, with no precursor.
Benign patterns on every device: roll changes (one to three a day on a busy printer: near end,
paper out for minutes, cover open), nightly power save, lunchtime latency spikes with an
occasional timeout, hot afternoons, weekly disk growth with a cleanup, and a bad week of errors
that a technician fixes. models/README.md cites where the numbers come from.
`python -m models.fleetsim replay --out FILE` writes a JSONL of a wearing printer and a healthy
one for `edge-agent replay`; `python -m models.fleetsim fleet --out FILE` a whole fleet.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator

from edge_agent.reading import Reading

DAY = 86400.0
HOUR = 3600.0
EPOCH = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()
HORIZON_S = 14 * DAY  # the label: fails within the next 14 days
LEAD_MIN_S = 2 * DAY  # a useful prediction comes at least 48 hours ahead
LINE_M = 30 / 180 * 0.0254  # one GS g 2 line feed: 30 dots at 1/180 inch
RECEIPT_M = 0.12
ROLL_M = 80.0
NEAR_END_M = 5.0
RATED_CUTS = 2_000_000
RATED_HEAD_KM = 150.0

MODES = {
    "printer": {"cutter": 0.35, "head": 0.3, "link": 0.35},
    "scanner": {"cable": 1.0},
    "register": {"fan": 0.35, "disk_wear": 0.35, "disk_fill": 0.3},
}
KINDS = {"printer": "escpos", "scanner": "scanner", "register": "host"}
# What the poll loop adds to every reading (edge_agent/scheduler.py).
POLL_LOOP = ("poll.errors", "poll.timeouts")


@dataclass(frozen=True)
class Params:
    """One draw of the simulator's parameters (ranges are (low, high), drawn per device)."""

    name: str = "train"
    fail_base: float = 0.22         # share of devices that fail in the window, before wear
    wear_fail: float = 0.5          # extra share at full rated wear (printers)
    onset_days: tuple = (5.0, 20.0)  # precursor length before failure
    peak_scale: tuple = (0.6, 1.4)   # precursor strength relative to the nominal peak
    shape: tuple = (1.0, 3.0)        # precursor curvature: 1 linear, 3 late and sharp
    sudden: float = 0.15            # share of failures with no precursor (random failures)
    bad_weeks_per_year: float = 4.0  # a bad week of errors a technician fixes
    hot_spells_per_month: float = 1.0
    noise: float = 1.0              # scale of reading noise
    volume: tuple = (150.0, 1800.0)  # receipts (or scans / 3) per day
    lunch_timeout: float = 0.03     # chance a lunchtime poll times out
    no_fan_share: float = 0.3       # registers that expose no fan speed


TRAIN = Params()
# The held-out fleet: other seeds and other parameter ranges, so evaluation is not on the
# training distribution: shorter and longer onsets, weaker precursors, more distractors.
HELDOUT = Params(name="heldout", fail_base=0.25, onset_days=(4.0, 25.0), peak_scale=(0.5, 1.6),
                 shape=(1.0, 3.5), sudden=0.2, bad_weeks_per_year=6.0,
                 hot_spells_per_month=1.5, noise=1.3, volume=(100.0, 2200.0),
                 lunch_timeout=0.05, no_fan_share=0.4)
# A wider draw for training only (models/train.py mixes a fleet of it in): ranges that take in
# the training draw's and go past the held-out draw's, so the model is not built for one draw.
WIDE = Params(name="wide", fail_base=0.25, onset_days=(3.0, 28.0), peak_scale=(0.4, 1.8),
              shape=(1.0, 4.0), sudden=0.2, bad_weeks_per_year=8.0, hot_spells_per_month=2.0,
              noise=1.4, volume=(80.0, 2500.0), lunch_timeout=0.06, no_fan_share=0.5)
DRAWS = {p.name: p for p in (TRAIN, HELDOUT, WIDE)}


@dataclass
class Episode:
    """A benign burst that resolves on its own (or when a technician comes)."""

    start: float
    end: float
    what: str
    size: float


@dataclass
class SimDevice:
    """One simulated device: its class, wear, failure mode and time, and benign episodes."""

    id: str
    cls: str
    start: float
    end: float
    seed: int
    params: Params
    mode: str | None = None
    fail_at: float | None = None
    onset: float = 0.0
    peak: float = 1.0
    shape: float = 2.0
    head_km0: float = 0.0
    cuts0: int = 0
    volume: float = 500.0
    base: dict = field(default_factory=dict)
    episodes: list = field(default_factory=list)

    @property
    def kind(self) -> str:
        return KINDS[self.cls]

    @property
    def has_precursor(self) -> bool:
        return self.mode is not None and self.mode != "sudden"

    def progress(self, t: float) -> float:
        """Return the precursor's progress in [0, peak] at time t (0 with no precursor)."""
        if self.fail_at is None or not self.has_precursor or self.onset <= 0:
            return 0.0
        x = (t - (self.fail_at - self.onset)) / self.onset
        return 0.0 if x <= 0 else min(x, 1.0) ** self.shape * self.peak

    def label(self, t: float) -> int:
        """1 if the device fails within the horizon after t."""
        return int(self.fail_at is not None and t < self.fail_at <= t + HORIZON_S)

    def episode(self, t: float, what: str) -> float:
        return sum(e.size for e in self.episodes if e.what == what and e.start <= t < e.end)

    def readings(self, step_s: float = 1800.0, tail_s: float = 6 * HOUR) -> Iterator[Reading]:
        """Yield readings every step_s from start until end (or tail_s after failure)."""
        rng = random.Random(self.seed * 7919 + 1)
        stop = self.end if self.fail_at is None else min(self.end, self.fail_at + tail_s)
        if self.mode in ("fan",) and self.fail_at is not None:
            stop = min(stop, self.fail_at)  # the register stops, and the agent with it
        gen = {"printer": self._printer, "scanner": self._scanner,
               "register": self._register}[self.cls]
        s: dict = {"lines": int(self.head_km0 * 1000 / LINE_M), "cuts": self.cuts0,
                   "hours": int(self.base.get("hours", 5000)), "cut_err": 0, "err": 0,
                   "overheats": 0, "reads": 0, "decode": 0, "reconn": 0, "timeouts": 0,
                   "failures": 0, "roll": rng.uniform(0, ROLL_M),
                   "disk": self.base.get("disk", 50.0), "bad": self.base.get("bad", 0),
                   "lunch_prev": False}
        t = self.start
        while t < stop:
            failed = self.fail_at is not None and t >= self.fail_at
            ts = datetime.fromtimestamp(t, timezone.utc)
            hour = (t % DAY) / HOUR
            lunch = 12.0 <= hour < 14.0
            link = self.progress(t) if self.mode == "link" else 0.0
            # An occasional lunchtime timeout is one poll; the next poll 30 s later answers, so
            # two readings in a row never both come from it (the readings are 30 min apart).
            lunch_p = self.params.lunch_timeout if lunch and self.cls == "printer" and \
                not s["lunch_prev"] else 0.0
            p_timeout = min(0.95, 0.001 + lunch_p + 0.5 * link ** 1.5)
            silent = (failed and self.mode == "link") or rng.random() < p_timeout
            s["lunch_prev"] = silent and lunch_p > 0
            if silent:
                s["timeouts"] += 1
                s["failures"] += 1
                yield Reading(self.id, self.kind, ts,
                              {"device.status": "offline", "poll.errors": s["failures"],
                               "poll.timeouts": s["timeouts"]},
                              True, "no reply to DLE EOT 1 within 1 s" if self.cls == "printer"
                              else "timeout")
            else:
                s["failures"] = 0
                values = gen(rng, t, step_s, s, failed, lunch, link)
                values["poll.errors"] = 0
                values["poll.timeouts"] = s["timeouts"]
                yield Reading(self.id, self.kind, ts, values)
            t += step_s

    def _events(self, rng: random.Random, rate_per_day: float, step_s: float) -> int:
        """Draw a Poisson count of events in one step at a rate per day."""
        lam = max(rate_per_day, 0.0) * step_s / DAY
        return _poisson(rng, lam) if lam > 0 else 0

    def _busy(self, t: float) -> float:
        """Share of the day's activity in the hour at t: stores are busy 8:00-20:00."""
        hour = (t % DAY) / HOUR
        return 1.0 / 12 if 8 <= hour < 20 else 0.0

    def _printer(self, rng, t, step_s, s, failed, lunch, link) -> dict:
        n = self.params.noise
        m = self.mode
        prog = self.progress(t)
        act = self._busy(t) * step_s / HOUR
        receipts = self._events(rng, self.volume * act * DAY / step_s, step_s) if act else 0
        s["lines"] += int(receipts * RECEIPT_M / LINE_M)
        s["cuts"] += receipts
        s["hours"] += step_s / HOUR
        # Roll changes: the roll runs out, paper is out for a few minutes, the cover is opened
        # to change it. The poll at the end of this step sees whatever is going on then.
        paper, cover = "ok", "closed"
        s["roll"] += receipts * RECEIPT_M
        if s["roll"] >= ROLL_M:
            out_for = rng.uniform(60, 1500)          # 1 to 25 minutes until someone notices
            ran_out = rng.uniform(0, step_s)          # when in this step it ran out
            left = step_s - ran_out
            s["roll"] = 0.0
            if left < out_for:
                paper = "out"
                cover = "open" if out_for - left < 60 else "closed"
        elif ROLL_M - s["roll"] < NEAR_END_M:
            paper = "near_end"
        wear = s["cuts"] / RATED_CUTS
        bad = self.episode(t, "bad_week")
        cut_rate = 0.03 + 0.2 * max(0.0, wear - 0.8) + (18 * prog if m == "cutter" else 0.0) \
            + bad * (1 if self.base["bad_kind"] == "cutter" else 0)
        heat_rate = 0.05 + (10 * prog if m == "head" else 0.0) \
            + self.episode(t, "busy_heat") + bad * (1 if self.base["bad_kind"] == "heat" else 0)
        other_rate = 0.05 + bad * (0.5 if self.base["bad_kind"] == "other" else 0)
        ce = self._events(rng, cut_rate, step_s)
        oh = self._events(rng, heat_rate, step_s)
        ot = self._events(rng, other_rate, step_s)
        s["cut_err"] += ce
        s["overheats"] += oh
        s["err"] += ce + oh + ot
        # A recoverable error lasts about a minute: the poll sees one only by chance.
        cutter_now = rng.random() < 1 - math.exp(-cut_rate / 1440.0)
        heat_now = rng.random() < 1 - math.exp(-heat_rate / 1440.0)
        error = "recoverable" if cutter_now or heat_now else "none"
        if failed:
            if m == "cutter":
                cutter_now, error = True, "recoverable"
            else:
                error = "unrecoverable"
        status = "ok"
        if error != "none" or paper == "out" or cover == "open" or cutter_now:
            status = "error"
        elif paper == "near_end":
            status = "warning"
        hour = (t % DAY) / HOUR
        if status == "ok" and not (7 <= hour < 21 or self.base["never_sleeps"]):
            status = "asleep"  # nightly power save: the wake byte gets an answer
        latency = self.base["lat"] * (1 + (rng.uniform(1, 3) if lunch else 0) + 6 * link) \
            * math.exp(rng.gauss(0, 0.25 * n))
        values = {
            "device.status": status, "device.model": "TM-T88V",
            "device.firmware": "30.01 ESC/POS", "printer.online": status in ("ok", "asleep",
                                                                               "warning"),
            "printer.cover": cover, "printer.paper": paper,
            "printer.cutter": "error" if cutter_now else "ok", "printer.error": error,
            "printer.overheat": heat_now and not failed,
            "printer.drawer": "closed", "poll.latency_ms": round(latency, 2),
            "printer.cutter_errors": s["cut_err"], "printer.error_count": s["err"],
            "printer.overheats": s["overheats"],
        }
        if t % HOUR < step_s:  # GS g 2, hourly
            values.update({"printer.counter.148": s["lines"],
                           "printer.counter.149": s["lines"] * 30,
                           "printer.counter.178": s["cuts"],
                           "printer.counter.198": int(s["hours"]),
                           "printer.head_km": round(s["lines"] * LINE_M / 1000.0, 4),
                           "printer.cut_count": s["cuts"],
                           "printer.operating_hours": int(s["hours"])})
        return values

    def _scanner(self, rng, t, step_s, s, failed, lunch, link) -> dict:
        act = self._busy(t) * step_s / HOUR
        scans = self._events(rng, 3 * self.volume * act * DAY / step_s, step_s) if act else 0
        prog = self.progress(t)
        m = self.mode
        bad = self.episode(t, "bad_week")
        s["reads"] += scans
        s["decode"] += self._events(rng, self.base["decode"] + (40 * prog if m == "cable" else 0)
                                    + 8 * bad, step_s)
        s["reconn"] += self._events(rng, 0.03 + (8 * prog if m == "cable" else 0)
                                    + 0.5 * bad * (self.base["bad_kind"] == "cutter"), step_s)
        connected = not (failed and m in ("cable", "sudden"))
        return {"device.status": "ok" if connected else "warning",
                "scanner.connected": connected,
                "scanner.reads": s["reads"], "scanner.decode_errors": s["decode"],
                "scanner.reconnects": s["reconn"],
                "scanner.heartbeat": "off",
                "scanner.last_scan_age_s": round(rng.uniform(1, 300), 1) if s["reads"] else None,
                "poll.latency_ms": round(rng.uniform(0.05, 0.5), 3)}

    def _register(self, rng, t, step_s, s, failed, lunch, link) -> dict:
        busy = self._busy(t) * 12
        prog = self.progress(t)
        m = self.mode
        n = self.params.noise
        hour = (t % DAY) / HOUR
        # Weekly disk growth with a cleanup (Sunday night), and a runaway log for disk_fill.
        s["disk"] += self.base["disk_growth"] * step_s / DAY
        if int(t // DAY) % 7 == 6 and hour < step_s / HOUR:
            s["disk"] = max(self.base["disk"], s["disk"] - 7 * self.base["disk_growth"])
        if m == "disk_fill" and self.fail_at is not None and prog > 0:
            left = max(self.fail_at - t, step_s)
            s["disk"] += max(0.0, (100 - s["disk"])) * min(1.0, step_s / left)
        disk = min(100.0, s["disk"] + rng.gauss(0, 0.1 * n))
        hot = self.episode(t, "hot") * (1.0 if 12 <= hour < 19 else 0.3)
        fan_loss = (0.8 * prog if m == "fan" else 0.0)
        temp = (self.base["temp"] + 5 * busy + 8 * hot + 30 * fan_loss + rng.gauss(0, 1.2 * n))
        if m == "disk_wear" and prog > 0:
            s["bad"] = max(s["bad"], int(self.base["bad"] + 400 * prog ** 1.2))
        elif self.episode(t, "bad_week") and rng.random() < 0.02:
            s["bad"] += 1  # a sector remapped once in a while: not a trend
        values = {"device.status": "ok",
                  "host.cpu_pct": round(min(100.0, max(0.0, 8 + 30 * busy + rng.gauss(0, 5))), 1),
                  "host.mem_pct": round(min(100.0, max(0.0, self.base["mem"] + 8 * busy
                                                      + rng.gauss(0, 3 * n))), 1),
                  "host.swap_pct": round(max(0.0, rng.gauss(2, 1)), 1),
                  "host.disk_pct": round(max(0.0, disk), 2),
                  "host.disk.0.pct": round(max(0.0, disk), 2),
                  "host.temp_c": round(temp, 1),
                  "host.uptime_s": float((t - self.start) % (30 * DAY)),
                  "host.load_1m": round(max(0.0, 0.2 + busy + rng.gauss(0, 0.2)), 2),
                  "poll.latency_ms": round(rng.uniform(100, 130), 3)}
        lat = self.base["lat"] * (1 + (rng.uniform(1, 4) if lunch else 0)) \
            * math.exp(rng.gauss(0, 0.25 * n))
        values["host.net.latency_ms"] = round(lat, 2) if rng.random() > 0.002 else None
        values["host.net.0.latency_ms"] = values["host.net.latency_ms"]
        if values["host.net.latency_ms"] is None:
            values["device.status"] = "warning"
        if self.base["fan"]:
            values["host.fan_rpm"] = round(max(0.0, self.base["fan_rpm"] * (1 - fan_loss)
                                               * (1 + 0.1 * hot) + rng.gauss(0, 20)), 0)
        smart_failed = failed and m == "disk_wear"
        values.update({"host.smart.passed": not smart_failed,
                       "host.smart.reallocated": int(s["bad"] * 0.7),
                       "host.smart.pending": int(s["bad"] * 0.3),
                       "host.smart.uncorrectable": 0, "host.smart.crc_errors": 0,
                       "host.smart.power_on_hours": int(self.base["hours"]
                                                        + (t - self.start) / HOUR),
                       "host.smart.temp_c": round(temp - 15, 1)})
        return values


def make_device(rng: random.Random, dev_id: str, cls: str, params: Params, start: float,
                days: float, mode: str | None = "draw", fail_day: float | None = None
                ) -> SimDevice:
    """Draw one device; mode='draw' draws its fate, None keeps it healthy, a name forces it."""
    d = SimDevice(dev_id, cls, start, start + days * DAY, rng.randrange(2**31), params)
    d.volume = rng.uniform(*params.volume)
    d.head_km0 = rng.uniform(0.0, 1.05) * RATED_HEAD_KM
    d.cuts0 = int(rng.uniform(0.0, 1.05) * RATED_CUTS)
    d.base = {"decode": rng.uniform(0.2, 3.0), "temp": rng.uniform(38, 55),
              "mem": rng.uniform(25, 50), "disk": rng.uniform(20, 70),
              "disk_growth": rng.uniform(0.0, 1.0), "lat": rng.uniform(3, 40),
              "hours": rng.uniform(100, 30000), "bad": rng.choice([0] * 8 + [1, 2, 8]),
              "fan": rng.random() >= params.no_fan_share, "fan_rpm": rng.uniform(1200, 3000),
              "never_sleeps": rng.random() < 0.2,
              "bad_kind": rng.choice(("cutter", "heat", "other"))}
    if mode == "draw":
        p = params.fail_base
        if cls == "printer":
            wear = d.cuts0 / RATED_CUTS
            p += params.wear_fail * max(0.0, wear - 0.6) ** 2 / 0.2
        if rng.random() < min(p, 0.9):
            if rng.random() < params.sudden:
                mode = "sudden"
            else:
                weights = dict(MODES[cls])
                if cls == "printer":
                    weights["cutter"] *= 0.2 + 3 * (d.cuts0 / RATED_CUTS) ** 3
                    weights["head"] *= 0.2 + 3 * (d.head_km0 / RATED_HEAD_KM) ** 3
                names = sorted(weights)
                mode = rng.choices(names, [weights[n] for n in names])[0]
            fail_day = rng.uniform(3.0, days + 14.0)
        else:
            mode = None
    d.mode = mode
    if mode is not None:
        d.fail_at = start + (fail_day if fail_day is not None else days * 0.8) * DAY
        d.onset = rng.uniform(*params.onset_days) * DAY
        d.peak = rng.uniform(*params.peak_scale)
        d.shape = rng.uniform(*params.shape)
        if mode == "cutter":
            # A cutter that dies of wear has done most of its rated cuts by then.
            d.cuts0 = max(d.cuts0, int(rng.uniform(0.85, 1.05) * RATED_CUTS))
        if mode == "head":
            # So has a head that dies of overheating: most of its rated paper length.
            d.head_km0 = max(d.head_km0, rng.uniform(0.8, 1.05) * RATED_HEAD_KM)
    # Benign episodes: a bad week of errors (fixed by a technician), hot spells, busy days
    # that heat the head.
    for _ in range(_poisson(rng, params.bad_weeks_per_year * days / 365.0)):
        s = start + rng.uniform(-3, days) * DAY
        d.episodes.append(Episode(s, s + rng.uniform(3.0, 8.0) * DAY, "bad_week",
                                  rng.uniform(2.0, 8.0)))
    if cls == "register":
        for _ in range(_poisson(rng, params.hot_spells_per_month * days / 30.0)):
            s = start + rng.uniform(-2, days) * DAY
            d.episodes.append(Episode(s, s + rng.uniform(2.0, 6.0) * DAY, "hot",
                                      rng.uniform(0.5, 1.5)))
    if cls == "printer":
        for _ in range(_poisson(rng, days / 30.0)):
            s = start + rng.uniform(0, days) * DAY
            d.episodes.append(Episode(s, s + rng.uniform(0.5, 2.0) * DAY, "busy_heat",
                                      rng.uniform(0.5, 3.0)))
    return d


def _poisson(rng: random.Random, lam: float) -> int:
    """Draw a Poisson count (Knuth's method; a normal approximation past 30)."""
    if lam > 30:
        return max(0, int(rng.gauss(lam, math.sqrt(lam))))
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def fleet(seed: int, devices: int, days: float, params: Params = TRAIN) -> list[SimDevice]:
    """Draw a fleet: devices split evenly over the classes, all reproducible from the seed."""
    rng = random.Random(seed)
    start = EPOCH + seed % 97 * DAY
    classes = ("printer", "scanner", "register")
    return [make_device(rng, f"{classes[i % 3]}-{seed}-{i}", classes[i % 3], params, start, days)
            for i in range(devices)]


def merged(devices: list[SimDevice], step_s: float) -> Iterator[Reading]:
    """Every device's readings in time order (as one store's agent would record them)."""
    return heapq.merge(*(d.readings(step_s) for d in devices),
                       key=lambda r: (r.ts, r.device))


def replay_pair(seed: int = 7, days: float = 30.0, fail_day: float = 24.0,
                step_s: float = 1800.0) -> tuple[list[Reading], SimDevice, SimDevice]:
    """Return the time-ordered readings of a printer whose cutter wears out and a healthy one."""
    rng = random.Random(seed)
    bad = make_device(rng, "printer-degrading", "printer", TRAIN, EPOCH, days, mode="cutter",
                      fail_day=fail_day)
    bad.onset, bad.peak, bad.shape = 14 * DAY, 1.0, 1.5
    bad.cuts0 = 1_840_000  # 92% of the rated 2,000,000 cuts
    bad.episodes = []
    good = make_device(rng, "printer-healthy", "printer", TRAIN, EPOCH, days, mode=None)
    good.head_km0, good.cuts0 = 20.0, 200_000
    good.episodes = []
    return list(merged([bad, good], step_s)), bad, good


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.fleetsim",
                                     description="Simulate store devices in collector readings.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("replay", help="write a JSONL of a wearing printer and a healthy one")
    p.add_argument("--out", required=True)
    p.add_argument("--days", type=float, default=30.0)
    p.add_argument("--fail-day", type=float, default=24.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--step", type=float, default=1800.0, help="seconds between readings")
    f = sub.add_parser("fleet", help="write a JSONL of a whole fleet and its truth")
    f.add_argument("--out", required=True)
    f.add_argument("--truth", required=True, help="JSON file of each device's fate")
    f.add_argument("--seed", type=int, default=777)
    f.add_argument("--devices", type=int, default=300)
    f.add_argument("--days", type=float, default=56.0)
    f.add_argument("--params", choices=("train", "heldout"), default="heldout")
    f.add_argument("--step", type=float, default=1800.0)
    args = parser.parse_args(argv)
    if args.cmd == "replay":
        readings, bad, _ = replay_pair(args.seed, args.days, args.fail_day, args.step)
        with open(args.out, "w") as out:
            for r in readings:
                out.write(r.to_json() + "\n")
        fail = datetime.fromtimestamp(bad.fail_at, timezone.utc).isoformat()
        print(f"{args.out}: {len(readings)} readings; {bad.id} fails at {fail}",
              file=sys.stderr)
        return 0
    devs = fleet(args.seed, args.devices, args.days,
                 TRAIN if args.params == "train" else HELDOUT)
    n = write_fleet(devs, args.out, args.truth, args.step)
    print(f"{args.out}: {n} readings of {len(devs)} devices", file=sys.stderr)
    return 0


def write_fleet(devs: list[SimDevice], out_path: str, truth_path: str, step_s: float) -> int:
    """Write a fleet's readings (JSONL, time order) and each device's fate (JSON)."""
    n = 0
    with open(out_path, "w") as out:
        for r in merged(devs, step_s):
            out.write(r.to_json() + "\n")
            n += 1
    truth = {d.id: {"cls": d.cls, "mode": d.mode, "fail_at": d.fail_at, "start": d.start,
                    "end": d.end, "precursor": d.has_precursor} for d in devs}
    with open(truth_path, "w") as f:
        json.dump(truth, f)
    return n


if __name__ == "__main__":
    sys.exit(main())
