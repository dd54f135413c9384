"""Commands and flags through the HTTP API (Starlette's test client) on SQLite and PostgreSQL:
signed as the CLI signs them, authorized and audited as the caller, hostile bodies refused."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from apikit import hub_with_fleet
from edge_protocol import commands as proto
from edge_protocol import signing
from hub.api.app import create_app
from hub.config import parse_text
from hub.domains import audit
from hub.keys import KeyRing


@pytest.fixture
def env(hub_db, tmp_path):
    db, tokens = hub_with_fleet(hub_db)
    ring = KeyRing.init(tmp_path / "keys")
    config = parse_text(f'[keys]\ndirectory = "{tmp_path / "keys"}"\n')
    client = TestClient(create_app(db, config), raise_server_exceptions=True)
    yield client, tokens, db, ring
    db.close()


def call(client, token, method, path, body=None):
    headers = {"Authorization": f"Bearer {token}"}
    if body is None:
        return client.request(method, path, headers=headers)
    headers["Content-Type"] = "application/json"
    return client.request(method, path, headers=headers, content=json.dumps(body))


def test_an_operator_sends_a_signed_command_and_reads_it_back(env):
    client, tokens, db, ring = env
    r = call(client, tokens["ops"], "POST", "/v1/commands",
             {"store": "s1", "device": "p1", "action": "repoll", "expires_s": 60})
    assert r.status_code == 201, r.text
    row = r.json()
    assert row["status"] == "queued" and row["seq"] == 1 and row["actor"] == "ops"
    with db.read() as tx:
        tx.execute("SELECT payload FROM commands WHERE id = ?", (row["id"],))
        doc = json.loads(tx.fetchone()[0])
        actions = [(e["action"], e["actor"]) for e in audit.entries(tx)]
    trusted = signing.trusted_keys(ring.public_keys().values())
    assert proto.check_command(json.dumps(doc).encode(), store="s1", trusted=trusted,
                               now=row["created"] + 1).seq == 1
    assert ("commands.issue", "ops") in actions
    got = call(client, tokens["north-rm"], "GET", f"/v1/commands/{row['id']}")
    assert got.status_code == 200 and got.json()["id"] == row["id"]
    # A store manager of another store may not read it; nobody may send one without the right.
    assert call(client, tokens["s3-sm"], "GET", f"/v1/commands/{row['id']}").status_code == 403
    for who in ("north-rm", "s3-sm", "audit"):
        r = call(client, tokens[who], "POST", "/v1/commands",
                 {"store": "s1", "device": "p1", "action": "repoll"})
        assert r.status_code == 403, who


def test_a_high_impact_command_waits_for_someone_else_s_approval(env):
    client, tokens, _, _ = env
    r = call(client, tokens["ops"], "POST", "/v1/commands",
             {"store": "s1", "action": "restart_agent"})
    held = r.json()
    assert r.status_code == 201 and held["status"] == "awaiting_approval"
    assert isinstance(held["approval"], int)  # a request of the approvals domain
    own = call(client, tokens["ops"], "POST", f"/v1/commands/{held['id']}/approve")
    assert own.status_code == 403 and "cannot approve" in own.json()["detail"]
    # A regional manager of another region may not decide it either (the approvals rules).
    r = call(client, tokens["s3-sm"], "POST", f"/v1/commands/{held['id']}/approve")
    assert r.status_code == 403
    ok = call(client, tokens["admin"], "POST", f"/v1/commands/{held['id']}/approve")
    assert ok.status_code == 200 and ok.json()["status"] == "queued", ok.text
    assert ok.json()["approved_by"] == "admin" and ok.json()["seq"] == 1
    with env[2].read() as tx:
        tx.execute("SELECT status, outcome FROM approval_requests WHERE id = ?",
                   (held["approval"],))
        status, outcome = tx.fetchone()
    assert status == "executed" and held["id"] in outcome


def test_the_command_list_is_scoped_to_the_caller_and_its_query_checked(env):
    client, tokens, _, _ = env
    ids = {}
    for store, device in (("s1", "p1"), ("s3", "x1")):
        r = call(client, tokens["ops"], "POST", "/v1/commands",
                 {"store": store, "device": device, "action": "repoll"})
        ids[store] = r.json()["id"]
    seen = {who: {c["id"] for c in call(client, tokens[who], "GET", "/v1/commands").json()}
            for who in ("admin", "audit", "north-rm", "s3-sm")}
    assert seen["admin"] == seen["audit"] == {ids["s3"], ids["s1"]}
    assert seen["north-rm"] == {ids["s1"]} and seen["s3-sm"] == {ids["s3"]}
    one = call(client, tokens["admin"], "GET", "/v1/commands?store=s1&limit=1").json()
    assert [c["id"] for c in one] == [ids["s1"]]
    assert call(client, tokens["north-rm"], "GET", "/v1/commands?store=s3").json() == []
    for query in ("limit=0", "limit=1001", "store=../s1", "status=queued", "limit=1&limit=2"):
        r = call(client, tokens["admin"], "GET", f"/v1/commands?{query}")
        assert r.status_code == 400, query


def test_a_region_is_taken_only_for_a_store_the_hub_has_not_seen(env):
    client, tokens, db, _ = env
    r = call(client, tokens["ops"], "POST", "/v1/commands",
             {"store": "s9", "action": "diagnostics", "region": "west"})
    assert r.status_code == 201 and r.json()["region"] == "west", r.text
    for region, status in (("south", 400), ("../x", 400), (7, 400)):
        r = call(client, tokens["ops"], "POST", "/v1/commands",
                 {"store": "s1", "action": "diagnostics", "region": region})
        assert r.status_code == status, (region, r.text)
    assert "is in region north" in call(client, tokens["ops"], "POST", "/v1/commands", {
        "store": "s1", "action": "diagnostics", "region": "south"}).json()["detail"]
    with db.read() as tx:
        tx.execute("SELECT store, region FROM commands")
        assert tx.fetchall() == [("s9", "west")]


@pytest.mark.parametrize("body, want", [
    ({"store": "s1", "device": "p1", "action": "format_disk"}, "unknown_action"),
    ({"store": "s1", "device": "p1", "action": "test_print", "args": {"text": "a;b"}},
     "bad_args"),
    ({"store": "s1", "device": "p1", "action": "repoll", "extra": 1}, "unknown"),
    ({"store": "s1", "device": "p1", "action": "repoll", "expires_s": True}, "expires_s"),
    ({"store": "../s1", "action": "repoll"}, "store"),
    ({"store": "s9", "action": "diagnostics"}, "has not reported"),
])
def test_bad_commands_are_refused_and_nothing_is_stored(env, body, want):
    client, tokens, db, _ = env
    r = call(client, tokens["ops"], "POST", "/v1/commands", body)
    assert r.status_code in (400, 404) and want in r.json()["detail"], r.text
    with db.read() as tx:
        tx.execute("SELECT COUNT(*) FROM commands")
        assert tx.fetchone()[0] == 0


def test_flags_through_the_api(env):
    client, tokens, db, _ = env
    r = call(client, tokens["ops"], "POST", "/v1/flags",
             {"name": "scoring", "value": False, "scope": "region:north"})
    assert r.status_code == 200 and sorted(r.json()["changed"]) == ["s1", "s2"]
    assert {k: v for k, v in r.json().items() if k != "changed"} == \
        {"name": "scoring", "value": False, "scope": "region:north"}
    shown = call(client, tokens["audit"], "GET", "/v1/flags").json()
    assert shown["settings"][0]["scope"] == "region:north" and shown["stores"] == 2
    bad = call(client, tokens["ops"], "POST", "/v1/flags",
               {"name": "self_destruct", "value": False, "scope": "chain"})
    assert bad.status_code == 400
    assert call(client, tokens["north-rm"], "POST", "/v1/flags",
                {"name": "scoring", "value": True, "scope": "chain"}).status_code == 403
    detail = call(client, tokens["admin"], "GET", "/v1/stores/s1").json()
    assert detail["flags"]["flags"]["scoring"] is False


def test_without_a_key_ring_signing_routes_answer_503(hub_db, tmp_path):
    db, tokens = hub_with_fleet(hub_db)
    try:
        config = parse_text(f'[keys]\ndirectory = "{tmp_path / "none"}"\n')
        client = TestClient(create_app(db, config))
        r = call(client, tokens["ops"], "POST", "/v1/commands",
                 {"store": "s1", "action": "diagnostics"})
        assert r.status_code == 503 and "signing key" in r.json()["detail"]
    finally:
        db.close()


@pytest.mark.parametrize("number", ["1" + "0" * 400, "1e400", "-9223372036854775809"])
def test_a_number_no_column_or_float_holds_is_a_400_not_a_500(env, number):
    # Found by the API fuzz target (fuzz/hub_api.py): expires_s (and a rollout's soak_s) of
    # 10**400 passed the type check and made float() raise OverflowError: a 500.
    client, tokens, db, ring = env
    body = ('{"store": "s1", "action": "test_print", "device": "p1", "expires_s": %s}'
            % number)
    r = client.post("/v1/commands", content=body,
                    headers={"Authorization": f"Bearer {tokens['ops']}",
                             "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "number" in r.json()["detail"]
