"""The hub's TOML config: hub.example.toml documents every key with its default, check-config
names each mistake by key path with exit 2, and no malformed file prints a traceback."""

from __future__ import annotations

import dataclasses
import re
import sys
import typing

import pytest

from conftest import ROOT, run_cli
from hub import config as hubconfig
from hub.config import HubConfig, load_config, parse_text
from hub.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

EXAMPLE = ROOT / "hub.example.toml"
KEY = re.compile(r"^(#\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)$")


def hub(*args: str):
    return run_cli(*args, module="hub")


def documented_keys():
    """Map each section of the example to {key: (commented, value text, doc above)}."""
    sections: dict[str, dict[str, tuple[bool, str, bool]]] = {}
    section, doc_above = "", False
    for line in EXAMPLE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("##"):
            doc_above = True
            continue
        header = re.match(r"^\[([A-Za-z0-9_.]+)\]$", stripped)
        if header:
            section, doc_above = header.group(1), False
            sections.setdefault(section, {})
            continue
        m = KEY.match(stripped)
        if m:
            sections.setdefault(section, {}).setdefault(
                m.group(2), (bool(m.group(1)), m.group(3), doc_above))
        doc_above = False
    return sections


# Tables the config keeps as they are, parsed by their domain: [tickets] is the ticket policy
# (hub.domains.tickets.policy.parse; its example is in '##' lines, tested below).
FREE_FORM = {"tickets"}


def sections():
    hints = typing.get_type_hints(HubConfig)
    return {name: tp for name, tp in hints.items() if dataclasses.is_dataclass(tp)}


def test_the_example_is_a_valid_config_and_the_package_ships_the_same_file():
    config = load_config(EXAMPLE)
    assert config == HubConfig()  # every key shown at its default
    assert hubconfig.example_path().read_text() == EXAMPLE.read_text(), \
        "cp hub.example.toml hub/defaults/hub.example.toml"


def test_every_key_is_documented_in_the_example_with_its_default():
    documented = documented_keys()
    problems = []
    for name, cls in sections().items():
        keys = documented.get(name)
        if keys is None:
            problems.append(f"[{name}] is missing from hub.example.toml")
            continue
        for f in dataclasses.fields(cls):
            if f.name not in keys:
                problems.append(f"{name}.{f.name} is not in hub.example.toml")
                continue
            commented, text, doc = keys[f.name]
            if not doc:
                problems.append(f"{name}.{f.name} has no '##' line explaining it")
            value = tomllib.loads(f"v = {text}")["v"]
            if commented and value != f.default:
                problems.append(f"{name}.{f.name}: example shows {value!r}, "
                                f"default is {f.default!r}")
    for name, keys in documented.items():
        if name in FREE_FORM:
            problems += [f"{name}.{k}: a free-form table shows its example in '##' lines"
                         for k in keys]
            continue
        cls = sections().get(name)
        if cls is None:
            problems.append(f"[{name}] is not a hub config section")
            continue
        known = {f.name for f in dataclasses.fields(cls)}
        problems += [f"{name}.{k} is not a config key" for k in keys if k not in known]
    assert not problems, "\n".join(problems)


def test_the_drift_check_can_fail(tmp_path, monkeypatch):
    # The check above reads the example; a copy missing a key must make it fail.
    text = EXAMPLE.read_text().replace("# batch_max = 1000\n", "")
    copy = tmp_path / "hub.example.toml"
    copy.write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "EXAMPLE", copy)
    with pytest.raises(AssertionError, match="ingest.batch_max is not in hub.example.toml"):
        test_every_key_is_documented_in_the_example_with_its_default()


@pytest.mark.parametrize("text, path, message", [
    ("[api]\nlisten = 'nowhere'", "api.listen", "HOST:PORT"),
    ("[api]\ntls_cert = 'a.pem'", "api.tls_key", "go together"),
    ("[broker]\nport = 0", "broker.port", ">= 1"),
    ("[broker]\nport = true", "broker.port", "expected an integer"),
    ("[database]\nurl = 'mysql://x'", "database.url", "SQLite path"),
    ("[limits]\nmax_body_bytes = 1", "limits.max_body_bytes", ">= 1024"),
    ("[audit]\ncheckpoint_topic = 'a/#'", "audit.checkpoint_topic", "topic"),
    ("[approvals]\nurl = 'x'", "approvals.url", "unknown key"),
    ("[nope]\nx = 1", "nope", "unknown key"),
    ("log = 3", "log", "expected a table"),
    ("[log]\nlevel = 'loud'", "log.level", "must be one of"),
    ("[ingest]\nhold_stores_after = 0", "ingest.hold_stores_after", "> 0"),
    ("[ingest]\nhold_stores_after = '5s'", "ingest.hold_stores_after", "expected a number"),
])
def test_each_mistake_is_named_by_its_key_path(text, path, message):
    with pytest.raises(ConfigError) as info:
        parse_text(text)
    assert any(p.path == path and message in p.message for p in info.value.problems), \
        info.value.problems


def test_every_mistake_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        parse_text("[broker]\nport = -1\nkeepalive = 'x'\n[api]\nlisten = ':'")
    assert {p.path for p in info.value.problems} == {"broker.port", "broker.keepalive",
                                                      "api.listen"}


def test_check_config_says_ok_for_the_example_and_exit_2_with_key_paths(tmp_path):
    out = hub("check-config", str(EXAMPLE))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{EXAMPLE}: ok")
    bad = tmp_path / "hub.toml"
    bad.write_text("[api]\nlisten = 'x'\n[broker]\nport = 70000\n")
    out = hub("check-config", str(bad))
    assert out.returncode == 2
    assert f"{bad}: api.listen: must be HOST:PORT" in out.stderr
    assert f"{bad}: broker.port: must be <= 65535" in out.stderr
    assert "Traceback" not in out.stderr


def test_check_config_never_prints_the_database_password(tmp_path):
    f = tmp_path / "hub.toml"
    f.write_text("[database]\nurl = 'postgresql://hub:s3cret@db.example/hub'\n")
    out = hub("check-config", str(f))
    assert out.returncode == 0, out.stderr
    assert "s3cret" not in out.stdout and "hub:***@db.example" in out.stdout


@pytest.mark.parametrize("content", [
    b"[api\nlisten = 1",                                     # malformed TOML
    b"a = " + b"[" * 500 + b"]" * 500,                        # 500-level nesting
    b"a = " + b"{b = " * 500 + b"1" + b"}" * 500,             # 500 nested inline tables
    b"[" + b"a." * 500 + b"b]\nx = 1",                        # a 500-deep table header
    b"\xff\xfe not utf-8",
    b"x = 1\n" * 200_000,                                    # over the size bound
])
def test_malformed_files_are_one_clean_error_not_a_traceback(tmp_path, content):
    f = tmp_path / "hub.toml"
    f.write_bytes(content)
    out = hub("check-config", str(f))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and out.stderr.strip()
    assert len(out.stderr.splitlines()) <= 2


def test_a_missing_file_is_exit_2_naming_it(tmp_path):
    out = hub("check-config", str(tmp_path / "none.toml"))
    assert out.returncode == 2 and "cannot read" in out.stderr and "Traceback" not in out.stderr


def test_key_names_with_control_characters_are_escaped(tmp_path):
    f = tmp_path / "hub.toml"
    f.write_text('[api]\n"evil\\u001b[31m\\u009b" = 1\n')
    out = hub("check-config", str(f))
    assert out.returncode == 2
    assert "\x1b" not in out.stderr and "\x9b" not in out.stderr
    assert "unknown key" in out.stderr


def _example_tickets_policy() -> str:
    """The [tickets] example of hub.example.toml ('##' lines), uncommented."""
    lines, inside = [], False
    for line in EXAMPLE.read_text().splitlines():
        if line.strip() == "[tickets]":
            inside = True
            lines.append(line)
        elif inside and re.match(r"^\[[a-z]", line):
            break
        elif inside and line.startswith("##   "):
            lines.append(line[5:])
        elif inside and line.strip() == "##":
            lines.append("")
    return "\n".join(lines) + "\n"


def test_the_ticket_policy_lives_in_the_hub_config_with_key_paths_for_mistakes(tmp_path):
    from hub.errors import ConfigError
    from hub.ticketing import policy_from_config

    text = _example_tickets_policy()
    assert "[[tickets.families]]" in text
    policy = policy_from_config(hubconfig.parse_text(text))
    assert policy.enabled and policy.rule_for("predicted_failure").priority == "low"
    assert policy.connector("servicenow") is not None
    assert not policy_from_config(HubConfig()).enabled   # no [tickets]: no tickets
    bad = text.replace('priority = "high"', 'priority = "urgent"')
    with pytest.raises(ConfigError) as err:
        policy_from_config(hubconfig.parse_text(bad, "hub.toml"))
    assert err.value.problems[0].path == "tickets.families[0].priority"
    assert err.value.source == "hub.toml"
    with pytest.raises(ConfigError) as err:   # the policy's keys, not the config loader's
        policy_from_config(hubconfig.parse_text("[tickets]\nurl = 'x'\n"))
    assert err.value.problems[0].path == "tickets.url"
    assert "unknown key" in err.value.problems[0].message
    with pytest.raises(ConfigError, match="tickets: expected a table"):
        hubconfig.parse_text('tickets = 3\n')
    # check-config names the policy's key path, and says ok (tickets on) for the example.
    f = tmp_path / "hub.toml"
    f.write_text(bad)
    out = hub("check-config", str(f))
    assert out.returncode == 2 and "tickets.families[0].priority" in out.stderr
    f.write_text(text)
    out = hub("check-config", str(f))
    assert out.returncode == 0 and "tickets on: 2 families, 1 connector(s)" in out.stdout, \
        out.stderr


def test_serve_takes_the_ticket_policy_from_its_config_unless_tickets_is_given(tmp_path):
    import os
    import subprocess

    policy = ('[tickets]\nenabled = true\n[[tickets.families]]\nwhat = "failed"\n'
              'ticket = "incident"\npriority = "high"\n[[tickets.routes]]\nconnector = "hook"\n'
              '[tickets.connectors.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:9/x"\n'
              'secret_env = "HUB_TEST_HOOK_SECRET"\n')
    config = tmp_path / "hub.toml"
    config.write_text(f'[database]\nurl = "{tmp_path / "hub.db"}"\n' + policy)
    env = {**os.environ, "HUB_TEST_HOOK_SECRET": "s"}

    def serve(*extra):
        return subprocess.run([sys.executable, "-m", "hub", "serve", "--config", str(config),
                               *extra, "--check"], capture_output=True, text=True, env=env,
                              timeout=60)
    out = serve()
    assert out.returncode == 0 and "tickets 1 families (config)" in out.stdout, out.stderr
    alone = tmp_path / "tickets.toml"
    alone.write_text(policy.replace('what = "failed"', 'what = "failed"\n[[tickets.families]]\n'
                                    'what = "predicted_failure"'))
    out = serve("--tickets", str(alone))
    assert out.returncode == 0 and "tickets 2 families (--tickets)" in out.stdout, out.stderr
    config.write_text(config.read_text().replace('"high"', '"urgent"'))
    out = serve()
    assert out.returncode == 2 and "tickets.families[0].priority" in out.stderr
