"""Config: every class of mistake is reported with its key path, and valid files load."""

from __future__ import annotations

import pytest

from edge_agent.config import parse_text
from edge_agent.errors import ConfigError

VALID = """
[agent]
store = "s1"
state_dir = "/tmp/x"

[[devices]]
id = "register"
kind = "host"
interval = 10
"""

MISTAKES = {
    "an unknown key is named": (
        VALID + "colour = 'red'\n", ["devices[0].colour: unknown key"]),
    "a wrong type is named with what was expected": (
        VALID.replace("interval = 10", 'interval = "ten"'),
        ["devices[0].interval: expected a number, got a string"]),
    "a missing required key is named": (
        VALID.replace('store = "s1"', ""), ["agent.store: required"]),
    "an out-of-range value is named": (
        VALID.replace("interval = 10", "interval = 0"), ["devices[0].interval: must be > 0"]),
    "a duplicate device id is named with its twin": (
        VALID + '[[devices]]\nid = "register"\nkind = "host"\n',
        ["devices[1].id: duplicate id 'register' (also devices[0])"]),
    "an unknown collector is named": (
        VALID.replace('kind = "host"', 'kind = "fax"'), ["devices[0].kind: unknown collector"]),
    "a collector table's mistakes carry their path": (
        VALID + "[devices.host]\nconnect_timeout = -1\n",
        ["devices[0].host.connect_timeout: must be > 0"]),
    "a bool is not accepted as a number": (
        VALID.replace("interval = 10", "interval = true"),
        ["devices[0].interval: expected a number, got a boolean"]),
    "a table of another kind is refused": (
        VALID + "[devices.snmp]\n", ["devices[0].snmp: is the table of kind"]),
    "a choice outside the list is named": (
        VALID.replace('state_dir = "/tmp/x"', 'log_level = "loud"'),
        ["agent.log_level: must be one of debug, info, warning, error"]),
}


@pytest.mark.parametrize("text,expected", MISTAKES.values(), ids=MISTAKES.keys())
def test_config_mistake_is_reported_with_its_key_path(text, expected):
    if "snmp" in text and "snmp" not in __import__("edge_agent.collectors").collectors.names():
        pytest.skip("no snmp collector in this tree")
    with pytest.raises(ConfigError) as info:
        parse_text(text)
    shown = [str(p) for p in info.value.problems]
    for want in expected:
        assert any(line.startswith(want) for line in shown), shown


def test_not_toml_is_reported_with_its_line():
    with pytest.raises(ConfigError) as info:
        parse_text(VALID + "this is not toml\n")
    assert "line 10" in str(info.value)


def test_every_problem_is_reported_at_once():
    text = VALID.replace("interval = 10", "interval = -1\ntimeout = 0") + "bogus = 1\n"
    with pytest.raises(ConfigError) as info:
        parse_text(text)
    assert len(info.value.problems) == 3


def test_valid_config_loads_with_defaults():
    config = parse_text(VALID)
    device = config.devices[0]
    assert device.interval == 10.0 and device.timeout == 5.0
    assert device.stale_after == 30.0
    assert device.options.disks == ("/",)
    assert config.agent.region == "default"


def test_check_config_exits_2_with_one_line_per_problem_and_no_traceback(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(VALID.replace("interval = 10", "interval = 0") + "bogus = 1\n")
    result = cli("check-config", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in result.stderr
    assert any("devices[0].interval: must be > 0" in line for line in lines)


def test_check_config_accepts_a_valid_file(cli, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(VALID)
    result = cli("check-config", str(good))
    assert result.returncode == 0, result.stderr
    assert "1 device(s): 1 host" in result.stdout


def test_check_config_names_a_missing_file(cli, tmp_path):
    result = cli("check-config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2 and "cannot read" in result.stderr
