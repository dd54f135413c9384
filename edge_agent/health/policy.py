"""Health policy: three alert families, score to decision with hysteresis, provenance.

Alert families (docs/alerts.md says what each means and who sees it):
- attention: operator work, not a failure (paper near end or out, cover open, toner low or
  empty, waste full, drawer left open, a jam, a recoverable cutter error, a scanner unplugged,
  a device not answering yet). Store audience, info or warning. One that persists past its
  configured limit during trading hours is escalated: a second alert, `<key>:escalated`, for
  the region. Attention never makes a device `failed`.
- failed (critical): the device cannot work until someone repairs it: an unrecoverable error,
  a cutter or mechanical error still there after `mech_polls` consecutive polls, hrDeviceStatus
  down, a disk SMART says is failing, or no answer for `failed_after` seconds. Power save is
  not failure. A failed alert that supersedes a raised prediction names it.
- predicted_failure (warning): the model's call, one raise per episode. A level is entered when
  the score reaches its threshold and left only when it has stayed below the clear level (the
  watch level unless `clear` says otherwise) for `hold` seconds; transient errors do not
  touch it; `failed` supersedes it, and after that a new episode needs the score to have
  stepped down first.
Every decision and alert body follows edge_protocol (bodies.py).
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from edge_agent.reading import Reading, format_ts

LEVELS = ("ok", "watch", "predicted_failure")
FAMILIES = ("attention", "failed", "predicted_failure")
AUDIENCES = ("store", "region", "central_it")


def next_level(previous: str, score: float, threshold: float, watch: float,
               hysteresis: float) -> str:
    """Return the model's level for a score, given the previous level (hysteresis)."""
    if score >= threshold:
        return "predicted_failure"
    if previous == "predicted_failure" and score >= threshold - hysteresis:
        return "predicted_failure"
    if score >= watch:
        return "watch"
    if previous in ("watch", "predicted_failure") and score >= watch - hysteresis:
        return "watch"
    return "ok"


RANK = {"ok": 0, "watch": 1, "predicted_failure": 2}


def clear_level(limits: "Thresholds") -> float:
    """The score under which a prediction starts to clear: `clear`, or the watch level."""
    return limits.watch if limits.clear is None else limits.clear


def keep_prediction(previous: str, new: str, score: float, clear: float) -> str:
    """A raised prediction stays while the score is at or above the clear level: one episode
    is not cut in two by a score that sags for a day and climbs again."""
    if previous == "predicted_failure" and new != "predicted_failure" and score >= clear:
        return "predicted_failure"
    return new


def hold_level(previous: str, new: str, below_since: float | None, now: float,
               hold: float) -> tuple[str, float | None]:
    """Step down from a level only after the score stayed below it for `hold` seconds.

    Return (level, below_since). A tree model's score moves in steps that can cross the whole
    hysteresis band from one cycle to the next; requiring a day below keeps one episode one
    alert, while a device whose precursor went away still returns to ok.
    """
    if RANK.get(new, 0) >= RANK.get(previous, 0):
        return new, None
    since = below_since if below_since is not None else now
    return (new, None) if now - since >= hold else (previous, since)


@dataclass(frozen=True)
class Rule:
    """One attention alert: what, its severity, when it holds, and how to say it."""

    what: str
    severity: str
    test: Any  # (values, reading) -> bool
    words: str


def _v(name: str, value: Any):
    return lambda values, reading: values.get(name) == value


def _in(name: str, *choices: Any):
    return lambda values, reading: values.get(name) in choices


def _recoverable_cutter(values: Mapping[str, Any], reading: Reading) -> bool:
    return values.get("printer.cutter") == "error" and \
        values.get("printer.error") != "unrecoverable"


RULES: tuple[Rule, ...] = (
    Rule("paper_out", "warning", _v("printer.paper", "out"), "paper roll is out"),
    Rule("paper_near_end", "info", _v("printer.paper", "near_end"), "paper roll is near its end"),
    Rule("cover_open", "warning", _v("printer.cover", "open"), "printer cover is open"),
    Rule("paper_jam", "warning", _v("printer.jam", True), "paper is jammed"),
    Rule("cutter_error", "warning", _recoverable_cutter,
         "autocutter reports an error (recoverable)"),
    Rule("toner_low", "info", _v("printer.toner", "low"), "toner is low"),
    Rule("toner_empty", "warning", _v("printer.toner", "empty"), "toner is empty"),
    Rule("waste_full", "warning", _in("printer.waste", "full"), "waste toner box is full"),
    Rule("drawer_open", "info", _v("printer.drawer", "open"), "cash drawer is open"),
    Rule("scanner_disconnected", "warning", _v("scanner.connected", False),
         "scanner is disconnected"),
    Rule("disk_full", "warning",
         lambda values, r: isinstance(values.get("host.disk_pct"), (int, float))
         and not isinstance(values.get("host.disk_pct"), bool)
         and values["host.disk_pct"] >= 95, "disk is over 95% full"),
    # "offline" is raised by decide() once a device has not answered for offline_after.
)
ATTENTION = tuple(r.what for r in RULES) + ("offline",)


@dataclass(frozen=True)
class Escalation:
    """Seconds an attention alert must persist during trading hours before it is escalated to
    the region; 0 never escalates it."""

    paper_out: float = 900.0
    paper_near_end: float = 0.0
    cover_open: float = 900.0
    paper_jam: float = 900.0
    cutter_error: float = 0.0     # a cutter error that stays becomes `failed` instead
    toner_low: float = 0.0
    toner_empty: float = 4 * 3600.0
    waste_full: float = 3600.0
    drawer_open: float = 1800.0
    scanner_disconnected: float = 1800.0
    disk_full: float = 3600.0
    offline: float = 0.0          # a device that stays silent becomes `failed` instead

    def after(self, what: str) -> float:
        value = getattr(self, what, 0.0)
        return float(value) if isinstance(value, (int, float)) else 0.0


@dataclass
class DeviceHealth:
    """What the policy remembers of one device: its decision and raised alerts (persisted)."""

    decision: str = "ok"
    score: float | None = None
    since: str | None = None
    offline_since: float | None = None
    alerts: dict[str, str] = field(default_factory=dict)  # what -> since (ISO)
    below: float | None = None  # since when the score is below the current level
    level: str = "ok"           # the model's level (kept while failed)
    mech_polls: int = 0         # consecutive fresh readings with a cutter/mechanical error
    rearm: bool = False         # a failure superseded the prediction: wait for a step down
    escalated: dict[str, str] = field(default_factory=dict)  # what -> since of the base alert

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "score": self.score, "since": self.since,
                "offline_since": self.offline_since, "alerts": self.alerts,
                "below": self.below, "level": self.level, "mech_polls": self.mech_polls,
                "rearm": self.rearm, "escalated": self.escalated}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DeviceHealth":
        def num(key):
            v = data.get(key)
            return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

        def strmap(key):
            v = data.get(key) or {}
            return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else {}

        decision = data.get("decision")
        decision = decision if decision in LEVELS + ("failed",) else "ok"
        level = data.get("level")
        level = level if level in LEVELS else (decision if decision in LEVELS else "ok")
        mech = data.get("mech_polls")
        return cls(decision, num("score"),
                   data.get("since") if isinstance(data.get("since"), str) else None,
                   num("offline_since"), strmap("alerts"), num("below"), level,
                   mech if isinstance(mech, int) and not isinstance(mech, bool) and mech >= 0
                   else 0,
                   data.get("rearm") is True, strmap("escalated"))


@dataclass(frozen=True)
class Thresholds:
    """The policy's settings."""

    threshold: float
    watch: float
    hysteresis: float = 0.05
    failed_after: float = 3600.0
    offline_after: float = 300.0
    hold: float = 86400.0
    mech_polls: int = 3
    clear: float | None = None  # a prediction holds while the score is at or above this
                                # (None: the watch level)
    escalation: Escalation = Escalation()
    trading: tuple[float, float] = (7.0, 22.0)  # local hours [start, end)
    utc_offset: Any = None  # callable(epoch) -> seconds east of UTC; None: the system's


def parse_hours(text: str) -> tuple[float, float]:
    """Parse trading hours 'HH:MM-HH:MM' into (start, end) hours; raise ValueError."""
    try:
        a, b = text.split("-")
        out = []
        for part in (a, b):
            h, m = part.strip().split(":")
            if not (h.isdigit() and m.isdigit() and len(m) == 2):
                raise ValueError
            h, m = int(h), int(m)
            if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
                raise ValueError
            out.append(h + m / 60.0)
    except ValueError:
        raise ValueError(f"{text!r} is not HH:MM-HH:MM (such as 07:00-22:00)") from None
    if out[0] == out[1]:
        raise ValueError(f"{text!r}: start and end are the same")
    return out[0], out[1]


def zone_offset(name: str):
    """Return a function epoch -> seconds east of UTC for an IANA zone ('' : the system's)."""
    if not name:
        return None
    import zoneinfo

    zone = zoneinfo.ZoneInfo(name)
    return lambda now: datetime.fromtimestamp(now, zone).utcoffset().total_seconds()


def note_reading(health: DeviceHealth, reading: Reading) -> None:
    """Note what must be seen poll by poll, not once a cycle: since when the device is silent
    (a fresh answer resets it) and how many consecutive fresh readings show a cutter or
    mechanical error (a stale reading neither extends nor ends that run).
    """
    offline = reading.stale and reading.values.get("device.status") != "asleep"
    if offline and health.offline_since is None:
        health.offline_since = reading.ts.timestamp()
    elif not offline:
        # One answer between two timeouts ends the silence: failed_after counts unbroken
        # silence, not the time since the first timeout a cycle happened to see.
        health.offline_since = None
    if reading.stale:
        return
    v = reading.values
    if v.get("printer.cutter") == "error" or v.get("printer.mechanical") == "error":
        health.mech_polls += 1
    else:
        health.mech_polls = 0


def is_failed(reading: Reading | None, health: DeviceHealth, now: float,
              limits: Thresholds) -> str | None:
    """Return why a device counts as failed now, or None.

    A failed device stays failed until it answers again without the failure: a stale reading
    after a failure says nothing of a repair. Attention conditions (paper, cover, toner, a
    recoverable error) never count, nor does power save.
    """
    if reading is None:
        return None
    values = reading.values
    if health.decision == "failed" and reading.stale:
        return "failed, and has not answered since"
    if not reading.stale:
        if values.get("printer.error") == "unrecoverable":
            return "printer reports an unrecoverable error"
        if values.get("device.hr_status") == "down" and not _explained_stop(values):
            return "the printer reports itself down (hrDeviceStatus) with no operator cause"
        if values.get("host.smart.passed") is False:
            return "the system disk's SMART self-assessment says it is failing"
        if health.mech_polls >= limits.mech_polls:
            part = "autocutter" if values.get("printer.cutter") == "error" else "mechanism"
            return f"{part} error not recovered after {health.mech_polls} polls"
    if health.offline_since is not None and now - health.offline_since >= limits.failed_after:
        return f"no answer for {(now - health.offline_since) / 3600:.1f} h"
    return None


def _explained_stop(values: Mapping[str, Any]) -> bool:
    """A stop an operator clears (RFC 3805 reports paper out or a cover open as down(5))."""
    return (values.get("printer.paper") == "out" or values.get("printer.cover") == "open"
            or values.get("printer.jam") is True or values.get("printer.toner") == "empty"
            or values.get("printer.online") is False)


def audience_of(reading: Reading | None, device: str) -> str:
    """Who repairs a failed or failing device: central IT for registers, else the region."""
    kind = reading.kind if reading is not None else ""
    return "central_it" if kind == "host" else "region"


def in_trading(now: float, limits: Thresholds) -> tuple[bool, float]:
    """Return (inside trading hours now, epoch when today's trading began)."""
    offset = limits.utc_offset(now) if limits.utc_offset else _local_offset(now)
    local = now + offset
    day = local - local % 86400.0
    start, end = limits.trading
    hour = (local - day) / 3600.0
    began = day + start * 3600.0 - offset
    if start <= end:
        return start <= hour < end, began
    # Overnight trading (such as 18-02): the window that contains now.
    if hour >= start:
        return True, began
    return hour < end, began - 86400.0


def _local_offset(now: float) -> float:
    return float(_time.localtime(now).tm_gmtoff or 0)


def decide(device: str, health: DeviceHealth, reading: Reading | None, score: float | None,
           features: Mapping[str, float], explanation: list[str], model: str | None,
           limits: Thresholds, now: float) -> tuple[dict | None, list[dict]]:
    """Advance one device's health by one cycle; return (decision body if it changed, alerts).

    `health` is updated in place. Alerts are raised and cleared only on changes.
    """
    ts = format_ts(_dt(now))
    alerts: list[dict] = []
    store_aud = "store"
    if reading is not None:
        offline = reading.stale and reading.values.get("device.status") != "asleep"
        if offline and health.offline_since is None:
            health.offline_since = reading.ts.timestamp()
        elif not offline:
            health.offline_since = None
        for rule in RULES if not reading.stale else ():  # a stale reading says nothing new
            holds = bool(rule.test(reading.values, reading))
            key = rule.what
            if holds and key not in health.alerts:
                health.alerts[key] = format_ts(reading.ts)
                alerts.append(_alert(device, key, "raised", rule.severity, health.alerts[key],
                                     ts, [rule.words], None, "attention", store_aud))
            elif not holds and key in health.alerts:
                alerts += _clear_attention(device, health, key, rule.severity, ts,
                                           [f"no longer: {rule.words}"])
    offline = (health.offline_since is not None
               and now - health.offline_since >= limits.offline_after)
    if offline and "offline" not in health.alerts:
        health.alerts["offline"] = format_ts(_dt(health.offline_since))
        alerts.append(_alert(device, "offline", "raised", "warning", health.alerts["offline"], ts,
                             [f"no answer for {(now - health.offline_since) / 60:.0f} min"],
                             None, "attention", store_aud))
    elif not offline and "offline" in health.alerts and health.offline_since is None:
        alerts += _clear_attention(device, health, "offline", "warning", ts, ["answers again"])
    alerts += _escalate(device, health, limits, now, ts)

    # The model's level moves on its own, failed or not: one prediction episode.
    if score is not None:
        new_level = keep_prediction(health.level, next_level(
            health.level, score, limits.threshold, limits.watch, limits.hysteresis), score,
            clear_level(limits))
        health.level, health.below = hold_level(health.level, new_level, health.below, now,
                                                limits.hold)
        health.score = score
        if health.level != "predicted_failure":
            health.rearm = False
    failed_why = is_failed(reading, health, now, limits)
    previous = health.decision
    new = "failed" if failed_why else health.level
    why = [failed_why] if failed_why else explanation
    changed = new != previous or health.since is None
    body = None
    if changed:
        health.decision = new
        health.since = ts
    body_out = {"device": device, "decision": new,
                "previous": previous if previous != new else None,
                "score": round(score, 6) if score is not None else None,
                "threshold": limits.threshold if score is not None else None,
                "model": model if score is not None else None,
                "features": {k: (round(v, 6) if v is not None else None)
                             for k, v in features.items()},
                "explanation": list(why) or [
                    f"score {score:.3f} (watch {limits.watch:.3f}, threshold "
                    f"{limits.threshold:.3f})" if score is not None
                    else "no score: rule alerts only"],
                "ts": ts}
    if changed:
        body = body_out
    audience = audience_of(reading, device)
    # failed: raised when the device fails, cleared when it works again.
    if failed_why and "failed" not in health.alerts:
        supersedes = None
        if "predicted_failure" in health.alerts:
            since = health.alerts.pop("predicted_failure")
            lead = max(0.0, now - _epoch(since))
            supersedes = {"alert": f"{device}:predicted_failure", "since": since,
                          "lead_s": round(lead, 1)}
            health.rearm = True
            alerts.append(_alert(device, "predicted_failure", "cleared", "warning", since, ts,
                                 [f"superseded: the device failed {lead / 3600:.1f} h after "
                                  "it was predicted"], body_out, "predicted_failure", audience))
        health.alerts["failed"] = ts
        words = list(why)
        if supersedes:
            words.append(f"predicted {supersedes['lead_s'] / 3600:.1f} h before "
                         f"({supersedes['since']})")
        a = _alert(device, "failed", "raised", "critical", ts, ts, words, body_out, "failed",
                   audience)
        if supersedes:
            a["supersedes"] = supersedes
        alerts.append(a)
    elif not failed_why and "failed" in health.alerts:
        since = health.alerts.pop("failed")
        alerts.append(_alert(device, "failed", "cleared", "critical", since, ts,
                             [f"works again (now {new})"], body_out, "failed", audience))
    # predicted_failure: one raise per episode, not while failed.
    if (not failed_why and health.level == "predicted_failure" and not health.rearm
            and "predicted_failure" not in health.alerts):
        health.alerts["predicted_failure"] = ts
        alerts.append(_alert(device, "predicted_failure", "raised", "warning", ts, ts,
                             body_out["explanation"], body_out, "predicted_failure", audience))
    elif health.level != "predicted_failure" and "predicted_failure" in health.alerts:
        since = health.alerts.pop("predicted_failure")
        alerts.append(_alert(device, "predicted_failure", "cleared", "warning", since, ts,
                             [f"score stayed below the clear level for the hold; now "
                              f"{health.level}"], body_out, "predicted_failure", audience))
    return body, alerts


def _clear_attention(device: str, health: DeviceHealth, what: str, severity: str, ts: str,
                     words: list[str]) -> list[dict]:
    since = health.alerts.pop(what)
    out = [_alert(device, what, "cleared", severity, since, ts, words, None, "attention",
                  "store")]
    if what in health.escalated:
        health.escalated.pop(what)
        a = _alert(device, what, "cleared", "warning", since, ts, words, None, "attention",
                   "region")
        a["alert"] += ":escalated"
        a["escalated"] = True
        out.append(a)
    return out


def _escalate(device: str, health: DeviceHealth, limits: Thresholds, now: float,
              ts: str) -> list[dict]:
    """Escalate attention alerts that persisted past their limit during trading hours."""
    out = []
    trading = None
    for what, since in health.alerts.items():
        if what not in ATTENTION or what in health.escalated:
            continue
        after = limits.escalation.after(what)
        if after <= 0:
            continue
        if trading is None:
            trading = in_trading(now, limits)
        open_now, began = trading
        if not open_now:
            continue
        start = max(_epoch(since), began)
        if now - start < after:
            continue
        health.escalated[what] = since
        a = _alert(device, what, "raised", "warning", since, ts,
                   [f"{what.replace('_', ' ')} for {(now - _epoch(since)) / 60:.0f} min "
                    f"(escalates after {after / 60:.0f} min in trading hours)"], None,
                   "attention", "region")
        a["alert"] += ":escalated"
        a["escalated"] = True
        a["escalated_after_s"] = after
        out.append(a)
    return out


def _alert(device: str, what: str, state: str, severity: str, since: str, ts: str,
           explanation: list[str], decision: dict | None, family: str,
           audience: str) -> dict:
    return {"alert": f"{device}:{what}", "device": device, "what": what, "state": state,
            "severity": severity, "since": since, "ts": ts, "explanation": list(explanation),
            "decision": decision, "family": family, "audience": audience}


def _epoch(ts: str) -> float:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)
