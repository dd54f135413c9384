"""hub.ingest.decode: a bug inside a check is a counted reject, never a crashed worker."""

from __future__ import annotations

import json
import time

import pytest

import edge_protocol as wire
from edge_protocol import envelope
from edge_protocol.timestamps import DEFAULT_SKEW
from hub.ingest.decode import make_decoder
from hubkit import envelope as make_envelope, telemetry


def test_a_valid_message_decodes_and_a_hostile_one_keeps_its_reason():
    decode = make_decoder(wire.DEFAULT_PREFIX, time.time, DEFAULT_SKEW)
    env = make_envelope("telemetry", telemetry(2))
    topic = wire.topic("r1", "s1", "telemetry")
    assert decode(json.dumps(env).encode(), topic).kind == "telemetry"
    env["body"]["readings"][0]["device"] = "p\x001"
    with pytest.raises(wire.ProtocolError) as err:
        decode(json.dumps(env).encode(), topic)
    assert err.value.code == "bad_text"


def test_an_unexpected_exception_in_a_check_becomes_a_decode_error(monkeypatch):
    def broken(*args, **kwargs):
        raise TypeError("a bug in a check")

    monkeypatch.setattr(envelope, "check_body", broken)
    decode = make_decoder(wire.DEFAULT_PREFIX, time.time, DEFAULT_SKEW)
    with pytest.raises(wire.ProtocolError) as err:
        decode(json.dumps(make_envelope("telemetry", telemetry(1))).encode(),
               wire.topic("r1", "s1", "telemetry"))
    assert err.value.code == "decode_error" and "TypeError" in err.value.detail
