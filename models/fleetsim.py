"""A fleet simulator of store devices degrading toward failure, producing vocabulary readings.

Every device is one of three classes (receipt printer, barcode scanner, register PC) and may
carry one failure mode whose precursor grows over an onset of days before it fails; healthy
devices have distractor episodes (a bad paper roll, a dirty scanner window, a hot day, an ISP
hiccup) that look like precursors and resolve. models/README.md cites where each parameter
comes from. `python -m models.fleetsim replay --out FILE` writes a JSONL of a degrading printer
and a healthy one for `edge-agent replay`.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from edge_agent.reading import Reading

DAY = 86400.0
HOUR = 3600.0
EPOCH = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()
HORIZON_S = 7 * DAY  # the label: fails within the next 7 days

# Failure modes per class, with their base weights (scaled by wear for the wear-out modes).
MODES = {
    "printer": {"cutter": 0.25, "head": 0.15, "paper_path": 0.3, "connectivity": 0.15},
    "scanner": {"optics": 0.5, "cable": 0.3, "connectivity": 0.2},
    "register": {"disk": 0.3, "thermal": 0.3, "memory": 0.2, "connectivity": 0.2},
}
KINDS = {"printer": "escpos", "scanner": "scanner", "register": "host"}


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
    distractors_per_month: float = 1.0
    noise: float = 1.0              # scale of reading noise
    volume: tuple = (200.0, 1500.0)  # receipts (or scans / 3) per day


TRAIN = Params()
# The held-out fleet: other seeds and other parameter ranges, so evaluation is not on the
# training distribution: shorter and longer onsets, weaker precursors, more distractors.
HELDOUT = Params(name="heldout", fail_base=0.25, onset_days=(3.0, 25.0), peak_scale=(0.4, 1.6),
                 shape=(1.0, 4.0), sudden=0.2, distractors_per_month=1.5, noise=1.3,
                 volume=(150.0, 2000.0))


@dataclass
class Episode:
    """A distractor: a precursor-like burst that resolves on its own."""

    start: float
    end: float
    what: str
    size: float


@dataclass
class SimDevice:
    """One simulated device: its class, wear, failure mode and time, and distractors."""

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

    def progress(self, t: float) -> float:
        """Return the precursor's progress in [0, 1] at time t (0 with no precursor)."""
        if self.fail_at is None or self.mode in (None, "sudden") or self.onset <= 0:
            return 0.0
        x = (t - (self.fail_at - self.onset)) / self.onset
        return 0.0 if x <= 0 else min(x, 1.0) ** self.shape * self.peak

    def label(self, t: float) -> int:
        """1 if the device fails within the horizon after t."""
        return int(self.fail_at is not None and t < self.fail_at <= t + HORIZON_S)

    def episode(self, t: float, what: str) -> float:
        return sum(e.size for e in self.episodes if e.what == what and e.start <= t < e.end)

    def readings(self, step_s: float = HOUR, tail_s: float = 6 * HOUR) -> Iterator[Reading]:
        """Yield readings every step_s from start until end (or tail_s after failure)."""
        rng = random.Random(self.seed * 7919 + 1)
        stop = self.end if self.fail_at is None else min(self.end, self.fail_at + tail_s)
        gen = {"printer": self._printer, "scanner": self._scanner,
               "register": self._register}[self.cls]
        state: dict = {"km": self.head_km0, "cuts": self.cuts0, "cut_err": 0, "jam": 0,
                       "err": 0, "reads": 0, "noreads": 0, "decode": 0, "reconn": 0,
                       "timeouts": 0, "disk": self.base.get("disk", 50.0), "roll": 0.0}
        t = self.start
        while t < stop:
            failed = self.fail_at is not None and t >= self.fail_at
            ts = datetime.fromtimestamp(t, timezone.utc)
            conn = self.progress(t) if self.mode == "connectivity" else 0.0
            conn += self.episode(t, "isp")
            lat_base = self.base.get("lat", 10.0)
            latency = lat_base * (1 + 8 * conn) * math.exp(rng.gauss(0, 0.25 * self.params.noise))
            p_timeout = min(0.9, 0.002 + 0.4 * conn)
            timed_out = rng.random() < p_timeout
            if timed_out:
                state["timeouts"] += 1
            if failed and self.mode == "connectivity" or timed_out:
                yield Reading(self.id, self.kind, ts,
                              {"device.status": "offline", "poll.errors": 1,
                               "poll.timeouts": state["timeouts"]},
                              True, "timeout" if not failed else "no answer")
            else:
                values = gen(rng, t, step_s, state, failed)
                values["poll.latency_ms"] = round(latency, 2)
                values["poll.errors"] = 0
                values["poll.timeouts"] = state["timeouts"]
                yield Reading(self.id, self.kind, ts, values)
            t += step_s

    def _events(self, rng: random.Random, rate_per_day: float, step_s: float) -> int:
        """Draw a Poisson count of events in one step at a rate per day."""
        lam = max(rate_per_day, 0.0) * step_s / DAY
        if lam <= 0:
            return 0
        return _poisson(rng, lam)

    def _activity(self, t: float) -> float:
        """Share of the day's activity in this hour: stores are busy 8:00-20:00."""
        hour = (t % DAY) / HOUR
        return 1.0 / 12 if 8 <= hour < 20 else 0.0

    def _printer(self, rng, t, step_s, s, failed) -> dict:
        act = self._activity(t) * step_s / HOUR
        receipts = self._events(rng, self.volume * act * 24, step_s) if act else 0
        s["km"] += receipts * 0.12 / 1000.0  # about 12 cm of paper a receipt
        s["cuts"] += receipts
        prog = self.progress(t)
        m = self.mode
        s["cut_err"] += self._events(rng, 0.05 + (25 * prog if m == "cutter" else 0)
                                     + self.episode(t, "cutter"), step_s)
        s["jam"] += self._events(rng, 0.05 + (8 * prog if m == "paper_path" else 0)
                                 + self.episode(t, "roll"), step_s)
        s["err"] += self._events(rng, 0.1 + (8 * prog if m == "head" else 0)
                                 + 0.5 * self.episode(t, "roll"), step_s)
        s["roll"] += receipts * 0.12
        paper = "ok"
        if s["roll"] > 75:      # an 80 m roll: near end, then out until someone changes it
            paper = "near_end"
        if s["roll"] > 80:
            paper = "out" if rng.random() < 0.5 else "ok"
            s["roll"] = 0.0 if paper == "ok" else s["roll"]
        temp = (self.base["htemp"] + 15 * act * 12 + (12 * prog if m == "head" else 0)
                + rng.gauss(0, 1.5 * self.params.noise))
        values = {
            "device.status": "error" if failed else ("warning" if paper == "out" else "ok"),
            "printer.paper": paper, "printer.cover": "closed",
            "printer.cutter": "error" if failed and m == "cutter" else "ok",
            "printer.error": "unrecoverable" if failed else "none",
            "printer.jam": bool(failed and m == "paper_path"),
            "printer.head_km": round(s["km"], 4), "printer.cut_count": int(s["cuts"]),
            "printer.head_temp_c": round(temp, 2),
            "printer.cutter_errors": s["cut_err"], "printer.jam_count": s["jam"],
            "printer.error_count": s["err"],
        }
        return values

    def _scanner(self, rng, t, step_s, s, failed) -> dict:
        act = self._activity(t) * step_s / HOUR
        scans = self._events(rng, 3 * self.volume * act * 24, step_s) if act else 0
        prog = self.progress(t)
        m = self.mode
        p_no = min(0.95, self.base["noread"] + (0.3 * prog if m == "optics" else 0)
                   + self.episode(t, "dirty") + (1.0 if failed and m == "optics" else 0))
        no = sum(1 for _ in range(scans) if rng.random() < p_no) if scans < 200 else \
            int(scans * p_no + rng.gauss(0, math.sqrt(scans * p_no * (1 - p_no) + 1e-9)))
        no = max(0, min(no, scans))
        s["reads"] += scans - no
        s["noreads"] += no
        s["decode"] += self._events(rng, 0.5 + (20 * prog if m == "optics" else 0), step_s)
        s["reconn"] += self._events(rng, 0.05 + (10 * prog if m == "cable" else 0)
                                    + self.episode(t, "cable"), step_s)
        return {"device.status": "error" if failed else "ok",
                "scanner.connected": not (failed and m == "cable"),
                "scanner.reads": s["reads"], "scanner.no_reads": s["noreads"],
                "scanner.decode_errors": s["decode"], "scanner.reconnects": s["reconn"]}

    def _register(self, rng, t, step_s, s, failed) -> dict:
        act = self._activity(t) * 12
        prog = self.progress(t)
        m = self.mode
        n = self.params.noise
        s["disk"] += self.base["disk_growth"] * step_s / DAY
        if m == "disk" and self.fail_at is not None:
            # A runaway log fills the disk: it reaches 100% at the failure.
            left = max(self.fail_at - t, step_s)
            s["disk"] += max(0.0, (100 - s["disk"])) * min(1.0, step_s / left) * (prog > 0)
        cleanup = self.episode(t, "disk_bump")
        disk = min(100.0, s["disk"] + cleanup + rng.gauss(0, 0.2 * n))
        temp = (self.base["temp"] + 6 * act + (25 * prog if m == "thermal" else 0)
                + 6 * self.episode(t, "hot") + rng.gauss(0, 1.5 * n))
        mem = (self.base["mem"] + 10 * act + (45 * prog if m == "memory" else 0)
               + rng.gauss(0, 3 * n))
        return {"device.status": "error" if failed else "ok",
                "host.cpu_pct": round(min(100.0, max(0.0, 10 + 30 * act + rng.gauss(0, 5))), 1),
                "host.mem_pct": round(min(100.0, max(0.0, mem)), 1),
                "host.disk_pct": round(max(0.0, disk), 2),
                "host.temp_c": round(temp, 1),
                "host.uptime_s": float((t - self.start) % (30 * DAY)),
                "host.net.latency_ms": round(self.base.get("lat", 10.0)
                                             * (1 + 8 * (self.progress(t)
                                                         if m == "connectivity" else 0)
                                                + 8 * self.episode(t, "isp"))
                                             * math.exp(rng.gauss(0, 0.25 * n)), 2)}


def make_device(rng: random.Random, dev_id: str, cls: str, params: Params, start: float,
                days: float, mode: str | None = "draw", fail_day: float | None = None
                ) -> SimDevice:
    """Draw one device; mode='draw' draws its fate, None keeps it healthy, a name forces it."""
    d = SimDevice(dev_id, cls, start, start + days * DAY, rng.randrange(2**31), params)
    d.volume = rng.uniform(*params.volume)
    d.head_km0 = rng.uniform(0.0, 1.1) * 150.0
    d.cuts0 = int(rng.uniform(0.0, 1.1) * 2_000_000)
    d.base = {"htemp": rng.uniform(30, 40), "noread": rng.uniform(0.01, 0.05),
              "temp": rng.uniform(38, 55), "mem": rng.uniform(25, 50),
              "disk": rng.uniform(20, 75), "disk_growth": rng.uniform(0.0, 0.15),
              "lat": rng.uniform(3, 40)}
    if mode == "draw":
        p = params.fail_base
        if cls == "printer":
            wear = max(d.head_km0 / 150.0, d.cuts0 / 2_000_000)
            p += params.wear_fail * max(0.0, wear - 0.6) ** 2 / 0.25
        if rng.random() < min(p, 0.9):
            if rng.random() < params.sudden:
                mode = "sudden"
            else:
                weights = dict(MODES[cls])
                if cls == "printer":
                    weights["cutter"] *= 0.3 + 2 * (d.cuts0 / 2_000_000) ** 2
                    weights["head"] *= 0.3 + 2 * (d.head_km0 / 150.0) ** 2
                names = sorted(weights)
                mode = rng.choices(names, [weights[n] for n in names])[0]
            fail_day = rng.uniform(2.0, days + 7.0)
        else:
            mode = None
    d.mode = mode
    if mode is not None:
        d.fail_at = start + (fail_day if fail_day is not None else days * 0.8) * DAY
        d.onset = rng.uniform(*params.onset_days) * DAY
        d.peak = rng.uniform(*params.peak_scale)
        d.shape = rng.uniform(*params.shape)
    what = {"printer": ("roll", "cutter", "isp"), "scanner": ("dirty", "cable", "isp"),
            "register": ("hot", "disk_bump", "isp")}[cls]
    size = {"roll": (2, 6), "cutter": (1, 4), "isp": (0.3, 1.0), "dirty": (0.05, 0.15),
            "cable": (1, 4), "hot": (0.6, 1.6), "disk_bump": (3, 8)}
    for _ in range(_poisson(rng, params.distractors_per_month * days / 30.0)):
        s = start + rng.uniform(0, days) * DAY
        w = rng.choice(what)
        d.episodes.append(Episode(s, s + rng.uniform(0.5, 3.0) * DAY, w, rng.uniform(*size[w])))
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


def replay_pair(seed: int = 7, days: float = 30.0, fail_day: float = 24.0,
                step_s: float = HOUR) -> tuple[list[Reading], SimDevice, SimDevice]:
    """Return the time-ordered readings of a printer whose cutter wears out and a healthy one."""
    rng = random.Random(seed)
    bad = make_device(rng, "printer-degrading", "printer", TRAIN, EPOCH, days, mode="cutter",
                      fail_day=fail_day)
    bad.onset, bad.peak, bad.shape = 14 * DAY, 1.0, 1.5
    bad.cuts0 = 1_900_000  # near the rated 2,000,000 cuts
    bad.episodes = []
    good = make_device(rng, "printer-healthy", "printer", TRAIN, EPOCH, days, mode=None)
    good.head_km0, good.cuts0 = 20.0, 200_000
    good.episodes = []
    merged = sorted([*bad.readings(step_s), *good.readings(step_s)],
                    key=lambda r: (r.ts, r.device))
    return merged, bad, good


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.fleetsim",
                                     description="Simulate degrading store devices.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("replay", help="write a JSONL of a degrading printer and a healthy one")
    p.add_argument("--out", required=True)
    p.add_argument("--days", type=float, default=30.0)
    p.add_argument("--fail-day", type=float, default=24.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--step", type=float, default=HOUR, help="seconds between readings")
    args = parser.parse_args(argv)
    readings, bad, _ = replay_pair(args.seed, args.days, args.fail_day, args.step)
    with open(args.out, "w") as out:
        for r in readings:
            out.write(r.to_json() + "\n")
    fail = datetime.fromtimestamp(bad.fail_at, timezone.utc).isoformat()
    print(f"{args.out}: {len(readings)} readings; {bad.id} fails at {fail}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
