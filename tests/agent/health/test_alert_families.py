"""The three alert families (docs/alerts.md): attention, failed, predicted_failure.

Each story runs readings through the real HealthEngine (features, policy; no model unless a
test gives scores), and the alerts through the hub's regional-feed filter.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import edge_protocol as wire
from edge_agent.config import ScoringSection
from edge_agent.health.engine import HealthEngine
from edge_agent.health.policy import (DeviceHealth, Thresholds, decide, in_trading,
                                      note_reading)
from edge_agent.reading import Reading, format_ts
from hub.domains.alerts.feed import regional

# A Wednesday 10:00 UTC: inside the default trading hours when the zone is UTC.
T0 = datetime(2026, 3, 4, 10, 0, tzinfo=timezone.utc)
TS0 = format_ts(T0)
UTC = lambda now: 0.0  # noqa: E731
LIMITS = Thresholds(threshold=0.8, watch=0.4, utc_offset=UTC)


def printer(seconds: float, stale: bool = False, **values) -> Reading:
    base = {"device.status": "ok", "printer.paper": "ok", "printer.cover": "closed",
            "printer.cutter": "ok", "printer.error": "none"}
    base.update({k.replace("__", "."): v for k, v in values.items()})
    ts = T0 + timedelta(seconds=seconds)
    if stale:
        return Reading("p1", "escpos", ts, {"device.status": "offline"}, True, "timeout")
    return Reading("p1", "escpos", ts, base)


def run(story, limits=LIMITS, scores=None, poll_s=30.0):
    """Feed one reading per poll; decide once a poll; return (alerts, decisions)."""
    health = DeviceHealth()
    alerts, decisions = [], []
    for i, reading in enumerate(story):
        note_reading(health, reading)
        score = scores[i] if scores else None
        body, raised = decide("p1", health, reading, score, {}, ["why"], "m-1" if scores
                              else None, limits, reading.ts.timestamp())
        for a in raised:
            wire.check_alert(a)
        alerts += raised
        if body:
            wire.check_decision(body)
            decisions.append(body["decision"])
    return alerts, decisions


def transitions(alerts):
    return [(a["what"], a["state"], a["family"]) for a in alerts]


def test_a_roll_change_gives_no_failed_and_nothing_on_the_regional_feed():
    story = ([printer(0)]
             + [printer(30 + 30 * i, printer__paper="near_end") for i in range(4)]
             + [printer(150 + 30 * i, printer__paper="out", device__status="error")
                for i in range(3)]
             + [printer(240 + 30 * i, printer__cover="open", printer__paper="out",
                        device__status="error") for i in range(3)]
             + [printer(330 + 30 * i) for i in range(3)])
    alerts, decisions = run(story)
    assert "failed" not in decisions
    assert all(a["family"] == "attention" and a["audience"] == "store" for a in alerts)
    assert ("paper_out", "raised", "attention") in transitions(alerts)
    assert ("cover_open", "cleared", "attention") in transitions(alerts)
    assert not [a for a in alerts if regional(a)]


def test_paper_out_past_its_limit_in_trading_hours_is_escalated_to_the_region_once():
    story = [printer(0)] + [printer(60 * m, printer__paper="out") for m in range(1, 25)] \
        + [printer(60 * 25)]
    alerts, decisions = run(story)
    feed = [a for a in alerts if regional(a)]
    assert [(a["alert"], a["state"]) for a in feed] == [("p1:paper_out:escalated", "raised"),
                                                       ("p1:paper_out:escalated", "cleared")]
    assert feed[0]["escalated"] is True and feed[0]["audience"] == "region"
    assert "failed" not in decisions


def test_paper_out_at_night_is_not_escalated():
    night = Thresholds(threshold=0.8, watch=0.4, utc_offset=lambda now: 12 * 3600.0)  # 22:00
    story = [printer(0)] + [printer(60 * m, printer__paper="out") for m in range(1, 40)]
    alerts, _ = run(story, night)
    assert not [a for a in alerts if regional(a)]


def test_a_recoverable_cutter_error_that_clears_gives_no_failed():
    story = [printer(0), printer(30, printer__cutter="error", printer__error="recoverable",
                                 device__status="error"),
             printer(60, printer__cutter="error", printer__error="recoverable"),
             printer(90), printer(120)]
    alerts, decisions = run(story)
    assert "failed" not in decisions
    assert transitions(alerts) == [("cutter_error", "raised", "attention"),
                                   ("cutter_error", "cleared", "attention")]
    assert not [a for a in alerts if regional(a)]


def test_a_cutter_error_that_persists_is_failed_critical_and_on_the_regional_feed():
    story = [printer(0)] + [printer(30 * i, printer__cutter="error",
                                    printer__error="recoverable") for i in range(1, 6)]
    alerts, decisions = run(story)
    assert decisions[-1] == "failed"
    failed = [a for a in alerts if a["what"] == "failed"]
    assert [(a["state"], a["severity"], a["family"]) for a in failed] == \
        [("raised", "critical", "failed")]
    assert regional(failed[0])
    assert "3 polls" in failed[0]["explanation"][0]


def test_mech_polls_is_configurable():
    story = [printer(0)] + [printer(30 * i, printer__cutter="error",
                                    printer__error="recoverable") for i in range(1, 6)]
    _, decisions = run(story, replace(LIMITS, mech_polls=10))
    assert "failed" not in decisions


def test_an_unrecoverable_error_and_hr_status_down_are_failed_but_power_save_is_not():
    _, d1 = run([printer(0, printer__error="unrecoverable")])
    assert d1 == ["failed"]
    r = Reading("p1", "snmp", T0, {"device.status": "error", "device.hr_status": "down"})
    _, d2 = run([r])
    assert d2 == ["failed"]
    asleep = [Reading("p1", "escpos", T0 + timedelta(hours=h), {"device.status": "asleep"},
                      True, "power save") for h in range(6)]
    alerts, d3 = run(asleep)
    assert d3 == ["ok"] and not alerts


def test_a_predicted_failure_survives_transient_errors_as_one_raise_and_failed_supersedes_it():
    # Score high for the whole story; cutter errors come and go (each clears within 2 polls).
    story, scores = [], []
    for i in range(60):
        err = i % 5 in (1, 2)
        story.append(printer(600 * i, printer__cutter="error" if err else "ok",
                             printer__error="recoverable" if err else "none"))
        scores.append(0.9 if i % 7 else 0.72)  # dips inside the hysteresis band and below it
    # Then the cutter stays broken.
    for j in range(5):
        story.append(printer(600 * 60 + 30 * j, printer__cutter="error",
                             printer__error="recoverable"))
        scores.append(0.95)
    alerts, decisions = run(story, scores=scores)
    pf = [a for a in alerts if a["what"] == "predicted_failure"]
    assert [a["state"] for a in pf] == ["raised", "cleared"]
    assert "superseded" in pf[1]["explanation"][0]
    (failed,) = [a for a in alerts if a["what"] == "failed"]
    assert failed["supersedes"]["alert"] == "p1:predicted_failure"
    assert failed["supersedes"]["since"] == pf[0]["since"]
    assert failed["supersedes"]["lead_s"] > 9 * 3600
    assert decisions.count("predicted_failure") == 1
    feed = [a for a in alerts if regional(a) and a["state"] == "raised"]
    assert [a["what"] for a in feed] == ["predicted_failure", "failed"]


def test_after_a_superseding_failure_a_repair_does_not_start_a_second_prediction_at_once():
    story = [printer(0)] + [printer(30 * i, printer__cutter="error") for i in range(1, 5)] \
        + [printer(150 + 30 * i) for i in range(10)]
    scores = [0.9] * len(story)
    alerts, _ = run(story, scores=scores)
    raises = [a for a in alerts if a["what"] == "predicted_failure" and a["state"] == "raised"]
    assert len(raises) == 1


def test_trading_hours_follow_the_zone_and_wrap_over_midnight():
    limits = Thresholds(threshold=0.8, watch=0.4, trading=(18.0, 2.0), utc_offset=UTC)
    open_, began = in_trading(datetime(2026, 3, 4, 1, 0, tzinfo=timezone.utc).timestamp(),
                              limits)
    assert open_ and began == datetime(2026, 3, 3, 18, 0, tzinfo=timezone.utc).timestamp()
    assert not in_trading(T0.timestamp(), limits)[0]


def test_the_engine_counts_polls_between_cycles_for_the_cutter_rule():
    engine = HealthEngine(replace(ScoringSection(), enabled=False, timezone="UTC"))
    for i in range(4):  # four polls between two cycles, each with the cutter error
        engine.observe(printer(10 * i, printer__cutter="error", printer__error="recoverable"))
    decisions, alerts = engine.cycle((T0 + timedelta(seconds=40)).timestamp())
    assert decisions[0]["decision"] == "failed"


def test_old_alerts_without_a_family_still_reach_the_feed_and_new_attention_does_not():
    old = {"alert": "p1:paper_out", "device": "p1", "what": "paper_out", "state": "raised",
           "severity": "warning", "since": "x", "ts": "x", "explanation": [], "decision": None}
    assert regional(old)
    assert not regional(dict(old, family="attention", audience="store"))
    assert regional(dict(old, family="attention", escalated=True))
    assert regional(dict(old, what="failed", family="failed"))


def test_the_optional_alert_fields_are_checked_field_by_field():
    import pytest

    good = {"alert": "p1:failed", "device": "p1", "what": "failed", "state": "raised",
            "severity": "critical", "since": TS0, "ts": TS0, "explanation": [],
            "decision": None, "family": "failed", "audience": "region",
            "supersedes": {"alert": "p1:predicted_failure", "since": TS0, "lead_s": 3600.0}}
    wire.check_alert(good)
    for bad in ({"family": "meh"}, {"audience": "ceo"}, {"escalated": "yes"},
                {"escalated_after_s": -1}, {"supersedes": {"alert": "x", "since": TS0}},
                {"supersedes": {"alert": "x", "since": TS0, "lead_s": -5}},
                {"supersedes": {"alert": "x", "since": "not-a-time", "lead_s": 5}},
                {"audience": "region\x1b[2J"},
                {"supersedes": []}):
        with pytest.raises(wire.WireError):
            wire.check_alert(dict(good, **bad))


def test_hr_status_down_explained_by_paper_out_is_attention_not_failed():
    r = Reading("p1", "snmp", T0, {"device.status": "error", "device.hr_status": "down",
                                   "printer.paper": "out", "printer.online": True})
    alerts, decisions = run([r])
    assert decisions == ["ok"] and [a["what"] for a in alerts] == ["paper_out"]


def test_a_score_that_sags_above_the_clear_level_for_days_keeps_one_episode():
    # Hourly cycles: above the threshold, then two days between watch and threshold, then up.
    scores = [0.9] * 5 + [0.6] * 48 + [0.9] * 5 + [0.1] * 30
    story = [printer(3600 * h) for h in range(len(scores))]
    alerts, decisions = run(story, scores=scores)
    pf = [a["state"] for a in alerts if a["what"] == "predicted_failure"]
    assert pf == ["raised", "cleared"]
    assert decisions == ["predicted_failure", "ok"]


def test_timeouts_with_answers_between_them_are_not_an_hour_of_silence():
    # Cycles every hour see only the last reading; the answers in between still count.
    engine = HealthEngine(replace(ScoringSection(), enabled=False, timezone="UTC"))
    decisions = []
    for minute in range(0, 181, 30):
        stale = minute % 60 == 0  # a timeout on the hour, an answer at half past
        engine.observe(printer(60 * minute, stale=stale))
        if minute % 60 == 0:
            d, _ = engine.cycle((T0 + timedelta(minutes=minute)).timestamp())
            decisions += [b["decision"] for b in d]
    assert "failed" not in decisions
    # Unbroken silence for an hour is a failure.
    for minute in range(200, 300, 10):
        engine.observe(printer(60 * minute, stale=True))
    d, _ = engine.cycle((T0 + timedelta(minutes=290)).timestamp())
    assert [b["decision"] for b in d] == ["failed"]
