"""The sync client's pure parts: its config section, backoff, hub state, session counter, reads."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edge_protocol as wire
from edge_agent.config import parse_text
from edge_agent.errors import ConfigError
from edge_agent.outbox import Outbox
from edge_agent.state import db as statedb
from edge_agent.sync import backoff
from edge_agent.sync import state as sync_state

BASE = '[agent]\nstore = "store-0001"\n[sync]\n'

CONFIG_MISTAKES = {
    "enabled without a host names sync.host": (
        "enabled = true\ntls = false", "sync.host: required when enabled is true"),
    "TLS without a certificate names sync.tls_cert": (
        'enabled = true\nhost = "h"\ntls_key = "k"', "sync.tls_cert: required when tls is true"),
    "TLS without a key names sync.tls_key": (
        'enabled = true\nhost = "h"\ntls_cert = "c"', "sync.tls_key: required when tls is true"),
    "a port out of range is refused": ('port = 70000', "sync.port: must be <= 65535"),
    "a zero window is refused": ("inflight = 0", "sync.inflight: must be >= 1"),
    "a prefix with a wildcard is refused": ('prefix = "edge/#"', "sync.prefix: must be a topic"),
    "a prefix with a trailing slash is refused": ('prefix = "edge/"', "sync.prefix: must be"),
    "a minimum backoff above the maximum is refused": (
        "reconnect_min = 10.0\nreconnect_max = 5.0", "sync.reconnect_min: must be <="),
    "an unknown key is named": ("hots = 1", "sync.hots: unknown key"),
    "a string where a boolean belongs is named": (
        'enabled = "yes"', "sync.enabled: expected true or false"),
}


@pytest.mark.parametrize("body,message", CONFIG_MISTAKES.values(), ids=CONFIG_MISTAKES.keys())
def test_config_mistakes_in_the_sync_section_are_reported_with_their_key_path(body, message):
    with pytest.raises(ConfigError) as err:
        parse_text(BASE + body)
    assert message in str(err.value)


def test_a_sync_problem_is_reported_together_with_problems_elsewhere():
    with pytest.raises(ConfigError) as err:
        parse_text('[agent]\nstore = "bad store"\n[sync]\nenabled = true\ntls = false\n')
    paths = [p.path for p in err.value.problems]
    assert "agent.store" in paths and "sync.host" in paths


def test_sync_is_off_by_default_and_a_disabled_section_needs_nothing_else():
    assert parse_text('[agent]\nstore = "s"\n').sync.enabled is False
    assert parse_text(BASE + "enabled = false\n").sync.host == ""


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # shared CPU
@given(attempt=st.integers(min_value=-5, max_value=10_000),
       low=st.floats(min_value=0.001, max_value=100), span=st.floats(min_value=0, max_value=3600),
       seed=st.integers())
def test_backoff_always_stays_between_the_minimum_and_the_maximum(attempt, low, span, seed):
    high = low + span
    wait = backoff.delay(attempt, low, high, random.Random(seed))
    assert low <= wait <= high


def test_backoff_grows_with_failures_until_the_cap():
    rand = random.Random(1)
    waits = [backoff.delay(n, 1.0, 60.0, rand) for n in range(1, 12)]
    assert waits[0] <= 1.0 and waits[3] >= 4.0 and max(waits) <= 60.0 and waits[-1] >= 30.0


HUB_STATES = {
    "online true is online": (b'{"v":1,"online":true,"ts":"x","hub":"h"}', True),
    "online false is offline": (b'{"online":false}', False),
    "an empty retained payload is offline": (b"", False),
}


@pytest.mark.parametrize("payload,online", HUB_STATES.values(), ids=HUB_STATES.keys())
def test_hub_state_payloads_decode(payload, online):
    assert wire.decode_hub_state(payload)["online"] is online


BAD_HUB_STATES = {
    "a string online is refused": b'{"online":"true"}',
    "another version is refused": b'{"v":2,"online":true}',
    "a list is refused": b"[true]",
    "broken JSON is refused": b'{"online":',
    "an oversized payload is refused": b'{"online":true,"pad":"' + b"x" * 5000 + b'"}',
}


@pytest.mark.parametrize("payload", BAD_HUB_STATES.values(), ids=BAD_HUB_STATES.keys())
def test_malformed_hub_states_raise_a_wire_error(payload):
    with pytest.raises(wire.WireError):
        wire.decode_hub_state(payload)


JSON_OBJECTS = st.dictionaries(
    st.sampled_from(["v", "online", "ts", "worker"]),
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=5), max_size=4,
).map(lambda d: json.dumps(d).encode())


# The suite shares 2 cores with others: generation speed is not what these tests check.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=100) | JSON_OBJECTS)
def test_decoding_any_hub_state_either_succeeds_or_raises_a_wire_error(payload):
    try:
        state = wire.decode_hub_state(payload)
    except wire.WireError:
        return
    assert isinstance(state["online"], bool)


def test_the_session_number_grows_by_one_per_connect_and_survives_a_restart(tmp_path):
    db = statedb.connect(tmp_path / "agent.db")
    assert sync_state.current_session(db) == 0
    assert [sync_state.next_session(db) for _ in range(3)] == [1, 2, 3]
    db.close()
    db = statedb.connect(tmp_path / "agent.db")
    assert sync_state.next_session(db) == 4
    db.close()


def test_rows_after_skips_what_is_in_flight_and_still_puts_a_new_alert_first(tmp_path):
    db = statedb.connect(tmp_path / "agent.db")
    box = Outbox(db, "s", "r")
    tele = box.enqueue_many([("telemetry", {"readings": []})] * 5)
    first = box.rows_after({}, limit=3)
    assert [r.seq for r in first] == [r.seq for r in tele[:3]]
    cursors = {first[-1].prio: first[-1].seq}
    alert = box.enqueue("alert", {"x": 1})
    nxt = box.rows_after(cursors, limit=10)
    assert [r.seq for r in nxt] == [alert.seq] + [r.seq for r in tele[3:]]
    db.close()
