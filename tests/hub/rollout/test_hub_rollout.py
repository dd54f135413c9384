"""Bundles and staged rollouts with health gates (hub/domains/rollout), on SQLite and
PostgreSQL. The fleet's health is injected, so every verdict is decided by the figures given,
not by time: a bad model is aborted at the pilot gate and rolled back without a person, a good
one goes through every stage, a store's failure aborts at once, an approval stage waits."""

from __future__ import annotations

import json

import pytest

from edge_protocol import bundles as proto
from edge_protocol import signing
from hub.domains import audit
from hub.domains.access import Actor, local_actor
from hub.domains.rollout import rules
from hub.keys import KeyRing
from hub.app import open_store

ANN, BOB = local_actor("ann"), Actor("user", "bob", "hq-admin")
STORES = {"p1": "north", "p2": "north", "n1": "north", "n2": "north", "s1": "south",
          "s2": "south"}
STAGES = "pilot=p1,p2; north=region:north; chain"


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db(hub_db):
    store = open_store(hub_db)
    yield store
    store.close()


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    return KeyRing.init(tmp_path_factory.mktemp("ring") / "keys")


def bundle(db, ring, clock, body: bytes, name: str = "device_health") -> dict:
    files = {f"{name}.onnx": body, f"{name}.card.json": b'{"version": "x"}'}
    with db.transaction() as tx:
        return rules.create_bundle(tx, clock, ANN, kind="model", name=name, files=files,
                                   ring=ring)


def baseline(db, ring, clock) -> dict:
    """v1 on every store, as a finished earlier rollout would leave it."""
    b = bundle(db, ring, clock, b"model-one")
    with db.transaction() as tx:
        for store, region in STORES.items():
            rules.assign(tx, clock, ring, store, region, "model", b["sha256"])
    return b


class Fleet:
    """Injected health: the alerts per device-day a store shows, by whether it runs `bad`."""

    def __init__(self, db, bad_sha: str | None, rate: float = 0.5, factor: float = 2.0):
        self.db, self.bad, self.rate, self.factor = db, bad_sha, rate, factor

    def __call__(self, tx, stores, since, until, sessions):
        days = 10 * len(stores) * (until - since) / 86400  # 10 devices a store
        bad = sum(1 for s in stores if rules.desired_sha(tx, s, "model") == self.bad)
        good = len(stores) - bad
        per_store_day = 10 * (until - since) / 86400
        alerts = round(self.rate * per_store_day * (good + self.factor * bad))
        return rules.Health(days, alerts, 0)


def run(db, ring, clock, fleet, rid, rounds=10, soak=86400.0):
    seen = []
    for _ in range(rounds):
        clock.t += soak + 1
        with db.transaction() as tx:
            seen += rules.tick(tx, clock, ring, fleet, STORES, {})
            state = rules.status(tx, rid)["state"]
        if state not in ("running",):
            break
    return seen


def desired_model(db, store) -> tuple[str | None, bool]:
    with db.read() as tx:
        tx.execute("SELECT model_sha, model_rollback FROM desired WHERE store = ?", (store,))
        sha, rb = tx.fetchone()
    return sha, bool(rb)


def test_a_model_that_doubles_predicted_failures_is_aborted_at_the_pilot_and_rolled_back(db, ring):
    clock = Clock()
    v1 = baseline(db, ring, clock)
    v2 = bundle(db, ring, clock, b"model-two-bad")
    assert v2["version"] == 2
    with db.transaction() as tx:
        r = rules.start(tx, clock, ANN, ring, bundle=v2["sha256"][:12], stages=STAGES,
                        stores=STORES, soak_s=86400.0)
    assert [s["stores"] for s in r["stages"]] == [["p1", "p2"], ["n1", "n2"], ["s1", "s2"]]
    assert desired_model(db, "p1") == (v2["sha256"], False)
    assert desired_model(db, "n1") == (v1["sha256"], False)
    seen = run(db, ring, clock, Fleet(db, v2["sha256"]), r["id"])
    assert seen == [(r["id"], "aborted")]
    with db.read() as tx:
        st = rules.status(tx, r["id"])
        actions = [e["action"] for e in audit.entries(tx)]
    assert st["state"] == "aborted" and "alert_rate" in st["reason"] and "pilot" in st["reason"]
    assert st["last_gate"]["rate_updated"] > 1.5 * st["last_gate"]["rate_baseline"]
    # Rolled back, by itself: the pilot stores' desired state is v1 again, signed as a rollback.
    assert desired_model(db, "p1") == (v1["sha256"], True)
    assert desired_model(db, "p2") == (v1["sha256"], True)
    assert desired_model(db, "s1") == (v1["sha256"], False)  # never touched
    assert all(s["rolled_back"] for s in st["stores"])
    assert "rollouts.abort" in actions


def test_a_good_model_goes_through_every_stage(db, ring):
    clock = Clock()
    baseline(db, ring, clock)
    v2 = bundle(db, ring, clock, b"model-two-good")
    with db.transaction() as tx:
        r = rules.start(tx, clock, ANN, ring, bundle=v2["sha256"], stages=STAGES,
                        stores=STORES, soak_s=3600.0)
    seen = run(db, ring, clock, Fleet(db, v2["sha256"], factor=1.0), r["id"], soak=3600.0)
    assert [what for _, what in seen] == ["stage north", "stage chain", "done"]
    assert all(desired_model(db, s) == (v2["sha256"], False) for s in STORES)
    # The desired documents verify as the agent will verify them, and name the new manifest.
    trusted = signing.trusted_keys(ring.public_keys().values())
    with db.read() as tx:
        docs = rules.desired_to_publish(tx)
    for store, region, version, payload in docs:
        d = proto.check_desired(payload, store=store, trusted=trusted)
        assert d.bundles["model"]["manifest"]["sha256"] == v2["sha256"]


def test_a_store_that_fails_to_apply_aborts_at_once(db, ring):
    clock = Clock()
    v1 = baseline(db, ring, clock)
    v2 = bundle(db, ring, clock, b"model-two")
    with db.transaction() as tx:
        r = rules.start(tx, clock, ANN, ring, bundle=v2["sha256"], stages=STAGES,
                        stores=STORES, soak_s=86400.0)
        rules.record_report(tx, clock, "p2", {"type": "bundle", "status": "failed",
                                               "reason": "invalid_model", "kind": "model",
                                               "bundle_version": 2, "sha256": v2["sha256"]})
    clock.t += 60  # long before the soak ends
    with db.transaction() as tx:
        assert rules.tick(tx, clock, ring, Fleet(db, None), STORES, {}) == [(r["id"], "aborted")]
    assert desired_model(db, "p1") == (v1["sha256"], True)


def test_an_approval_stage_waits_for_someone_else_and_pause_holds(db, ring):
    clock = Clock()
    baseline(db, ring, clock)
    v2 = bundle(db, ring, clock, b"model-two")
    with db.transaction() as tx:
        r = rules.start(tx, clock, ANN, ring, bundle=v2["sha256"], stages=STAGES,
                        stores=STORES, soak_s=86400.0, approvals=("north",))
    fleet = Fleet(db, v2["sha256"], factor=1.0)
    assert [w for _, w in run(db, ring, clock, fleet, r["id"])] == ["awaiting_approval"]
    with pytest.raises(rules.RolloutError, match="own"):
        with db.transaction() as tx:
            rules.control(tx, clock, ANN, ring, r["id"], "approve", STORES)
    with db.transaction() as tx:
        assert rules.control(tx, clock, BOB, ring, r["id"], "approve", STORES)["stage"] == 1
        rules.control(tx, clock, BOB, ring, r["id"], "pause")
    clock.t += 90_000  # soaked, but paused
    with db.transaction() as tx:
        assert rules.tick(tx, clock, ring, fleet, STORES, {}) == []
        rules.control(tx, clock, BOB, ring, r["id"], "resume")
        assert rules.tick(tx, clock, ring, fleet, STORES, {}) == [(r["id"], "stage chain")]
        st = rules.control(tx, clock, BOB, ring, r["id"], "abort")
    assert st["state"] == "aborted"


def test_too_few_device_days_is_inconclusive_and_pauses_for_a_person(db, ring):
    clock = Clock()
    baseline(db, ring, clock)
    v2 = bundle(db, ring, clock, b"model-two")
    with db.transaction() as tx:
        r = rules.start(tx, clock, ANN, ring, bundle=v2["sha256"], stages=STAGES,
                        stores=STORES, soak_s=60.0)

    def thin(tx, stores, since, until, sessions):
        return rules.Health(0.01, 0, 0)

    seen = []
    for _ in range(6):
        clock.t += 61
        with db.transaction() as tx:
            seen += rules.tick(tx, clock, ring, thin, STORES, {})
    assert seen == [(r["id"], "paused")]
    with db.read() as tx:
        assert "inconclusive" in rules.status(tx, r["id"])["reason"]


def test_stages_and_bundles_are_checked(db, ring):
    clock = Clock()
    for text in ("", "pilot=nope", "pilot=region:mars", "bad name=p1"):
        with pytest.raises(rules.RolloutError):
            rules.parse_stages(text, STORES)
    a = bundle(db, ring, clock, b"same")
    assert bundle(db, ring, clock, b"same")["existing"] is True
    with db.read() as tx:
        got = rules.get_bundle(tx, a["sha256"][:10])
    assert got["version"] == a["version"]
    m = got["manifest"]
    trusted = signing.trusted_keys(ring.public_keys().values())
    checked = proto.check_manifest(m, trusted, now=clock(), agent_version="0.1.0")
    assert checked.sha256 == a["sha256"] and checked.kind == "model"
    with pytest.raises(Exception):
        proto.check_manifest(dict(m, version=99), trusted, now=clock(), agent_version="0.1.0")
    json.dumps(m)
