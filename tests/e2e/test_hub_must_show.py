"""Issue 15's "Must show": a random mix of valid and hostile messages (hypothesis) from several
stores, published to a real Mosquitto and ingested by a real `edge-hub serve` on SQLite and on
PostgreSQL. Every valid message is stored exactly once; every hostile one is rejected (counted
by reason) or quarantined; the hub stays alive throughout.

No verdict depends on timing: each example waits (bounded) until the hub has accounted for
every message it was sent (stored + rejected + quarantined == sent, read from the database),
then checks where each one went.
"""

from __future__ import annotations

import itertools
import json

from hypothesis import HealthCheck, given, settings, strategies as st

import edge_protocol as wire
from hub.app import open_store
from hubkit import (HubProcess, Publisher, alert_body, birth_body, decision_body, envelope,
                    reading, telemetry)
from poisondb import poison_devices
from wait import wait_until

STORES = ("mx-a", "mx-b", "mx-c")
SESSION0 = 10
SEQ = itertools.count(1)
SESSIONS = itertools.count(SESSION0 + 1)


def _env(kind: str, body: dict, store: str, **changes) -> dict:
    env = envelope(kind, body, store=store, seq=next(SEQ))
    env.update(changes)
    return env


def valid(kind: str, store: str) -> dict:
    if kind == "telemetry":
        return _env(kind, telemetry(2, device=f"p{next(SEQ) % 5}"), store)
    if kind == "decision":
        return _env(kind, decision_body(f"p{next(SEQ) % 5}"), store)
    if kind == "alert":
        return _env(kind, alert_body(device=f"p{next(SEQ) % 5}"), store)
    if kind == "event":
        return _env(kind, {"event": "outbox_drops", "dropped": 3}, store)
    return _env("birth", birth_body(next(SESSIONS)), store, seq=0)


def _reading(**changes) -> dict:
    r = reading("d")
    r.update(changes)
    return r


# name -> (build(store) -> (topic, payload), where it must end: "rejected" or "quarantined")
HOSTILE = {
    "not JSON": lambda s: (wire.topic("r1", s, "telemetry"), b"{nope"),
    "v true": lambda s: _raw(_env("telemetry", telemetry(1), s, v=True)),
    "a ts that is not a time": lambda s: _raw(_env("decision", dict(decision_body(),
                                                                     ts="not-a-time"), s)),
    "stamped 2099": lambda s: _raw(_env("telemetry", {"readings": [_reading(
        ts="2099-01-01T00:00:00.000Z")]}, s)),
    "NUL in a device id": lambda s: _raw(_env("telemetry", {"readings": [_reading(
        device="d\u0000x")]}, s)),
    "ESC in a reason": lambda s: _raw(_env("telemetry", {"readings": [_reading(
        stale=True, reason="x\x1b[2J")]}, s)),
    "score 2^64-1": lambda s: _raw(_env("decision", dict(decision_body(),
                                                         score=18446744073709551615), s)),
    "seq 2^63-1": lambda s: _raw(_env("telemetry", telemetry(1), s, seq=2**63 - 1)),
    "session 2^63-1": lambda s: _raw(_env("birth", birth_body(2**63 - 1), s, seq=0)),
    "a session leaping 2^21": lambda s: _raw(_env("birth", birth_body(SESSION0 + 2**21), s,
                                                  seq=0)),
    "a seq leaping 2^33": lambda s: _raw(_env("telemetry", telemetry(1), s, seq=2**33)),
    "another store's topic": lambda s: (wire.topic("r1", "mx-other", "telemetry"),
                                        wire.encode(_env("telemetry", telemetry(1), s))),
    "breaks the commit": lambda s: _raw(_env("telemetry", {"readings": [_reading(
        device="boom")]}, s)),
}
QUARANTINED = {"breaks the commit", "a session leaping 2^21", "a seq leaping 2^33"}


def _raw(env: dict) -> tuple[str, bytes]:
    return wire.topic(env["region"], env["store"], env["kind"]), json.dumps(env).encode()


messages = st.lists(
    st.one_of(
        st.tuples(st.just("valid"), st.sampled_from(("telemetry", "decision", "alert", "event",
                                                     "birth")), st.sampled_from(STORES)),
        st.tuples(st.just("hostile"), st.sampled_from(sorted(HOSTILE)),
                  st.sampled_from(STORES))),
    min_size=1, max_size=20)


def tally(url: str) -> tuple[int, int, int]:
    db = open_store(url, create=False)
    try:
        with db.read() as tx:
            tx.execute("SELECT COUNT(*) FROM messages")
            stored = tx.fetchone()[0]
            tx.execute("SELECT COALESCE(SUM(count), 0) FROM rejects")
            rejected = tx.fetchone()[0]
            tx.execute("SELECT COUNT(*) FROM quarantine")
            quarantined = tx.fetchone()[0]
        return int(stored), int(rejected), int(quarantined)
    finally:
        db.close()


def stored_ids(url: str, ids: list[str]) -> dict[str, int]:
    db = open_store(url, create=False)
    try:
        with db.read() as tx:
            tx.execute("SELECT id, COUNT(*) FROM messages GROUP BY id")
            return {i: n for i, n in tx.fetchall() if i in set(ids)}
    finally:
        db.close()


def test_a_random_mix_of_valid_and_hostile_messages_from_several_stores(
        mosquitto, hub_db, tmp_path):
    poison_devices(hub_db)
    hub = HubProcess(mosquitto, hub_db, "hub-mix", log_path=tmp_path / "hub.log").start()
    pub = Publisher(mosquitto)
    try:
        hub.wait_connected()
        # Each store is born and sends once first, so a session or seq leap has something to
        # leap from whatever order the mix arrives in.
        pub.send_many([envelope("birth", birth_body(SESSION0), store=s, seq=0) for s in STORES]
                      + [envelope("telemetry", telemetry(1), store=s, seq=next(SEQ))
                         for s in STORES])
        wait_until(lambda: tally(hub_db)[0] == 2 * len(STORES), what="the stores' first messages")

        @settings(max_examples=25, deadline=None, derandomize=False,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow])
        @given(messages)
        def mix(plan):
            before = tally(hub_db)
            good, sent = [], []
            for what, name, store in plan:
                if what == "valid":
                    env = valid(name, store)
                    good.append(env["id"])
                    sent.append((wire.topic("r1", store, env["kind"]), wire.encode(env)))
                else:
                    sent.append(HOSTILE[name](store))
            pub.publish_all(sent)
            after = wait_until(lambda: (t := tally(hub_db)) and sum(t) - sum(before) == len(sent)
                               and t, timeout=60,
                               what=f"the hub to account for {len(sent)} messages")
            hostile = [name for what, name, _ in plan if what == "hostile"]
            assert after[0] - before[0] == len(good)
            assert after[2] - before[2] == sum(n in QUARANTINED for n in hostile)
            assert after[1] - before[1] == sum(n not in QUARANTINED for n in hostile)
            assert stored_ids(hub_db, good) == {i: 1 for i in good}
            assert hub.proc.poll() is None, hub.log()[-2000:]

        mix()
        assert hub.terminate() == 0
    finally:
        pub.close()
        hub.kill()
