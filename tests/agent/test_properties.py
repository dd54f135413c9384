"""Property tests: untrusted config and reading input raises only the agent's own errors."""

from __future__ import annotations

import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.config import parse_config, parse_text
from edge_agent.errors import ConfigError, ReadingError
from edge_agent.reading import Reading

# Keys the config knows, mixed with junk, so that the search reaches deep into valid shapes.
KNOWN_KEYS = ["agent", "outbox", "telemetry", "devices", "store", "region", "state_dir",
              "log_level", "max_bytes", "max_age_s", "flush_interval", "batch_max",
              "buffer_max", "id", "kind", "interval", "timeout", "jitter", "max_age",
              "backoff_max", "enabled", "host", "disks", "targets", "connect_timeout",
              "processes", "temperature", "options", "source"]
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8))
scalars = st.one_of(
    st.booleans(), st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1), st.floats(),
    st.text(max_size=12), st.sampled_from(["host", "s1", "debug", "127.0.0.1:80", "/", ""]),
    st.datetimes(), st.dates(), st.times())
toml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(keys, inner, max_size=5)),
    max_leaves=15)
configs = st.dictionaries(keys, toml_values, max_size=6)


def device_tables():
    return st.fixed_dictionaries(
        {"id": st.one_of(st.text(max_size=5), st.just("d1"))},
        optional={"kind": st.one_of(st.just("host"), st.text(max_size=4), toml_values),
                  "interval": toml_values, "host": toml_values, "enabled": toml_values})


near_valid = st.fixed_dictionaries(
    {"agent": st.fixed_dictionaries({"store": st.one_of(st.just("s1"), toml_values)},
                                    optional={"region": toml_values, "state_dir": toml_values}),
     "devices": st.lists(st.one_of(device_tables(), toml_values), max_size=3)},
    optional={"telemetry": toml_values, "outbox": toml_values})


def check_config(data) -> None:
    try:
        parse_config(data)
    except ConfigError as err:
        assert err.problems
        for problem in err.problems:
            assert problem.path, f"problem without a key path: {problem}"
            assert problem.message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_any_toml_like_table_is_a_config_or_a_config_error_with_key_paths(data):
    check_config(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_valid)
def test_near_valid_configs_are_a_config_or_a_config_error_with_key_paths(data):
    check_config(data)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.printable, max_size=200))
def test_any_text_is_a_config_or_a_config_error(text):
    try:
        parse_text(text)
    except ConfigError as err:
        assert err.problems


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20)
VALUE_NAMES = ["device.status", "host.cpu_pct", "printer.paper", "supply.1.level_pct",
               "poll.errors", "host.proc.pos.running", "bogus.name", ""]
reading_like = st.fixed_dictionaries(
    {},
    optional={"device": json_values, "kind": json_values,
              "ts": st.one_of(st.just("2026-11-22T15:00:00Z"), st.text(max_size=30),
                              st.datetimes().map(lambda d: d.isoformat()), json_values),
              "values": st.one_of(st.dictionaries(st.sampled_from(VALUE_NAMES), json_values,
                                                  max_size=4), json_values),
              "stale": json_values, "reason": json_values, "extra": json_values})


def check_reading(text) -> None:
    try:
        reading = Reading.from_json(text)
    except ReadingError as err:
        assert str(err)
        return
    # What parses also serializes again, to the same reading.
    assert Reading.from_json(reading.to_json()) == reading


@settings(max_examples=250, deadline=None)
@given(reading_like)
def test_any_json_object_is_a_reading_or_a_reading_error(data):
    try:
        text = json.dumps(data)
    except (ValueError, OverflowError):
        return
    check_reading(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200), json_values.map(json.dumps)))
def test_any_bytes_or_json_are_a_reading_or_a_reading_error(raw):
    check_reading(raw)


def test_deeply_nested_json_is_a_reading_error_not_a_recursion_crash():
    check_reading("[" * 100_000 + "]" * 100_000)


def test_a_huge_integer_value_is_a_reading_error_not_an_overflow():
    text = json.dumps({"device": "d", "kind": "host", "ts": "2026-11-22T15:00:00Z",
                       "values": {"host.cpu_pct": 10 ** 400}})
    check_reading(text)
