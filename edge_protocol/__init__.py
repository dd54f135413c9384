"""The protocol between store agents and the hub, shared by both and importing neither.

    topics.py      build and parse every topic
    envelope.py    VERSION, Envelope, uuid7, encode, strict decode (and the hub's state message)
    timestamps.py  format_ts, parse_ts, plausibility against a clock and a skew
    bodies.py      typed, range-checked bodies: Reading, Telemetry, Decision, Alert, Birth,
                   Death, Event
    vocabulary.py  the shared reading names
    errors.py      ProtocolError (with a reason code)
    golden/        one golden JSON fixture per message kind, read by both sides' tests
                   (control/: the control plane's; hub/: the hub's state, online and held)

Standard library only (orjson when installed). `import edge_protocol as wire` gives the flat
names most callers need.
"""

from __future__ import annotations

from pathlib import Path

from edge_protocol.bodies import (ALERT_STATES, DECISIONS, MAX_INT, SEVERITIES, check_body,
                                  parse_body)
from edge_protocol.envelope import (MAX_PAYLOAD, VERSION, Envelope, decode, decode_hub_state,
                                    encode, encode_hub_state, loads, uuid7)
from edge_protocol.errors import ProtocolError, WireError
from edge_protocol.timestamps import DEFAULT_SKEW, Skew, format_ts, parse_ts, utcnow
from edge_protocol.topics import (DEFAULT_PREFIX, UP_KINDS, alert_feed_topic,
                                  approvals_feed_topic, cmd_result_topic, cmd_topic,
                                  config_topic, flags_topic, hub_state_topic, parse_topic,
                                  shared_subscription, topic)


GOLDEN_DIR = Path(__file__).resolve().parent / "golden"  # <kind>.json: one envelope a kind


def check_decision(body) -> None:
    """Validate a decision body (raise ProtocolError)."""
    check_body("decision", body)


def check_alert(body) -> None:
    """Validate an alert body (raise ProtocolError)."""
    check_body("alert", body)


__all__ = ["ALERT_STATES", "DECISIONS", "MAX_INT", "SEVERITIES", "check_body", "parse_body",
           "MAX_PAYLOAD", "VERSION", "Envelope", "decode", "decode_hub_state", "encode",
           "encode_hub_state", "loads", "uuid7", "ProtocolError", "WireError", "DEFAULT_SKEW",
           "Skew", "format_ts", "parse_ts", "utcnow", "DEFAULT_PREFIX", "UP_KINDS",
           "alert_feed_topic", "approvals_feed_topic", "cmd_result_topic", "cmd_topic",
           "config_topic", "flags_topic", "hub_state_topic", "parse_topic",
           "shared_subscription", "topic", "check_decision", "check_alert", "GOLDEN_DIR"]
