"""The scoring_errors rollout gate (hub/domains/rollout, docs/rollout.md), on SQLite and
PostgreSQL, with no MQTT: the rule itself over given figures; the fleet's count of scoring
errors in a window from the agents' scoring_errors events as ingest stores them (a lost event,
a store whose state database was made again, an agent that sends none); and a rollout whose
updated stores cannot score, aborted at the pilot by that gate alone and rolled back without a
person, its value and limit in `rollout status`."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

import edge_protocol as wire
from edge_protocol.timestamps import format_ts
from hub.app import open_store
from hub.bus.consumer import Item
from hub.control import fleet_health
from hub.domains import audit, fleet
from hub.domains.access import local_actor
from hub.domains.rollout import rules
from hub.ingest.writer import commit_batch
from hub.keys import KeyRing
from hubkit import envelope

from test_hub_rollout import STAGES, STORES, Clock, baseline, bundle, desired_model

ANN = local_actor("ann")
G = rules.Gates()


def health(days=10.0, errors=0, alerts=0, reasons=None):
    return rules.Health(days, alerts, 0, errors, reasons or ({"non_finite": errors}
                                                             if errors else {}))


# The rule ---------------------------------------------------------------------------------------

def test_a_model_that_cannot_score_fails_the_gate_with_its_value_and_limit():
    verdict, f = rules.evaluate(G, updated=health(10.0, 14400), baseline=health(40.0, 0),
                                stores=2, failures=0)
    assert verdict == "fail" and f["gate"] == "scoring_errors"
    sc = f["scoring_errors"]
    assert sc["rate_updated"] == 1440.0 and sc["limit"] == G.max_scoring_errors_per_device_day
    assert sc["rate_baseline"] == 0.0 and sc["reasons"] == {"non_finite": 14400}


def test_it_is_decided_before_the_device_days_so_a_short_pilot_is_stopped_too():
    # 0.1 device-days on each side: too few for the alert gate (inconclusive), not for this one.
    verdict, f = rules.evaluate(G, updated=health(0.1, 144), baseline=health(0.1, 0), stores=1,
                                failures=0)
    assert (verdict, f["gate"]) == ("fail", "scoring_errors")
    verdict, f = rules.evaluate(G, updated=health(0.1, 0), baseline=health(0.1, 0), stores=1,
                                failures=0)
    assert (verdict, f["gate"]) == ("inconclusive", "device_days")
    assert f["scoring_errors"]["failed"] is False


@pytest.mark.parametrize("updated,baseline,why", [  # the last one: inconclusive by its days
    (health(10.0, 40), health(10.0, 0), "4 per device-day: under the absolute limit of 5"),
    (health(1.0, 19), health(10.0, 0), "19 per device-day but 19 errors: under the excess of 20"),
    (health(10.0, 600), health(10.0, 400), "60 against 40 per device-day: not twice as many"),
    (health(10.0, 600), health(0.0, 3), "the not-updated stores fail without any device-day"),
])
def test_a_few_errors_or_as_many_as_the_stores_not_updated_do_not_fail_it(updated, baseline,
                                                                           why):
    verdict, f = rules.evaluate(G, updated=updated, baseline=baseline, stores=2, failures=0)
    assert verdict != "fail" and f["scoring_errors"]["failed"] is False, why


def test_the_gate_s_limits_are_the_rollout_s_own_and_apply_failures_still_come_first():
    strict = rules.Gates(max_scoring_errors_per_device_day=0.0, min_excess_scoring_errors=1)
    verdict, f = rules.evaluate(strict, updated=health(10.0, 2), baseline=health(10.0, 0),
                                stores=2, failures=0)
    assert (verdict, f["gate"]) == ("fail", "scoring_errors")
    verdict, f = rules.evaluate(G, updated=health(10.0, 14400), baseline=health(10.0, 0),
                                stores=2, failures=1)
    assert f["gate"] == "apply_failures"


# The fleet's count, from the events ingest stored ----------------------------------------------

def commit(db, envs, at):
    items = []
    for e in envs:
        raw = wire.encode(e)
        items.append(Item(0, 1, "t", wire.decode(raw), None, at, raw))
    return commit_batch(db, items)


def event(store, t, errors, total, seq, model="m2"):
    e = envelope("event", {"event": "scoring_errors", "errors": errors, "total": total,
                           "model": model}, store=store, seq=seq)
    e["ts"] = format_ts(datetime.fromtimestamp(t, timezone.utc))
    return e


@pytest.fixture
def db(hub_db):
    store = open_store(hub_db)
    yield store
    store.close()


def test_the_fleet_counts_what_each_store_added_in_the_window(db):
    t0 = time.time() - 3600.0
    since, until = t0 + 100, t0 + 1000
    envs = [
        # s1: its start event before the window (5 errors of an older model), then 3 and 4
        # in the window, then an event made after the window.
        event("s1", t0, {}, {"non_finite": 5}, 1),
        event("s1", t0 + 200, {"non_finite": 3}, {"non_finite": 8}, 2),
        event("s1", t0 + 300, {"non_finite": 4, "worker_timeout": 1},
              {"non_finite": 12, "worker_timeout": 1}, 3),
        event("s1", t0 + 2000, {"non_finite": 50}, {"non_finite": 62, "worker_timeout": 1}, 4),
        # s2: the event between these two was lost (dropped by a full outbox): its 7 errors
        # still count, through the next one's total.
        event("s2", t0 + 50, {}, {}, 1),
        event("s2", t0 + 400, {"inference_error": 2}, {"inference_error": 9}, 3),
        # s3: its state database was made again: its total starts over, its errors count.
        event("s3", t0 + 10, {}, {"no_model": 100}, 1),
        event("s3", t0 + 500, {"no_model": 6}, {"no_model": 6}, 2),
        # s4: an old agent sends none (nothing to count); s5: errors only outside the window.
        event("s5", t0 + 5, {"non_finite": 9}, {"non_finite": 9}, 1),
    ]
    commit(db, envs, at=time.time())
    commit(db, envs[:3], at=time.time())  # a redelivery: each message is stored once
    with db.read() as tx:
        assert fleet.scoring_errors(tx, ["s1"], since, until) == (
            8, {"non_finite": 7, "worker_timeout": 1})
        assert fleet.scoring_errors(tx, ["s2"], since, until) == (9, {"inference_error": 9})
        assert fleet.scoring_errors(tx, ["s3"], since, until) == (6, {"no_model": 6})
        assert fleet.scoring_errors(tx, ["s4", "s5"], since, until) == (0, {})
        assert fleet.scoring_errors(tx, ["s1", "s2", "s3", "s4"], since, until)[0] == 23
        h = fleet_health(tx, ["s1", "s2"], since, until, {})
    assert (h.scoring_errors, h.scoring_reasons["inference_error"]) == (17, 9)


def test_a_scoring_errors_event_from_the_future_counts_when_it_arrived(db):
    now = time.time()
    commit(db, [event("s1", now - 600, {}, {}, 1),
                event("s1", now + 120, {"non_finite": 4}, {"non_finite": 4}, 2)], at=now)
    with db.read() as tx:  # clamped to its arrival, as the fleet's other guards are
        assert fleet.scoring_errors(tx, ["s1"], now - 1, now)[0] == 4


# A rollout --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    return KeyRing.init(tmp_path_factory.mktemp("ring") / "keys")


class Fleet:
    """Injected health: the stores running `bad` cannot score (one error a device a minute);
    the alert rates are the same everywhere."""

    def __init__(self, bad_sha):
        self.bad = bad_sha

    def __call__(self, tx, stores, since, until, sessions):
        days = 10 * len(stores) * (until - since) / 86400
        bad = sum(1 for s in stores if rules.desired_sha(tx, s, "model") == self.bad)
        errors = round(1440 * 10 * bad * (until - since) / 86400)
        return rules.Health(days, round(0.5 * days), 0, errors,
                            {"worker_crash": errors} if errors else {})


def test_a_model_whose_scoring_fails_is_stopped_at_the_pilot_and_rolled_back(db, ring):
    clock = Clock()
    v1 = baseline(db, ring, clock)
    v2 = bundle(db, ring, clock, b"model-two-cannot-score")
    with db.transaction() as tx:
        r = rules.start(tx, clock, ANN, ring, bundle=v2["sha256"], stages=STAGES,
                        stores=STORES, soak_s=8640.0)
    clock.t += 8640  # 0.1 day: 2 device-days on the pilot
    with db.transaction() as tx:
        seen = rules.tick(tx, clock, ring, Fleet(v2["sha256"]), STORES, {})
        st = rules.status(tx, r["id"])
        actions = [e["action"] for e in audit.entries(tx)]
    assert seen == [(r["id"], "aborted")]
    assert st["state"] == "aborted" and st["reason"].startswith(
        "gate scoring_errors failed at stage pilot: 1440.0 scoring errors per device-day on "
        "the updated stores (limit 5; not updated 0.0; ")
    assert "worker_crash" in st["reason"]
    g = st["last_gate"]
    assert g["verdict"] == "fail" and g["apply_failures"] == 0
    assert g["scoring_errors"]["rate_updated"] == 1440.0 and g["scoring_errors"]["limit"] == 5.0
    assert not any(s["failed"] for s in st["stores"])  # not an apply failure
    assert desired_model(db, "p1") == (v1["sha256"], True)  # rolled back, signed, by itself
    assert desired_model(db, "p2") == (v1["sha256"], True)
    assert desired_model(db, "n1") == (v1["sha256"], False)  # never touched
    assert "rollouts.abort" in actions
    # What a person reads in `edge-hub rollout status ID` (the table form of the same status).
    from hub.cli.control import rollout_text

    text = rollout_text(st)
    assert "scoring errors: " in text and "1440.0 per device-day, limit 5.0" in text


def test_a_rollout_started_before_the_gate_existed_ticks_with_its_defaults(db, ring):
    clock = Clock()
    baseline(db, ring, clock)
    v2 = bundle(db, ring, clock, b"model-two-old-row")
    with db.transaction() as tx:
        r = rules.start(tx, clock, ANN, ring, bundle=v2["sha256"], stages=STAGES,
                        stores=STORES, soak_s=3600.0)
        old = {k: v for k, v in json.loads(json.dumps(rules.asdict(rules.Gates()))).items()
               if "scoring" not in k}
        tx.execute("UPDATE rollouts SET gates = ? WHERE id = ?", (json.dumps(old), r["id"]))
    clock.t += 3601
    with db.transaction() as tx:
        assert rules.tick(tx, clock, ring, Fleet(v2["sha256"]), STORES, {}) == [
            (r["id"], "aborted")]
        assert "scoring_errors" in rules.status(tx, r["id"])["reason"]
