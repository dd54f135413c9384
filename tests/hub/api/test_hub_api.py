"""The HTTP API in process (Starlette's test client) on SQLite and PostgreSQL: every read scoped
by role, acknowledging scoped and audited, problem details for every error, hostile requests
answered with clean 4xx that leave nothing half-written."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from apikit import hub_with_fleet
from hub.api.app import create_app
from hub.api.openapi import document
from hub.config import parse_text
from hub.domains import audit


@pytest.fixture
def env(hub_db):
    db, tokens = hub_with_fleet(hub_db)
    client = TestClient(create_app(db), raise_server_exceptions=True)
    yield client, tokens, db
    db.close()


def get(client, token, path, **kw):
    return client.get(path, headers={"Authorization": f"Bearer {token}"}, **kw)


def post(client, token, path, **kw):
    return client.post(path, headers={"Authorization": f"Bearer {token}"}, **kw)


def alert_id(client, token, store):
    return next(a["id"] for a in get(client, token, "/v1/alerts").json() if a["store"] == store)


def test_the_fleet_summary_by_region_and_the_stores_needing_attention(env):
    client, tokens, _ = env
    data = get(client, tokens["admin"], "/v1/fleet").json()
    assert data["total"]["stores"] == 3 and data["total"]["offline"] == 1
    north = next(r for r in data["regions"] if r["region"] == "north")
    assert north["stores"] == 2 and north["at_risk"] == 2 and north["critical_alerts"] == 1
    # s1 (devices at risk, a critical alert), s2 (offline), s3 (critical alert).
    assert {s["store"]: s["attention"] for s in data["stores"]} == {
        "s1": ["devices at risk", "critical alerts"], "s2": ["offline"],
        "s3": ["devices at risk", "critical alerts"]}
    every = get(client, tokens["admin"], "/v1/fleet", params={"all": "true"}).json()
    assert len(every["stores"]) == 3 and every["listed"] == "all"
    south = get(client, tokens["admin"], "/v1/fleet", params={"region": "south"}).json()
    assert [r["region"] for r in south["regions"]] == ["south"]


def test_a_regional_manager_sees_and_acts_only_in_its_regions(env):
    client, tokens, db = env
    rm = tokens["north-rm"]
    fleet = get(client, rm, "/v1/fleet", params={"all": "true"}).json()
    assert {s["store"] for s in fleet["stores"]} == {"s1", "s2"}
    assert [r["region"] for r in fleet["regions"]] == ["north"]
    assert {a["store"] for a in get(client, rm, "/v1/alerts").json()} == {"s1"}
    assert {d["store"] for d in get(client, rm, "/v1/devices").json()} == {"s1", "s2"}
    assert get(client, rm, "/v1/stores/s1").status_code == 200
    other = get(client, rm, "/v1/stores/s3")
    assert other.status_code == 403
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["title"] == "Forbidden" and "outside its scope" in other.json()["detail"]
    assert get(client, rm, "/v1/fleet", params={"region": "south"}).status_code == 403
    assert get(client, rm, "/v1/alerts", params={"store": "s3"}).status_code == 403
    assert get(client, rm, "/v1/rejects").status_code == 403  # chain-wide
    s3_alert = alert_id(client, tokens["admin"], "s3")
    with db.read() as tx:
        before = audit.head(tx)
    assert post(client, rm, f"/v1/alerts/{s3_alert}/ack").status_code == 403
    with db.read() as tx:
        assert audit.head(tx) == before  # a refused ack writes nothing
    s1_alert = alert_id(client, rm, "s1")
    done = post(client, rm, f"/v1/alerts/{s1_alert}/ack")
    assert done.status_code == 200 and done.json()["acked_by"] == "north-rm"
    with db.read() as tx:
        last = audit.entries(tx, actor="north-rm")[-1]
    assert last["action"] == "alerts.ack" and last["store"] == "s1"
    assert last["source"].startswith("api:")


def test_a_store_manager_sees_only_its_store(env):
    client, tokens, _ = env
    sm = tokens["s3-sm"]
    assert {s["store"] for s in get(client, sm, "/v1/fleet", params={"all": "1"}).json()[
        "stores"]} == {"s3"}
    assert get(client, sm, "/v1/fleet", params={"region": "south"}).status_code == 200
    assert get(client, sm, "/v1/fleet", params={"region": "north"}).status_code == 403
    assert get(client, sm, "/v1/stores/s1").status_code == 403


def test_an_auditor_reads_the_audit_log_and_cannot_acknowledge(env):
    client, tokens, _ = env
    entries = get(client, tokens["audit"], "/v1/audit").json()
    assert [e["action"] for e in entries][:5] == ["users.add"] * 5
    assert get(client, tokens["audit"], "/v1/audit/verify").json()["ok"] is True
    s1_alert = alert_id(client, tokens["audit"], "s1")
    assert post(client, tokens["audit"], f"/v1/alerts/{s1_alert}/ack").status_code == 403
    assert get(client, tokens["north-rm"], "/v1/audit").status_code == 403
    assert get(client, tokens["ops"], "/v1/audit").status_code == 403


def test_tokens_missing_wrong_or_disabled_get_401(env):
    client, tokens, _ = env
    assert client.get("/v1/fleet").status_code == 401
    bad = client.get("/v1/fleet", headers={"Authorization": "Bearer eh_" + "x" * 43})
    assert bad.status_code == 401 and bad.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/v1/fleet", headers={"Authorization": "Basic YTpi"}).status_code == 401
    assert post(client, tokens["admin"], "/v1/users/north-rm/disable").status_code == 200
    assert get(client, tokens["north-rm"], "/v1/fleet").status_code == 401
    rotated = post(client, tokens["admin"], "/v1/users/audit/rotate-token").json()["token"]
    assert get(client, tokens["audit"], "/v1/me").status_code == 401
    assert get(client, rotated, "/v1/me").json()["name"] == "audit"


def test_users_through_the_api(env):
    client, tokens, _ = env
    made = post(client, tokens["admin"], "/v1/users",
                json={"name": "zoe", "role": "store-manager", "stores": ["s1"]})
    assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
    assert get(client, made.json()["token"], "/v1/me").json()["stores"] == ["s1"]
    listed = get(client, tokens["audit"], "/v1/users").json()
    assert "zoe" in {u["name"] for u in listed} and made.json()["token"] not in json.dumps(listed)
    assert post(client, tokens["ops"], "/v1/users",
                json={"name": "eve", "role": "hq-admin"}).status_code == 403
    assert post(client, tokens["admin"], "/v1/users",
                json={"name": "zoe", "role": "auditor"}).status_code == 409


def _state(db):
    with db.read() as tx:
        tx.execute("SELECT COUNT(*) FROM users")
        users = tx.fetchone()[0]
        return users, audit.head(tx)


HOSTILE_BODIES = [
    (b"x" * 70000, "application/json", 413),
    (b"{", "application/json", 400),
    (b'{"name": "a", "name": "b", "role": "auditor"}', "application/json", 400),
    (b'{"name": NaN, "role": "auditor"}', "application/json", 400),
    (b"[" * 100000 + b"]" * 100000, "application/json", 413),
    (b"[" * 5000 + b"]" * 5000, "application/json", 400),
    (b'["name"]', "application/json", 400),
    (b'{"name": "a", "role": "auditor"}', "text/plain", 415),
    (b'{"name": "x\\u001b[2J", "role": "auditor"}', "application/json", 400),
    (b'{"name": "a\'; DROP TABLE users; --", "role": "auditor"}', "application/json", 400),
    (b'{"name": "../../etc/passwd", "role": "auditor"}', "application/json", 400),
    (b'{"name": "ok", "role": "auditor", "admin": true}', "application/json", 400),
    (b'{"name": "ok", "role": "regional-manager", "regions": ["a", 3]}', "application/json",
     400),
    (b'{"name": "ok", "role": "regional-manager", "regions": ["x\\u009b"]}',
     "application/json", 400),
    (b'\xff\xfe{}', "application/json", 400),
]


@pytest.mark.parametrize("body, ctype, status", HOSTILE_BODIES)
def test_hostile_bodies_get_clean_4xx_and_write_nothing(env, body, ctype, status):
    client, tokens, db = env
    before = _state(db)
    got = client.post("/v1/users", content=body,
                      headers={"Authorization": f"Bearer {tokens['admin']}",
                               "Content-Type": ctype})
    assert got.status_code == status, got.text
    assert got.headers["content-type"] == "application/problem+json"
    assert got.json()["status"] == status
    assert _state(db) == before


@pytest.mark.parametrize("path, status", [
    ("/v1/stores/..%2F..%2Fetc%2Fpasswd", 404),
    ("/v1/stores/%2e%2e", 400),
    ("/v1/stores/s1'%20OR%20'1'='1", 400),
    ("/v1/stores/%1b%5b31m", 400),
    ("/v1/stores/" + "a" * 500, 400),
    ("/v1/fleet?region=north'--", 400),
    ("/v1/fleet?region=north&region=south", 400),
    ("/v1/fleet?bogus=1", 400),
    ("/v1/fleet?all=maybe", 400),
    ("/v1/alerts?limit=99999999999999", 400),
    ("/v1/audit?since=yesterday", 400),
    ("/v1/alerts/..%2F/ack", 404),
    ("/v1/users/%00", 400),
    ("/v2/fleet", 404),
])
def test_hostile_paths_and_queries_get_clean_4xx(env, path, status):
    client, tokens, _ = env
    got = get(client, tokens["admin"], path)
    assert got.status_code == status, got.text
    assert got.headers["content-type"] == "application/problem+json"


def test_hostile_ack_ids_and_methods(env):
    client, tokens, db = env
    before = _state(db)
    for alert in ("zzzzzzzzzzzz", "1' OR 1=1 --", "%1b"):
        assert post(client, tokens["admin"], f"/v1/alerts/{alert}/ack").status_code == 400
    assert post(client, tokens["admin"], "/v1/alerts/0123456789ab/ack").status_code == 404
    assert client.delete("/v1/fleet").status_code == 405
    assert _state(db) == before


def test_rate_limit_answers_429_with_retry_after(hub_db):
    db, tokens = hub_with_fleet(hub_db)
    config = parse_text("[limits]\nrate_per_s = 1\nrate_burst = 3")
    client = TestClient(create_app(db, config))
    codes = [get(client, tokens["admin"], "/v1/me").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[-1] == 429
    limited = get(client, tokens["admin"], "/v1/me")
    assert int(limited.headers["retry-after"]) >= 1
    assert get(client, tokens["ops"], "/v1/me").status_code == 200  # another user's bucket
    db.close()


def test_openapi_describes_every_route(env):
    client, _, _ = env
    doc = client.get("/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    app = client.app
    routes = {(r.path, m) for r in app.routes for m in r.methods if m != "HEAD"}
    described = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops}
    assert routes == described
    assert document()["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
