"""The golden messages (edge_protocol/golden/<kind>.json): what the agent's encoders produce is
shaped like them, and the hub's decoder accepts them, typed and unchanged."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

import edge_protocol as wire
from edge_agent.health.policy import DeviceHealth, Thresholds, decide
from edge_agent.reading import Reading
from edge_protocol import bodies
from edge_protocol.timestamps import parse_ts

KINDS = ("telemetry", "decision", "alert", "birth", "death", "event")


def golden(kind: str) -> dict:
    return json.loads((wire.GOLDEN_DIR / f"{kind}.json").read_text())


def golden_clock(kind: str):
    at = parse_ts(golden(kind)["ts"]).timestamp()
    return lambda: at


def test_there_is_one_golden_message_per_kind():
    assert sorted(p.stem for p in wire.GOLDEN_DIR.glob("*.json")) == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_the_hub_decoder_accepts_each_golden_message_with_its_clock(kind):
    env = golden(kind)
    topic = wire.topic(env["region"], env["store"], kind)
    got = wire.decode(json.dumps(env).encode(), topic, clock=golden_clock(kind))
    assert got.kind == kind and got.body == env["body"] and got.v == 1


@pytest.mark.parametrize("kind", ("telemetry", "decision", "alert", "event"))
def test_typed_bodies_round_trip_the_golden_bodies(kind):
    body = golden(kind)["body"]
    assert wire.parse_body(kind, body, golden_clock(kind)).to_dict() == body


@pytest.mark.parametrize("kind", KINDS)
def test_a_golden_message_a_year_from_the_clock_is_implausible(kind):
    env = golden(kind)
    later = golden_clock(kind)() + 2 * 365 * 86400
    with pytest.raises(wire.ProtocolError) as err:
        wire.decode(json.dumps(env).encode(), clock=lambda: later)
    assert err.value.code == "implausible_ts"


def _agent_decision_and_alert():
    t0 = datetime(2026, 12, 5, 6, 0, tzinfo=timezone.utc)
    limits = Thresholds(threshold=0.8, watch=0.4, hysteresis=0.05, failed_after=3600.0)
    values = {"device.status": "ok", "printer.paper": "ok", "printer.cover": "closed"}
    health = DeviceHealth()
    decide("p1", health, Reading("p1", "escpos", t0, values), 0.1,
           {"cutter_errors_per_day": 0.0}, [], "m", limits, t0.timestamp())
    t1 = t0 + timedelta(minutes=1)
    return decide("p1", health, Reading("p1", "escpos", t1, values), 0.93,
                  {"cutter_errors_per_day": 14.0}, ["rising"], "m", limits, t1.timestamp())


def _shape(value):
    """Keys and JSON types, recursively: what must match between an encoder and the golden."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__ if value is not None else "null"


def test_the_agent_policy_encodes_decisions_and_alerts_shaped_like_the_golden_ones():
    decision, (alert,) = _agent_decision_and_alert()
    assert _shape(decision) == _shape(golden("decision")["body"])
    assert _shape(alert) == _shape(golden("alert")["body"])


def test_the_agent_reading_encodes_like_the_golden_telemetry():
    reading = Reading("p1", "escpos", datetime(2026, 12, 5, 6, 1, tzinfo=timezone.utc),
                      {"device.status": "ok", "printer.paper": "ok", "printer.cover": "closed"})
    assert _shape(reading.to_dict()) == _shape(golden("telemetry")["body"]["readings"][0])
    assert reading.to_dict() == golden("telemetry")["body"]["readings"][0]


def test_the_agent_birth_has_the_golden_birth_fields(tmp_path):
    from agentproc import host_config
    from edge_agent.config import load_config
    from edge_agent.sync.birth import birth_body

    config = tmp_path / "agent.toml"
    config.write_text(host_config(tmp_path / "state"))
    body = birth_body(load_config(str(config)), 3, model_version="m", config_digest="sha256:x",
                      last_seq=41, instance="0193a000-0c2e-7d10-9a4b-3c5d6e7f8a9b")
    assert set(body) == set(golden("birth")["body"])
    assert isinstance(wire.parse_body("birth", body), bodies.Birth)


def test_the_agent_envelope_is_shaped_like_the_golden_one(tmp_path):
    from edge_agent.outbox import ENVELOPE_VERSION
    from edge_protocol.envelope import uuid7

    assert ENVELOPE_VERSION == wire.VERSION == golden("alert")["v"]
    assert wire.envelope._UUID.match(uuid7())


def test_device_text_with_control_characters_is_sent_clean_and_accepted():
    reading = Reading("p1", "snmp", datetime.now(timezone.utc),
                      {"device.description": "HP LaserJet\r\n\x00\u202e", "device.status": "ok"},
                      True, "timeout\x1b[2J")
    body = {"readings": [reading.to_dict()]}
    assert body["readings"][0]["values"]["device.description"] == "HP LaserJet    "
    assert body["readings"][0]["reason"] == "timeout [2J"
    wire.check_body("telemetry", body)


def test_the_agent_scoring_errors_event_is_shaped_like_the_golden_event():
    from collections import Counter

    from edge_agent.config import ScoringSection
    from edge_agent.health.engine import HealthEngine

    engine = HealthEngine(ScoringSection())
    engine.note_errors(Counter(non_finite=12, worker_timeout=1))
    body = engine.error_report(0.0, 300.0)
    body["model"] = "device_health-3872b4285766"  # no model is loaded here
    golden_body = golden("event")["body"]
    assert set(body) == set(golden_body) and body["event"] == golden_body["event"]
    assert wire.parse_body("event", body).scoring.errors == golden_body["errors"]
