"""edge_protocol.bodies: every field range-checked, one reason code per kind of mistake, and the
telemetry fast path agreeing with the typed Reading on any input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from edge_protocol import bodies
from edge_protocol.errors import ProtocolError
from edge_protocol.timestamps import DEFAULT_SKEW, format_ts, utcnow

NOW = utcnow()
TS = format_ts(NOW)
CLOCK = NOW.timestamp


def decision(**changes):
    body = {"device": "p1", "decision": "watch", "previous": "ok", "score": 0.5,
            "threshold": 0.8, "model": "m-1", "features": {"x": 1.0}, "explanation": ["why"],
            "ts": TS}
    body.update(changes)
    return body


def alert(**changes):
    body = {"alert": "p1:paper_out", "device": "p1", "what": "paper_out", "state": "raised",
            "severity": "critical", "since": TS, "ts": TS, "explanation": [], "decision": None}
    body.update(changes)
    return body


CASES = {
    "decision ts not a time": ("decision", decision(ts="not-a-time"), "bad_ts"),
    "decision ts in 2099": ("decision", decision(ts="2099-01-01T00:00:00Z"), "implausible_ts"),
    "decision score 2^64-1": ("decision", decision(score=2**64 - 1), "out_of_range"),
    "decision score a string": ("decision", decision(score="0.5"), "bad_body"),
    "decision feature 2^63": ("decision", decision(features={"x": 2**63}), "out_of_range"),
    "decision feature a list": ("decision", decision(features={"x": [1]}), "bad_body"),
    "decision device with ESC": ("decision", decision(device="p1\x1b[2J"), "bad_text"),
    "decision model with CR LF": ("decision", decision(model="m\r\nforged"), "bad_text"),
    "decision explanation with U+202E": ("decision", decision(explanation=["a\u202eb"]),
                                         "bad_text"),
    "decision explanation of 10k chars": ("decision", decision(explanation=["x" * 10000]),
                                          "bad_text"),
    "decision 100 explanation lines": ("decision", decision(explanation=["x"] * 100),
                                       "bad_body"),
    "decision previous not a decision": ("decision", decision(previous="bogus"), "bad_body"),
    "alert since not a time": ("alert", alert(since="not-a-time"), "bad_ts"),
    "alert ts not a time": ("alert", alert(ts="yesterday"), "bad_ts"),
    "alert what with NUL": ("alert", alert(what="paper\x00out"), "bad_text"),
    "alert key with a newline": ("alert", alert(alert="p1:paper\nout"), "bad_text"),
    "alert decision with a huge score": ("alert", alert(decision=decision(score=10**30)),
                                         "out_of_range"),
    "birth session -1": ("birth", {"session": -1, "inventory": []}, "out_of_range"),
    "birth session true": ("birth", {"session": True, "inventory": []}, "bad_body"),
    "birth agent_version with BEL": ("birth", {"session": 1, "inventory": [],
                                               "agent_version": "1\x07"}, "bad_text"),
    "birth inventory id with a space": ("birth", {"session": 1, "inventory": [
        {"id": "p 1", "kind": "escpos"}]}, "bad_text"),
    "birth extras nested too deep": ("birth", {"session": 1, "inventory": [],
                                               "x": {"a": [[[[1]]]]}}, "bad_body"),
    "death session 2^63": ("death", {"session": 2**63}, "out_of_range"),
    "event name with a slash": ("event", {"event": "a/b"}, "bad_text"),
    "scoring_errors without errors": ("event", {"event": "scoring_errors", "total": {}},
                                      "bad_body"),
    "scoring_errors count negative": ("event", {"event": "scoring_errors", "errors": {},
                                                "total": {"non_finite": -1}}, "out_of_range"),
    "scoring_errors count past 2^53": ("event", {"event": "scoring_errors", "errors": {
        "non_finite": 2**53 + 1}, "total": {}}, "out_of_range"),
    "scoring_errors count a float": ("event", {"event": "scoring_errors", "errors": {
        "non_finite": 1.5}, "total": {}}, "bad_body"),
    "scoring_errors reason with ESC": ("event", {"event": "scoring_errors", "errors": {},
                                                 "total": {"nan\x1b": 1}}, "bad_text"),
    "scoring_errors 17 reasons": ("event", {"event": "scoring_errors", "errors": {},
                                            "total": {f"r{i}": 1 for i in range(17)}},
                                  "bad_body"),
    "scoring_errors model with LF": ("event", {"event": "scoring_errors", "errors": {},
                                               "total": {}, "model": "m\nx"}, "bad_text"),
    "telemetry reading device with NUL": ("telemetry", {"readings": [
        {"device": "p\x001", "kind": "escpos", "ts": TS}]}, "bad_text"),
    "telemetry value 2^64": ("telemetry", {"readings": [
        {"device": "p1", "kind": "escpos", "ts": TS, "values": {"unknown.count": 2**64}}]},
        "out_of_range"),
    "telemetry values null": ("telemetry", {"readings": [
        {"device": "p1", "kind": "escpos", "ts": TS, "values": None}]}, "bad_body"),
    "telemetry reason with ESC": ("telemetry", {"readings": [
        {"device": "p1", "kind": "escpos", "ts": TS, "stale": True, "reason": "\x1b]0;x\x07"}]},
        "bad_text"),
}


@pytest.mark.parametrize("kind,body,code", CASES.values(), ids=CASES.keys())
def test_each_hostile_field_is_rejected_with_its_reason(kind, body, code):
    with pytest.raises(ProtocolError) as err:
        bodies.check_body(kind, body, CLOCK)
    assert err.value.code == code, err.value


def test_valid_bodies_pass_and_type():
    assert bodies.parse_body("decision", decision(), CLOCK).score == 0.5
    assert bodies.parse_body("alert", alert(decision=decision()), CLOCK).decision.device == "p1"
    assert bodies.parse_body("birth", {"session": 0, "inventory": []}, CLOCK).session == 0
    # A scoring_errors event is typed; a reason a newer agent adds is taken (an identifier).
    ev = bodies.parse_body("event", {"event": "scoring_errors", "errors": {"non_finite": 2},
                                     "total": {"non_finite": 9, "newer_reason": 1},
                                     "model": None}, CLOCK)
    assert ev.scoring.errors == {"non_finite": 2} and ev.scoring.total["newer_reason"] == 1
    assert bodies.parse_body("event", {"event": "outbox_drops", "drops": {}}).scoring is None


def test_without_a_clock_only_the_spelling_of_a_time_is_checked():
    bodies.check_body("decision", decision(ts="2099-01-01T00:00:00Z"))
    with pytest.raises(ProtocolError):
        bodies.check_body("decision", decision(ts="not-a-time"))


scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                    st.sampled_from(["ok", "out", "\x00", "\x1b", "a\u202e", "x" * 1001]))
names = st.sampled_from(["device.status", "printer.paper", "host.cpu_pct", "unknown.count",
                         "supply.1.level", "bad name", "", "\x1bx"])
readings = st.fixed_dictionaries({}, optional={
    "device": st.one_of(st.sampled_from(["p1", "p 1", "p\x001", "", "x" * 80]), scalars),
    "kind": st.one_of(st.sampled_from(["escpos", "host"]), scalars),
    "ts": st.one_of(st.just(TS), st.sampled_from(["2099-01-01T00:00:00Z", "nope",
                                                  "2026-13-01T00:00:00Z"]), scalars),
    "values": st.one_of(st.dictionaries(names, scalars, max_size=4), scalars),
    "stale": st.one_of(st.booleans(), scalars),
    "reason": scalars,
})


@settings(max_examples=400, deadline=None)
@given(readings)
def test_the_telemetry_fast_path_agrees_with_the_typed_reading(r):
    r = json.loads(json.dumps(r))  # as it comes off the wire
    now = CLOCK()
    fast = bodies._reading_fast(r, CLOCK, DEFAULT_SKEW, now)
    try:
        bodies.Reading.from_dict(r, CLOCK, DEFAULT_SKEW)
        slow = True
    except ProtocolError:
        slow = False
    assert fast == slow
