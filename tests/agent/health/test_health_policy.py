"""Health policy: hysteresis, rule alerts, failed devices, and bodies that follow the wire."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

import edge_protocol as wire
from edge_agent.health.policy import DeviceHealth, Thresholds, decide, next_level
from edge_agent.reading import Reading

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
LIMITS = Thresholds(threshold=0.8, watch=0.4, hysteresis=0.05, failed_after=3600.0)


def printer(minutes: float, stale: bool = False, **values) -> Reading:
    base = {"device.status": "ok", "printer.paper": "ok", "printer.cover": "closed"}
    base.update({k.replace("__", "."): v for k, v in values.items()})
    if stale:
        return Reading("p1", "escpos", T0 + timedelta(minutes=minutes),
                       {"device.status": base["device.status"]}, True, "timeout")
    return Reading("p1", "escpos", T0 + timedelta(minutes=minutes), base)


LEVEL_CASES = {
    "a score hovering just under the threshold after entering stays predicted_failure":
        ([0.81, 0.79, 0.80, 0.78, 0.79], ["predicted_failure"] * 5),
    "a score that falls past the hysteresis band leaves predicted_failure":
        ([0.85, 0.74], ["predicted_failure", "watch"]),
    "a score hovering just under watch never enters it":
        ([0.39, 0.38, 0.39], ["ok", "ok", "ok"]),
    "a score hovering around watch after entering stays watch":
        ([0.41, 0.37, 0.40, 0.36], ["watch"] * 4),
    "a score dropping from predicted_failure to nothing goes to ok":
        ([0.9, 0.1], ["predicted_failure", "ok"]),
}


@pytest.mark.parametrize("scores,expected", LEVEL_CASES.values(), ids=LEVEL_CASES.keys())
def test_hysteresis_keeps_levels_from_flapping_at_the_threshold(scores, expected):
    level, got = "ok", []
    for s in scores:
        level = next_level(level, s, LIMITS.threshold, LIMITS.watch, LIMITS.hysteresis)
        got.append(level)
    assert got == expected


def test_a_score_oscillating_at_the_threshold_publishes_one_decision_not_one_per_cycle():
    health = DeviceHealth()
    bodies = []
    for i, s in enumerate([0.1, 0.81, 0.78, 0.82, 0.79, 0.80, 0.77]):
        body, _ = decide("p1", health, printer(i), s, {"x": 1.0}, ["why"], "m-1", LIMITS,
                         (T0 + timedelta(minutes=i)).timestamp())
        if body:
            bodies.append(body["decision"])
    assert bodies == ["ok", "predicted_failure"]


def test_decision_and_alert_bodies_follow_the_wire_protocol():
    health = DeviceHealth()
    decide("p1", health, printer(0), 0.1, {"cutter_errors_per_day": 0.0}, [], "m-1", LIMITS,
           T0.timestamp())
    body, alerts = decide("p1", health, printer(1), 0.93, {"cutter_errors_per_day": 14.0},
                          ["cutter errors 14/day and rising"], "m-1", LIMITS,
                          (T0 + timedelta(minutes=1)).timestamp())
    wire.check_decision(body)
    assert body["previous"] == "ok" and body["decision"] == "predicted_failure"
    assert body["model"] == "m-1" and body["threshold"] == 0.8
    assert body["explanation"] == ["cutter errors 14/day and rising"]
    (alert,) = alerts
    wire.check_alert(alert)
    assert alert["alert"] == "p1:predicted_failure" and alert["state"] == "raised"
    assert alert["decision"] == body


def test_paper_out_is_raised_once_and_cleared_when_the_roll_is_changed_without_a_model():
    health = DeviceHealth()
    seen = []
    for i, paper in enumerate(["ok", "out", "out", "out", "ok"]):
        _, alerts = decide("p1", health, printer(i, printer__paper=paper), None, {}, [], None,
                           LIMITS, (T0 + timedelta(minutes=i)).timestamp())
        for a in alerts:
            wire.check_alert(a)
            seen.append((a["what"], a["state"]))
    assert seen == [("paper_out", "raised"), ("paper_out", "cleared")]


def test_a_device_unanswered_past_failed_after_is_failed_and_an_asleep_one_is_not():
    health = DeviceHealth()
    decisions = []
    for minutes in (0, 30, 61, 65):
        body, alerts = decide("p1", health, printer(0, stale=True) if minutes == 0 else
                              printer(minutes, stale=True), None, {}, [], None, LIMITS,
                              (T0 + timedelta(minutes=minutes)).timestamp())
        decisions.append(health.decision)
    assert decisions[-1] == "failed" and decisions[1] != "failed"
    asleep = DeviceHealth()
    for minutes in (0, 90, 180):
        r = Reading("p2", "snmp", T0 + timedelta(minutes=minutes), {"device.status": "asleep"},
                    True, "power save")
        decide("p2", asleep, r, None, {}, [], None, LIMITS,
               (T0 + timedelta(minutes=minutes)).timestamp())
    assert asleep.decision == "ok" and "offline" not in asleep.alerts


def test_an_unrecoverable_printer_error_is_failed_with_a_critical_alert():
    health = DeviceHealth()
    body, alerts = decide("p1", health, printer(0, printer__error="unrecoverable"), 0.2, {}, [],
                          "m-1", LIMITS, T0.timestamp())
    assert body["decision"] == "failed"
    assert ("failed", "critical") in [(a["what"], a["severity"]) for a in alerts]
    for a in alerts:
        wire.check_alert(a)


def test_device_health_survives_a_round_trip_through_its_saved_form():
    health = DeviceHealth("watch", 0.5, "2026-03-02T09:00:00.000Z", None, {"paper_out": "x"})
    assert DeviceHealth.from_dict(health.to_dict()) == health
    assert DeviceHealth.from_dict({"decision": "bogus", "alerts": 3}).decision == "ok"


def test_a_prediction_steps_down_only_after_the_score_stayed_low_for_the_hold():
    health = DeviceHealth()
    decisions = []
    # Hourly cycles: high, then a dip under the band for 3 h, high again, then low for 30 h.
    scores = [0.9] + [0.5] * 3 + [0.9] + [0.1] * 30
    for hour, s in enumerate(scores):
        body, _ = decide("p1", health, printer(hour * 60), s, {}, [], "m-1", LIMITS,
                         (T0 + timedelta(hours=hour)).timestamp())
        if body:
            decisions.append((hour, body["decision"]))
    assert decisions == [(0, "predicted_failure"), (29, "ok")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=80))
def test_predicted_failure_is_left_only_after_the_score_stayed_under_the_band_for_the_hold(scores):
    limits = Thresholds(threshold=0.8, watch=0.4, hysteresis=0.05, hold=6 * 3600.0)
    health = DeviceHealth()
    previous = "ok"
    for hour, s in enumerate(scores):
        now = (T0 + timedelta(hours=hour)).timestamp()
        decide("p1", health, printer(hour * 60), s, {}, [], "m-1", limits, now)
        if s >= limits.threshold:
            assert health.decision == "predicted_failure"
        if previous == "predicted_failure" and health.decision != "predicted_failure":
            window = scores[max(0, hour - 6):hour + 1]
            assert hour >= 6 and all(x < limits.threshold - limits.hysteresis for x in window)
        previous = health.decision
