"""The wire protocol's JSON parsing: strict on both of its parsers, and they agree."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from edge_agent import wire
from hubkit import envelope, telemetry

orjson = pytest.importorskip("orjson")  # the dev extra installs it, as the hub extra does

LOADERS = {"orjson": wire._loads_orjson, "stdlib": wire._loads_stdlib}

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
    assert wire._loads_stdlib(payload) == wire._loads_orjson(payload) == doc


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


@pytest.mark.parametrize("seq", [-1, 2**63, 10**30, True, 1.0])
def test_a_seq_a_database_cannot_hold_is_a_bad_envelope(seq):
    env = envelope("telemetry", telemetry())
    payload = json.dumps(dict(env, seq=seq)).encode()
    with pytest.raises(wire.WireError) as err:
        wire.decode(payload)
    assert err.value.code == "bad_envelope"


def test_the_largest_seq_a_bigint_holds_is_accepted():
    env = envelope("telemetry", telemetry())
    assert wire.decode(json.dumps(dict(env, seq=2**63 - 1)).encode()).seq == 2**63 - 1


@pytest.mark.parametrize("session", [-1, 2**63])
def test_a_birth_session_a_database_cannot_hold_is_a_bad_body(session):
    env = envelope("birth", {"session": session, "inventory": []})
    with pytest.raises(wire.WireError) as err:
        wire.decode(json.dumps(env).encode())
    assert err.value.code == "bad_body"


def test_the_parser_in_use_is_orjson_when_it_is_installed():
    assert wire._orjson is orjson
