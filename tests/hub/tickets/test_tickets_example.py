"""tickets.example.toml parses, every connector in it initializes (secrets from the
environment), and a mistake in a copy is named by its key path."""

from __future__ import annotations

import pytest

from conftest import ROOT
from hub.connectors import ConfigError, build
from hub.domains.tickets.policy import PolicyError
from hub.ticketing import load_policy

ENV = {"SN_CLIENT_SECRET": "x", "JIRA_API_TOKEN": "x", "ZENDESK_API_TOKEN": "x",
       "PD_ROUTING_KEY": "x", "WEBHOOK_SECRET": "x"}


def test_the_example_parses_and_its_connectors_initialize(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    policy = load_policy(str(ROOT / "tickets.example.toml"))
    assert {c.type for c in policy.connectors} == {"servicenow", "jira", "zendesk",
                                                   "pagerduty", "webhook"}
    assert policy.rule_for("paper_out") is None and policy.rule_for("failed").priority == "high"
    assert policy.route_for("flagship-001", "north").connector == "jira"
    assert policy.route_for("s9", "north").connector == "servicenow"
    for spec in policy.connectors:
        build(spec).cleanup()


def test_a_mistake_in_the_example_is_named_by_its_key_path(tmp_path, monkeypatch):
    text = (ROOT / "tickets.example.toml").read_text()
    bad = tmp_path / "t.toml"
    bad.write_text(text.replace('priority = "high"', 'priority = "urgent"', 1))
    with pytest.raises(PolicyError, match=r"^tickets\.families\[0\]\.priority:"):
        load_policy(str(bad))
    monkeypatch.delenv("JIRA_API_TOKEN", raising=False)
    policy = load_policy(str(ROOT / "tickets.example.toml"))
    jira = next(c for c in policy.connectors if c.type == "jira")
    with pytest.raises(ConfigError, match=r"jira\.token_env: \$JIRA_API_TOKEN is not set"):
        build(jira)
