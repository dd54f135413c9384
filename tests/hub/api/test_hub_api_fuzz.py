"""Hostile input to the API, generated: whatever the path segment, query or body, the answer is
a clean problem (never a 500) or a success, and a refused request writes nothing."""

from __future__ import annotations

import json
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from apikit import hub_with_fleet
from hub.api.app import create_app
from hub.config import parse_text
from hub.domains import audit


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    db, tokens = hub_with_fleet(str(tmp_path_factory.mktemp("fuzz") / "hub.db"))
    config = parse_text("[limits]\nrate_per_s = 100000\nrate_burst = 100000")
    client = TestClient(create_app(db, config), raise_server_exceptions=False)
    yield client, tokens, db
    db.close()


def state(db):
    with db.read() as tx:
        tx.execute("SELECT COUNT(*) FROM users")
        users = tx.fetchone()[0]
        tx.execute("SELECT COUNT(*) FROM alerts WHERE acked IS NOT NULL")
        acked = tx.fetchone()[0]
        return users, acked, audit.head(tx)


TEXT = st.text(st.characters(codec="utf-8"), max_size=80)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(segment=TEXT, key=TEXT, value=TEXT,
       path=st.sampled_from(["/v1/stores/{}", "/v1/users/{}", "/v1/alerts/{}/ack",
                             "/v1/users/{}/disable", "/v1/fleet?{}", "/v1/alerts?{}",
                             "/v1/audit?{}", "/v1/devices?{}"]))
def test_any_path_or_query_is_answered_cleanly(env, segment, key, value, path):
    client, tokens, db = env
    before = state(db)
    if "?" in path:
        url = path.format(urllib.parse.urlencode({key: value}))
    else:
        url = path.format(urllib.parse.quote(segment, safe=""))
    method = "POST" if url.endswith(("/ack", "/disable")) else "GET"
    got = client.request(method, url, headers={"Authorization": f"Bearer {tokens['audit']}"})
    assert got.status_code < 500, (url, got.text)
    if got.status_code >= 400:
        assert got.headers["content-type"] == "application/problem+json"
        assert json.loads(got.text)["status"] == got.status_code
    if method == "POST":  # an auditor may change nothing
        assert got.status_code in (400, 403, 404, 405) and state(db) == before


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                       | TEXT, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)


@FUZZ
@given(body=st.dictionaries(st.sampled_from(["name", "role", "regions", "stores", "x"]),
                            JSONISH, max_size=5))
def test_any_new_user_body_is_answered_cleanly(env, body):
    client, tokens, db = env
    before = state(db)
    got = client.post("/v1/users", content=json.dumps(body).encode(),
                      headers={"Authorization": f"Bearer {tokens['admin']}",
                               "Content-Type": "application/json"})
    assert got.status_code < 500, (body, got.text)
    if got.status_code != 201:
        assert got.headers["content-type"] == "application/problem+json"
        assert state(db) == before
    else:  # a valid user was made, with its audit entry in the same transaction
        after = state(db)
        assert after[0] == before[0] + 1 and after[2][0] == before[2][0] + 1
