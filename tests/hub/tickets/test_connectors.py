"""Each connector against its stand-in server (tests/support/itsm_standins.py: local HTTP
servers written from the vendors' documentation, since the real services cannot be reached
from here): create, look-up by correlation key, comment, transition or status change, 401, 429
with Retry-After, 5xx, a timeout, and an answer lost after the ticket was created."""

from __future__ import annotations

import json
import os
import types

import pytest

from hub.connectors import build
from hub.connectors.base import (AuthFailed, ConfigError, Permanent, Retryable, read_secret,
                                 retry_after)
from hub.domains.tickets.outbox import Claimed
from hub.domains.tickets.policy import ConnectorSpec
from hub.domains.tickets.text import DeviceFacts, render
from itsm_standins import (JiraStandIn, PagerDutyStandIn, ServiceNowStandIn, WebhookReceiver,
                           ZendeskStandIn)

CORR = "retail-edge-0123456789abcdef0123456789abcdef-1"


def text():
    return render(store="s1", region="r1", device="p1", what="failed", severity="critical",
                  since="2026-12-05T07:00:00.000Z", kind="incident", priority="high",
                  correlation=CORR, facts=DeviceFacts(kind="escpos", model="TM-T88VI"),
                  decision=None, explanation=["status error"], hint=None,
                  tiers={"replace_device": "approval"})


def intent(action="create", attempts=1, ref=None, iid=1, body=None):
    body = body or ({"text": text(), "kind": "incident", "priority": "high",
                     "tags": ["failed"], "route": {"assignment_group": "Store IT",
                                                   "project": "OPS"},
                     "store": "s1", "device": "p1", "what": "failed"}
                    if action == "create" else {"text": f"{action} note"})
    return Claimed(iid, 1, action, "x", body, attempts, 0.0, CORR, ref, ref, None)


@pytest.fixture
def secret_file(tmp_path):
    def make(value: str):
        p = tmp_path / f"secret-{abs(hash(value))}"
        p.write_text(value + "\n")
        os.chmod(p, 0o600)
        return str(p)
    return make


@pytest.fixture
def servers():
    made = []

    def start(server):
        made.append(server.start())
        return server
    yield start
    for s in made:
        s.stop()


def connector(type_, settings):
    return build(ConnectorSpec("x", type_, types.MappingProxyType(settings)))


# ServiceNow -----------------------------------------------------------------------------------

def sn(servers, secret_file, **kw):
    server = servers(ServiceNowStandIn(**kw))
    conn = connector("servicenow", {"url": server.url, "username": "hub",
                                    "password_file": secret_file("pw"), "timeout_s": 1})
    return server, conn


def test_servicenow_create_find_comment_resolve_reopen(servers, secret_file):
    server, conn = sn(servers, secret_file)
    r = conn.deliver(intent())
    (rec,) = server.incidents.values()
    assert r.key == rec["number"] and r.ref == rec["sys_id"] and rec["correlation_id"] == CORR
    assert (rec["urgency"], rec["impact"], rec["assignment_group"]) == ("1", "2", "Store IT")
    assert rec["correlation_display"] == "retail-edge" and "TM-T88VI" in rec["description"]
    assert conn.find(CORR, None).ref == r.ref
    conn.deliver(intent("comment", ref=r.ref))
    assert rec["work_notes"] == ["comment note"]
    out = conn.deliver(intent("resolve", ref=r.ref))
    assert out.state == "6" and rec["close_code"] and rec["close_notes"] == "resolve note"
    out = conn.deliver(intent("reopen", ref=r.ref))
    assert out.state == "2" and out.refused is None
    rec.update(state="7", close_code="Not Solved (Too Costly)")
    assert conn.deliver(intent("reopen", ref=r.ref)).refused == "wontfix"
    rec.update(close_code="Solved (Permanently)")
    assert conn.deliver(intent("reopen", ref=r.ref)).refused == "closed"


def test_servicenow_oauth_client_credentials(servers, secret_file):
    server = servers(ServiceNowStandIn(client_id="cid", client_secret="csecret"))
    conn = connector("servicenow", {"url": server.url, "auth": "oauth", "client_id": "cid",
                                    "client_secret_file": secret_file("csecret")})
    conn.check()
    conn.deliver(intent())
    token_calls = server.requests("POST", "/oauth_token.do")
    assert len(token_calls) == 1          # the token is reused
    assert token_calls[0][2]["grant_type"] == "client_credentials"
    bad = connector("servicenow", {"url": server.url, "auth": "oauth", "client_id": "cid",
                                   "client_secret_file": secret_file("wrong")})
    with pytest.raises(AuthFailed):
        bad.check()


def test_servicenow_faults(servers, secret_file):
    server, conn = sn(servers, secret_file)
    server.fail(("status", 401, None))
    with pytest.raises(AuthFailed):
        conn.deliver(intent())
    server.fail(("status", 429, 17))
    with pytest.raises(Retryable) as e:
        conn.deliver(intent())
    assert e.value.retry_after == 17
    server.fail(("status", 503, None))
    with pytest.raises(Retryable):
        conn.deliver(intent())
    server.fail(("timeout", 2))
    with pytest.raises(Retryable, match="no answer"):
        conn.deliver(intent())
    assert server.incidents == {}
    # The answer is lost after the incident was made: the retry finds it, makes no second.
    server.fail(("lost",), "POST")
    with pytest.raises(Retryable):
        conn.deliver(intent())
    assert len(server.incidents) == 1
    r = conn.deliver(intent(attempts=2))
    assert len(server.incidents) == 1 and r.ref == next(iter(server.incidents))
    server.fail(("status", 400, None), "PATCH")
    with pytest.raises(Permanent):
        conn.deliver(intent("comment", ref=r.ref))


# Jira ------------------------------------------------------------------------------------------

def jira(servers, secret_file, **kw):
    server = servers(JiraStandIn(**kw))
    conn = connector("jira", {"url": server.url, "email": "hub@example.com",
                              "token_file": secret_file("tok"), "project": "DEF",
                              "timeout_s": 1, "settle_s": 0})
    return server, conn


def test_jira_create_with_adf_label_then_comment_resolve_reopen_by_transition_name(
        servers, secret_file):
    server, conn = jira(servers, secret_file)
    r = conn.deliver(intent())
    assert r.key == "OPS-1" and r.url.endswith("/browse/OPS-1")   # the route's project
    issue = server.issues["OPS-1"]
    f = issue["fields"]
    assert CORR in f["labels"] and "failed" in f["labels"]
    assert f["description"]["type"] == "doc" and f["priority"] == {"name": "High"}
    assert "TM-T88VI" in json.dumps(f["description"])
    assert conn.find(CORR, None).key == "OPS-1"
    conn.deliver(intent("comment", ref="OPS-1"))
    assert issue["comments"][-1]["content"][0]["content"][0]["text"] == "comment note"
    out = conn.deliver(intent("resolve", ref="OPS-1"))
    assert issue["status"] == "Done" and issue["resolution"] == "Done" and out.state == "Done"
    out = conn.deliver(intent("reopen", ref="OPS-1"))
    assert issue["status"] == "To Do" and out.refused is None
    conn.deliver(intent("resolve", ref="OPS-1"))
    issue["resolution"] = "Won't Do"
    assert conn.deliver(intent("reopen", ref="OPS-1")).refused == "wontfix"
    assert issue["status"] == "Done"


def test_jira_looks_again_before_creating_when_search_lags(servers, secret_file):
    server, conn = jira(servers, secret_file, search_lag=1)
    server.fail(("lost",), "POST", "/rest/api/3/issue$")
    with pytest.raises(Retryable):
        conn.deliver(intent())
    # The first look-up misses the fresh issue (eventual consistency): no create yet.
    with pytest.raises(Retryable, match="looking again"):
        conn.deliver(intent(attempts=2))
    r = conn.deliver(intent(attempts=3))
    assert r.key == "OPS-1" and len(server.issues) == 1


def test_jira_faults(servers, secret_file):
    server, conn = jira(servers, secret_file)
    for fault, err in ((("status", 401, None), AuthFailed), (("status", 429, 9), Retryable),
                       (("status", 500, None), Retryable), (("timeout", 2), Retryable)):
        server.fail(fault)
        with pytest.raises(err) as e:
            conn.deliver(intent())
        if fault[1] == 429:
            assert e.value.retry_after == 9
    assert server.issues == {}


# Zendesk ---------------------------------------------------------------------------------------

def zd(servers, secret_file):
    server = servers(ZendeskStandIn())
    conn = connector("zendesk", {"url": server.url, "email": "hub@example.com",
                                 "token_file": secret_file("tok"), "timeout_s": 1})
    return server, conn


def test_zendesk_create_with_external_id_and_idempotency_key_then_update(servers, secret_file):
    server, conn = zd(servers, secret_file)
    r = conn.deliver(intent())
    t = server.tickets[int(r.ref)]
    assert t["external_id"] == CORR and "retail_edge" in t["tags"] and t["priority"] == "high"
    assert server.requests("POST")[0][3]["idempotency-key"] == CORR
    assert conn.find(CORR, None).ref == r.ref
    conn.deliver(intent("comment", ref=r.ref))
    assert t["comments"][-1] == {"body": "comment note", "public": False}
    assert conn.deliver(intent("resolve", ref=r.ref)).state == "solved"
    assert conn.deliver(intent("reopen", ref=r.ref)).state == "open"
    # A closed ticket is never reopened: a follow-up continues it and inherits its tags.
    t["status"] = "closed"
    f = conn.deliver(intent("reopen", ref=r.ref, iid=7))
    follow = server.tickets[int(f.ref)]
    assert f.ref != r.ref and follow["via"]["source"]["from"]["ticket_id"] == int(r.ref)
    assert "failed" in follow["tags"]
    t2 = server.tickets[int(f.ref)]
    t2["tags"].append("wont_fix")
    assert conn.deliver(intent("reopen", ref=f.ref, iid=8)).refused == "wontfix"


def test_zendesk_lost_answer_and_the_idempotency_key(servers, secret_file):
    server, conn = zd(servers, secret_file)
    server.fail(("lost",), "POST")
    with pytest.raises(Retryable):
        conn.deliver(intent())
    r = conn.deliver(intent(attempts=2))          # found by external_id
    assert len(server.tickets) == 1 and r.ref == "4711"
    # Even without the look-up, the same Idempotency-Key gives back the same ticket.
    assert conn.create(intent()).ref == "4711" and len(server.tickets) == 1
    for fault, err in ((("status", 401, None), AuthFailed), (("status", 429, 30), Retryable),
                       (("status", 503, None), Retryable), (("timeout", 2), Retryable)):
        server.fail(fault)
        with pytest.raises(err):
            conn.deliver(intent("comment", ref=r.ref))


# PagerDuty and the webhook --------------------------------------------------------------------

def test_pagerduty_triggers_and_resolves_by_dedup_key(servers, secret_file):
    server = servers(PagerDutyStandIn())
    conn = connector("pagerduty", {"url": server.url, "routing_key_file": secret_file("R" * 32),
                                   "timeout_s": 1})
    server.fail(("lost",))
    with pytest.raises(Retryable):
        conn.deliver(intent())
    conn.deliver(intent(attempts=2))               # the same dedup_key: one alert
    conn.deliver(intent("comment", ref=CORR))
    assert len(server.alerts) == 1 and len(server.alerts[0]["events"]) == 3
    assert server.alerts[0]["events"][0]["severity"] == "error"
    conn.deliver(intent("resolve", ref=CORR))
    assert server.alerts[0]["status"] == "resolved"
    server.fail(("status", 429, None))
    with pytest.raises(Retryable):
        conn.deliver(intent("reopen", ref=CORR))
    wrong = connector("pagerduty", {"url": server.url,
                                    "routing_key_file": secret_file("W" * 32)})
    with pytest.raises(Permanent):
        wrong.deliver(intent())


def test_webhook_signs_with_hmac_and_the_receiver_drops_repeats(servers, secret_file):
    server = servers(WebhookReceiver(b"s3cret"))
    conn = connector("webhook", {"url": server.url, "secret_file": secret_file("s3cret")})
    r = conn.deliver(intent())
    conn.deliver(intent())                         # a retry of the same intent
    assert len(server.received) == 1 and server.bad_signatures == 0
    assert r.key.startswith("WH-") and server.received[0]["ticket"]["store"] == "s1"
    forged = connector("webhook", {"url": server.url, "secret_file": secret_file("guess")})
    with pytest.raises(AuthFailed):
        forged.deliver(intent(iid=2))
    assert server.bad_signatures == 1


# Settings, secrets and hostile answers ---------------------------------------------------------

def test_secrets_come_from_private_files_or_the_environment_and_never_print(
        tmp_path, monkeypatch, secret_file):
    with pytest.raises(ConfigError, match="secrets are not written in the config"):
        read_secret({"password": "hunter2"}, "password", "p")
    loose = tmp_path / "loose"
    loose.write_text("hunter2")
    os.chmod(loose, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        read_secret({"password_file": str(loose)}, "password", "p")
    monkeypatch.setenv("SN_PW", "hunter2")
    s = read_secret({"password_env": "SN_PW"}, "password", "p")
    assert s.reveal() == "hunter2" and "hunter2" not in repr(s) + str(s)
    with pytest.raises(ConfigError, match="not set"):
        read_secret({"password_env": "NO_SUCH_VAR_K"}, "password", "p")
    with pytest.raises(ConfigError, match="loopback"):
        connector("webhook", {"url": "http://example.com/x", "secret_env": "SN_PW"})


def test_hostile_answers_are_refused_field_by_field(servers, secret_file):
    server, conn = sn(servers, secret_file)
    original = server.route

    def evil(method, path, query, body, raw, headers):
        status, answer, extra = original(method, path, query, body, raw, headers)
        if method == "POST":
            answer["result"]["sys_id"] = "../../etc/passwd"
        return status, answer, extra
    server.route = evil
    with pytest.raises(Retryable, match="may have succeeded"):
        conn.deliver(intent())
    server.route = original
    r = conn.deliver(intent(attempts=2))           # the look-up finds the one made
    assert len(server.incidents) == 1 and len(r.ref) == 32


def test_retry_after_takes_seconds_or_a_date_and_is_bounded():
    import httpx

    def resp(v):
        return httpx.Response(429, headers={"Retry-After": v})
    assert retry_after(resp("12")) == 12
    assert retry_after(resp("99999999")) == 3600
    assert retry_after(resp("Wed, 21 Oct 2015 07:28:00 GMT")) == 0
    assert retry_after(resp("soon")) is None
