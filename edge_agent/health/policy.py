"""Health policy: score to decision with hysteresis, rule alerts that need no model, provenance.

Decisions: ok, watch, predicted_failure (the model), failed (rules: the device says it has
failed, or has not answered for `failed_after` seconds). A level is entered when the score
reaches its threshold and left only when the score falls `hysteresis` below it, so a score
hovering at the threshold does not flap. Rule alerts (paper out, cover open, offline, ...)
come from the last reading alone. Every decision and alert body follows edge_protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from edge_agent.reading import Reading, format_ts

LEVELS = ("ok", "watch", "predicted_failure")


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
    """One rule alert: what, its severity, when it holds, and how to say it."""

    what: str
    severity: str
    test: Any  # (values, reading) -> bool
    words: str


def _v(name: str, value: Any):
    return lambda values, reading: values.get(name) == value


RULES: tuple[Rule, ...] = (
    Rule("paper_out", "warning", _v("printer.paper", "out"), "paper roll is out"),
    Rule("paper_near_end", "info", _v("printer.paper", "near_end"), "paper roll is near its end"),
    Rule("cover_open", "warning", _v("printer.cover", "open"), "printer cover is open"),
    Rule("paper_jam", "warning", _v("printer.jam", True), "paper is jammed"),
    Rule("cutter_error", "warning", _v("printer.cutter", "error"), "autocutter reports an error"),
    Rule("scanner_disconnected", "warning", _v("scanner.connected", False),
         "scanner is disconnected"),
    Rule("disk_full", "critical",
         lambda values, r: isinstance(values.get("host.disk_pct"), (int, float))
         and values["host.disk_pct"] >= 95, "disk is over 95% full"),
    # "offline" is raised by decide() once a device has not answered for offline_after.
)


@dataclass
class DeviceHealth:
    """What the policy remembers of one device: its decision and raised alerts (persisted)."""

    decision: str = "ok"
    score: float | None = None
    since: str | None = None
    offline_since: float | None = None
    alerts: dict[str, str] = field(default_factory=dict)  # what -> since (ISO)
    below: float | None = None  # since when the score is below the current level

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "score": self.score, "since": self.since,
                "offline_since": self.offline_since, "alerts": self.alerts,
                "below": self.below}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DeviceHealth":
        alerts = data.get("alerts") or {}
        decision = data.get("decision")
        return cls(decision if decision in LEVELS + ("failed",) else "ok",
                   data.get("score") if isinstance(data.get("score"), (int, float)) else None,
                   data.get("since") if isinstance(data.get("since"), str) else None,
                   data.get("offline_since") if isinstance(data.get("offline_since"),
                                                           (int, float)) else None,
                   {str(k): str(v) for k, v in alerts.items()} if isinstance(alerts, dict)
                   else {},
                   data.get("below") if isinstance(data.get("below"), (int, float))
                   else None)


@dataclass(frozen=True)
class Thresholds:
    """The policy's settings."""

    threshold: float
    watch: float
    hysteresis: float = 0.05
    failed_after: float = 3600.0
    offline_after: float = 300.0
    hold: float = 86400.0


def is_failed(reading: Reading | None, health: DeviceHealth, now: float,
              failed_after: float) -> str | None:
    """Return why a device counts as failed now, or None.

    A failed device stays failed until it answers again without an error: a stale reading
    after a failure says nothing of a repair.
    """
    if reading is None:
        return None
    values = reading.values
    if health.decision == "failed" and reading.stale:
        return "failed, and has not answered since"
    if values.get("printer.error") == "unrecoverable":
        return "printer reports an unrecoverable error"
    if not reading.stale and values.get("device.status") == "error":
        return "device reports an error state"
    if health.offline_since is not None and now - health.offline_since >= failed_after:
        return f"no answer for {(now - health.offline_since) / 3600:.1f} h"
    return None


def decide(device: str, health: DeviceHealth, reading: Reading | None, score: float | None,
           features: Mapping[str, float], explanation: list[str], model: str | None,
           limits: Thresholds, now: float) -> tuple[dict | None, list[dict]]:
    """Advance one device's health by one cycle; return (decision body if it changed, alerts).

    `health` is updated in place. Alerts are raised and cleared only on changes.
    """
    ts = format_ts(_dt(now))
    alerts: list[dict] = []
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
                                     ts, [rule.words], None))
            elif not holds and key in health.alerts:
                since = health.alerts.pop(key)
                alerts.append(_alert(device, key, "cleared", rule.severity, since, ts,
                                     [f"no longer: {rule.words}"], None))
    offline = (health.offline_since is not None
               and now - health.offline_since >= limits.offline_after)
    if offline and "offline" not in health.alerts:
        health.alerts["offline"] = format_ts(_dt(health.offline_since))
        alerts.append(_alert(device, "offline", "raised", "warning", health.alerts["offline"], ts,
                             [f"no answer for {(now - health.offline_since) / 60:.0f} min"],
                             None))
    elif not offline and "offline" in health.alerts and health.offline_since is None:
        since = health.alerts.pop("offline")
        alerts.append(_alert(device, "offline", "cleared", "warning", since, ts,
                             ["answers again"], None))
    failed_why = is_failed(reading, health, now, limits.failed_after)
    previous = health.decision
    if failed_why:
        new = "failed"
        why = [failed_why]
    elif score is None:
        new = "ok" if previous == "failed" else previous
        why = explanation
    else:
        new = next_level(previous if previous != "failed" else "ok", score, limits.threshold,
                         limits.watch, limits.hysteresis)
        if previous != "failed":
            new, health.below = hold_level(previous, new, health.below, now, limits.hold)
        why = explanation
    if score is not None:
        health.score = score
    if new == previous and health.since is not None:
        return None, alerts
    health.decision = new
    health.since = ts
    body = {"device": device, "decision": new,
            "previous": previous if previous != new else None,
            "score": round(score, 6) if score is not None else None,
            "threshold": limits.threshold if score is not None else None,
            "model": model if score is not None else None,
            "features": {k: (round(v, 6) if v is not None else None)
                         for k, v in features.items()},
            "explanation": list(why) or [
                f"score {score:.3f} (watch {limits.watch:.3f}, threshold {limits.threshold:.3f})"
                if score is not None else "no score: rule alerts only"],
            "ts": ts}
    for level, severity in (("predicted_failure", "warning"), ("failed", "critical")):
        if new == level and previous != level:
            health.alerts[level] = ts
            alerts.append(_alert(device, level, "raised", severity, ts, ts, body["explanation"],
                                 body))
        elif previous == level and new != level and level in health.alerts:
            since = health.alerts.pop(level)
            alerts.append(_alert(device, level, "cleared", severity, since, ts,
                                 [f"now {new}"], body))
    return body, alerts


def _alert(device: str, what: str, state: str, severity: str, since: str, ts: str,
           explanation: list[str], decision: dict | None) -> dict:
    return {"alert": f"{device}:{what}", "device": device, "what": what, "state": state,
            "severity": severity, "since": since, "ts": ts, "explanation": list(explanation),
            "decision": decision}


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)
