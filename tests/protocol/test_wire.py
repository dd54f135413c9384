"""The wire protocol's JSON parsing: strict on both of its parsers, and they agree."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

import edge_protocol as wire
from edge_protocol import envelope as wire_envelope
from hubkit import envelope, telemetry

orjson = pytest.importorskip("orjson")  # the dev extra installs it, as the hub extra does

LOADERS = {"orjson": wire_envelope._loads_orjson, "stdlib": wire_envelope._loads_stdlib}

REFUSED = {
    "UTF-16": '{"a": 1}'.encode("utf-16"),
    "UTF-32": '{"a": 1}'.encode("utf-32"),
    "a byte order mark": b'\xef\xbb\xbf{"a": 1}',
    "bytes that are not UTF-8": b'{"a": "\xff"}',
    "a lone high surrogate": b'{"a": "\\ud800"}',
    "a lone low surrogate": b'{"a": "x\\uDC00y"}',
    "NaN": b'{"a": NaN}',
    "Infinity": b'{"a": -Infinity}',
    "a number out of range": b'{"a": 1e999}',
    "nesting 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "a trailing comma": b'{"a": 1,}',
    "nothing": b"",
}


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("case", REFUSED)
def test_both_parsers_refuse_what_is_not_strict_json_with_a_wire_error(loader, case):
    with pytest.raises(wire.WireError) as err:
        LOADERS[loader](REFUSED[case])
    assert err.value.code == "not_json"


@pytest.mark.parametrize("loader", LOADERS)
def test_a_surrogate_pair_escape_is_one_character_on_both_parsers(loader):
    assert LOADERS[loader](b'{"a": "\\ud83d\\ude00 ok"}') == {"a": "\U0001F600 ok"}


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                   max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(JSONISH)
def test_both_parsers_read_any_json_document_alike(doc):
    payload = json.dumps(doc, ensure_ascii=False).encode()
    assert wire_envelope._loads_stdlib(payload) == wire_envelope._loads_orjson(payload) == doc


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200) | JSONISH.map(lambda d: json.dumps(d).encode()).flatmap(
    lambda b: st.integers(0, max(0, len(b) - 1)).map(lambda i: b[:i] + b"\\\xff\x00"[i % 3:][:1]
                                                      + b[i + 1:])))
def test_both_parsers_accept_and_refuse_the_same_damaged_bytes(payload):
    outcomes = []
    for load in LOADERS.values():
        try:
            outcomes.append(("ok", load(payload)))
        except wire.WireError as err:
            outcomes.append((err.code, None))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("seq", [-1, 2**53 + 1, 2**63 - 1, 2**63, 10**30, True, 1.0])
def test_a_seq_a_database_cannot_hold_is_a_bad_envelope(seq):
    env = envelope("telemetry", telemetry())
    payload = json.dumps(dict(env, seq=seq)).encode()
    with pytest.raises(wire.WireError) as err:
        wire.decode(payload)
    assert err.value.code == "bad_envelope"


def test_the_largest_plausible_seq_is_accepted():
    # 2^53: 285 years at a million messages a second; 2^63-1 would pin a store (issue 15).
    env = envelope("telemetry", telemetry())
    assert wire.decode(json.dumps(dict(env, seq=2**53)).encode()).seq == 2**53


@pytest.mark.parametrize("session", [-1, 2**31, 2**63 - 1, 2**63])
def test_a_birth_session_a_database_cannot_hold_is_out_of_range(session):
    env = envelope("birth", {"session": session, "inventory": []})
    with pytest.raises(wire.WireError) as err:
        wire.decode(json.dumps(env).encode())
    assert err.value.code == "out_of_range"


def test_the_parser_in_use_is_orjson_when_it_is_installed():
    assert wire_envelope._orjson is orjson


def plain_decode(payload: bytes, topic_name: str | None = None,
                 prefix: str = wire.DEFAULT_PREFIX) -> wire.Envelope:
    """wire.decode as first written, before its fast path: the reference it must agree with."""
    if len(payload) > wire.MAX_PAYLOAD:
        raise wire.WireError("oversized", f"{len(payload)} bytes > {wire.MAX_PAYLOAD}")
    data = wire.loads(payload)
    if not isinstance(data, dict):
        raise wire.WireError("bad_envelope", "not a JSON object")
    v = data.get("v")
    if type(v) is not int or v != wire.VERSION:
        raise wire.WireError("unknown_version", repr(v)[:40])
    for key, kind in (("id", str), ("store", str), ("region", str), ("ts", str),
                      ("kind", str), ("body", dict)):
        if not isinstance(data.get(key), kind):
            raise wire.WireError("bad_envelope", f"{key}: missing or of the wrong type")
    seq = data.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= 2**53:
        raise wire.WireError("bad_envelope", "seq: expected an integer from 0 to 2^53")
    if not wire_envelope._UUID.match(data["id"]):
        raise wire.WireError("bad_envelope", "id: not a UUID")
    if not wire.topics.ID.match(data["store"]) or not wire.topics.ID.match(data["region"]):
        raise wire.WireError("bad_envelope", "store or region: not a valid id")
    try:
        wire.parse_ts(data["ts"])
    except wire.ProtocolError as err:
        raise wire.WireError("bad_envelope", err.detail) from err
    if data["kind"] not in wire.UP_KINDS:
        raise wire.WireError("unknown_kind", data["kind"][:40])
    if topic_name is not None:
        region, store, kind = wire.parse_topic(topic_name, prefix)
        if (region, store) != (data["region"], data["store"]):
            raise wire.WireError("topic_mismatch",
                                 f"envelope of {data['region']}/{data['store']} on {topic_name}")
        if kind != data["kind"]:
            raise wire.WireError("topic_mismatch", f"kind {data['kind']} on {topic_name}")
    wire.check_body(data["kind"], data["body"])
    return wire.Envelope(wire.VERSION, data["id"], seq, data["store"], data["region"],
                         data["ts"], data["kind"], data["body"])


FIELD_VALUES = {
    "v": st.sampled_from([1, 2, True, "1", None, 1.0]),
    "id": st.sampled_from(["01a20441-c9bf-7369-ad0d-83a774b09f93", "nope", 7, None]),
    "seq": st.sampled_from([0, 5, -1, 2**63, True, 2.5, "3", None]),
    "store": st.sampled_from(["s1", "s2", "bad id!", "", 3, None]),
    "region": st.sampled_from(["r1", "r2", "-x", 3, None]),
    "ts": st.sampled_from(["2026-11-22T10:00:00Z", "2026-13-01T00:00:00Z", "yesterday", 5]),
    "kind": st.sampled_from(["telemetry", "alert", "birth", "selfie", 4, None]),
    "body": st.sampled_from([{"readings": []}, {"readings": [{"device": "p1", "kind": "host",
                             "ts": "2026-11-22T10:00:00Z", "values": {}, "stale": False}]},
                             {"readings": "x"}, {"session": 1, "inventory": []}, [], None]),
}
TOPIC_NAMES = st.sampled_from(["edge/v1/r1/s1/telemetry", "edge/v1/r1/s1/alert",
                               "edge/v1/r2/s1/telemetry", "edge/v1/r1/s2/birth",
                               "edge/v1/r1/bad id!/telemetry", "edge/v1/hub/state",
                               "other/r1/s1/telemetry", "edge/v1/r1/s1/selfie"])


VALID = {"v": 1, "id": "01a20441-c9bf-7369-ad0d-83a774b09f93", "seq": 5, "store": "s1",
         "region": "r1", "ts": "2026-11-22T10:00:00Z", "kind": "telemetry",
         "body": {"readings": []}}
# A valid envelope with up to three fields changed or dropped: most examples are one mistake
# away from valid, where the order of the checks shows.
MISTAKES = st.dictionaries(st.sampled_from(sorted(FIELD_VALUES)), st.none(), max_size=3).flatmap(
    lambda keys: st.fixed_dictionaries({k: st.just("drop") | FIELD_VALUES[k] for k in keys}))


@settings(max_examples=600, deadline=None)
@given(MISTAKES, st.none() | TOPIC_NAMES)
def test_decode_agrees_with_the_plain_version_on_every_kind_of_mistake(changes, topic_name):
    fields = {k: v for k, v in {**VALID, **changes}.items() if v != "drop"}
    payload = json.dumps(fields).encode()
    outcomes = []
    for decode in (wire.decode, plain_decode):
        try:
            outcomes.append(("ok", tuple(decode(payload, topic_name))))
        except wire.WireError as err:
            outcomes.append((err.code, err.detail))
    assert outcomes[0] == outcomes[1]
