"""Bundles and rollouts through the HTTP API (Starlette's test client) on SQLite and PostgreSQL:
the rollout domain's own functions as the caller, hq-admin and it-operator only (rollouts.read,
devices.act in docs/access.md), every change audited, wrong states 409."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from apikit import hub_with_fleet
from hub.api.app import create_app
from hub.config import parse_text
from hub.domains import audit
from hub.domains.access import local_actor
from hub.domains.rollout import rules
from hub.keys import KeyRing


@pytest.fixture
def env(hub_db, tmp_path):
    db, tokens = hub_with_fleet(hub_db)
    ring = KeyRing.init(tmp_path / "keys")
    with db.transaction() as tx:
        b = rules.create_bundle(tx, lambda: 1000.0, local_actor("ann"), kind="model",
                                name="device_health", ring=ring,
                                files={"device_health.onnx": b"m", "device_health.card.json":
                                       b'{"version": "x"}'})
    config = parse_text(f'[keys]\ndirectory = "{tmp_path / "keys"}"\n')
    client = TestClient(create_app(db, config), raise_server_exceptions=True)
    yield client, tokens, db, b
    db.close()


def call(client, token, method, path, body=None):
    headers = {"Authorization": f"Bearer {token}"}
    if body is None:
        return client.request(method, path, headers=headers)
    headers["Content-Type"] = "application/json"
    return client.request(method, path, headers=headers, content=json.dumps(body))


def trail(db, target: str) -> list[tuple[str, str]]:
    with db.read() as tx:
        return [(e["action"], e["actor"]) for e in audit.entries(tx) if e["object"] == target]


def test_an_operator_starts_pauses_resumes_and_aborts_a_rollout(env):
    client, tokens, db, b = env
    listed = call(client, tokens["ops"], "GET", "/v1/bundles").json()
    assert [x["sha256"] for x in listed] == [b["sha256"]]
    r = call(client, tokens["ops"], "POST", "/v1/rollouts",
             {"bundle": b["sha256"][:12], "stages": "pilot=s1; rest=chain", "soak_s": 3600,
              "gates": {"max_alert_ratio": 2.0}})
    assert r.status_code == 201, r.text
    ro = r.json()
    assert ro["state"] == "running" and ro["actor"] == "ops" and ro["gates"]["max_alert_ratio"] == 2
    assert [s["store"] for s in ro["stores"]] == ["s1"]
    rid = ro["id"]
    # One rollout of a kind at a time.
    again = call(client, tokens["admin"], "POST", "/v1/rollouts",
                 {"bundle": b["sha256"], "stages": "chain"})
    assert again.status_code == 409 and "still going" in again.json()["detail"]
    assert call(client, tokens["admin"], "GET", f"/v1/rollouts/{rid}").json()["id"] == rid
    assert [x["id"] for x in call(client, tokens["ops"], "GET", "/v1/rollouts").json()] == [rid]
    for action, state in (("pause", "paused"), ("resume", "running"), ("abort", "aborted")):
        r = call(client, tokens["ops"], "POST", f"/v1/rollouts/{rid}/{action}")
        assert r.status_code == 200 and r.json()["state"] == state, (action, r.text)
    late = call(client, tokens["ops"], "POST", f"/v1/rollouts/{rid}/pause")
    assert late.status_code == 409 and "cannot pause" in late.json()["detail"]
    assert [a for a, _ in trail(db, f"rollout:{rid}") if a.startswith("rollouts.")][:1] == \
        ["rollouts.start"]
    actions = {(a, who) for a, who in trail(db, f"rollout:{rid}")}
    assert {("rollouts.start", "ops"), ("rollouts.pause", "ops"), ("rollouts.abort", "ops")} \
        <= actions


def test_only_hq_admin_and_it_operator_see_or_drive_rollouts(env):
    client, tokens, db, b = env
    r = call(client, tokens["admin"], "POST", "/v1/rollouts",
             {"bundle": b["sha256"], "stages": "pilot=s1; chain", "approval": ["chain"]})
    rid = r.json()["id"]
    for who in ("north-rm", "s3-sm", "audit"):
        for path in ("/v1/bundles", "/v1/rollouts", f"/v1/rollouts/{rid}"):
            assert call(client, tokens[who], "GET", path).status_code == 403, (who, path)
        for action in ("pause", "abort"):
            assert call(client, tokens[who], "POST",
                        f"/v1/rollouts/{rid}/{action}").status_code == 403, who
        assert call(client, tokens[who], "POST", "/v1/rollouts",
                    {"bundle": b["sha256"], "stages": "chain"}).status_code == 403, who
    with db.read() as tx:
        assert rules.status(tx, rid)["state"] == "running"


@pytest.mark.parametrize("body, status, want", [
    ({"bundle": "zz", "stages": "chain"}, 400, "bundle"),
    ({"bundle": "0123456789", "stages": "chain"}, 404, "no bundle"),
    ({"stages": "chain"}, 400, "missing field"),
    ({"bundle": "BUNDLE", "stages": "pilot=nowhere"}, 400, "unknown store"),
    ({"bundle": "BUNDLE", "stages": "chain", "soak_s": True}, 400, "soak_s"),
    ({"bundle": "BUNDLE", "stages": "chain", "gates": {"rm_rf": 1}}, 400, "gates"),
    ({"bundle": "BUNDLE", "stages": "chain", "approval": ["nope"]}, 400, "names no stage"),
])
def test_bad_rollout_requests_are_refused_and_nothing_starts(env, body, status, want):
    client, tokens, db, b = env
    body = {k: (b["sha256"] if v == "BUNDLE" else v) for k, v in body.items()}
    r = call(client, tokens["ops"], "POST", "/v1/rollouts", body)
    assert r.status_code == status and want in r.json()["detail"], r.text
    assert call(client, tokens["ops"], "GET", "/v1/rollouts").json() == []
    assert call(client, tokens["ops"], "GET", "/v1/rollouts/not-a-uuid").status_code == 400
