"""The hub against a real Mosquitto: shared workers, restarts, hostile messages, hub state."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

import edge_protocol as wire
from hub.domains import alerts as alert_domain, fleet
from hub.app import open_store
from hubkit import HubProcess, Publisher, Subscriber, birth_body, envelope, telemetry
from wait import wait_until


def stream(stores: int, per_store: int, start_seq: int = 1) -> list[dict]:
    """Interleaved telemetry from several stores, each in seq order."""
    return [envelope("telemetry", telemetry(1), store=f"s{s}", seq=start_seq + i)
            for i in range(per_store) for s in range(stores)]


def count(db_url: str) -> int:
    db = open_store(db_url)
    try:
        return fleet.message_count(db)
    finally:
        db.close()


def every_store_complete(db_url: str, per_store: int) -> list[dict]:
    db = open_store(db_url)
    try:
        return [s["seq"] for s in fleet.stores(db)]
    finally:
        db.close()


def test_two_workers_on_one_shared_subscription_split_the_stream_without_loss_or_duplicates(
        mosquitto, hub_db, tmp_path):
    hubs = [HubProcess(mosquitto, hub_db, f"hub-w{i}", log_path=tmp_path / f"w{i}.log").start()
            for i in (1, 2)]
    for h in hubs:
        h.wait_connected()
    pub = Publisher(mosquitto)
    envs = stream(stores=4, per_store=500)
    pub.send_many(envs)
    pub.send_many(envs[:300])  # redelivered by a store: must not be stored twice
    pub.close()
    wait_until(lambda: count(hub_db) >= len(envs), what="every message stored")
    for h in hubs:
        assert h.terminate() == 0
    stored = [h.stats()["stored"] for h in hubs]
    assert sum(stored) == len(envs) == count(hub_db)
    # Not timing: both workers said READY (subscribed) before the first message, and the
    # broker hands a shared subscription's messages to its members in turn.
    assert all(n > 0 for n in stored), f"one worker got nothing: {stored}"
    assert every_store_complete(hub_db, 500) == \
        [{"first": 1, "last": 500, "received": 500, "missing": 0}] * 4


def test_a_hub_killed_mid_stream_and_restarted_loses_nothing_and_duplicates_nothing(
        mosquitto, hub_db, tmp_path):
    log = tmp_path / "hub.log"
    hub = HubProcess(mosquitto, hub_db, "hub-restart", log_path=log).start()
    hub.wait_connected()
    envs = stream(stores=2, per_store=3000)
    pub = Publisher(mosquitto)
    killed = threading.Event()

    def send() -> None:
        # The last quarter waits for the kill, so the kill lands mid-stream however fast the
        # hub ingests; the sender keeps publishing up to the kill, so messages are in flight.
        pub.send_many(envs[:4500])
        killed.wait(60)
        pub.send_many(envs[4500:])

    sender = threading.Thread(target=send)
    sender.start()
    wait_until(lambda: count(hub_db) > 500, what="ingest under way")
    hub.kill()
    at_kill = count(hub_db)
    killed.set()
    sender.join()
    pub.close()
    assert 0 < at_kill <= 4500 < len(envs)
    hub = HubProcess(mosquitto, hub_db, "hub-restart", log_path=log).start()
    wait_until(lambda: count(hub_db) >= len(envs), what="the rest after the restart")
    assert hub.terminate() == 0
    assert count(hub_db) == len(envs)
    assert every_store_complete(hub_db, 3000) == \
        [{"first": 1, "last": 3000, "received": 3000, "missing": 0}] * 2


HOSTILE = {
    "a payload that is not JSON": (b"\x00\xffnot json", "edge/v1/r1/s1/telemetry", "not_json"),
    "an envelope of an unknown version": (
        None, "edge/v1/r1/s1/telemetry", "unknown_version"),
    "a payload over the size limit": (
        b"{" + b" " * (wire.MAX_PAYLOAD + 10) + b"}", "edge/v1/r1/s1/telemetry", "oversized"),
    "a store publishing under another store's topic": (
        None, "edge/v1/r1/victim/telemetry", "topic_mismatch"),
    "an alert without its state": (None, "edge/v1/r1/s1/alert", "bad_body"),
    # json.loads took these three: UTF-16 (then the store could not write it as text), a lone
    # surrogate (not encodable in UTF-8), and nesting deep enough to raise RecursionError.
    "JSON in UTF-16": (None, "edge/v1/r1/s1/telemetry", "not_json"),
    "a lone surrogate escape in a device name": (None, "edge/v1/r1/s1/telemetry", "not_json"),
    "JSON nested 100,000 deep": (b"[" * 100_000 + b"]" * 100_000, "edge/v1/r1/s1/telemetry",
                                 "not_json"),
}


def hostile_payload(case: str) -> bytes:
    payload, topic, _ = HOSTILE[case]
    if payload is not None:
        return payload
    if "version" in case:
        return wire.encode(dict(envelope("telemetry", telemetry()), v=99))
    if "another store" in case:
        return wire.encode(envelope("telemetry", telemetry(), store="s1"))
    if "UTF-16" in case:
        return wire.encode(envelope("telemetry", telemetry(), store="s1")).decode().encode(
            "utf-16")
    if "surrogate" in case:
        return wire.encode(envelope("telemetry", telemetry(device="p9"), store="s1")).replace(
            b'"p9"', b'"p\\ud800"')
    env = envelope("alert", {"alert": "p1:x", "device": "p1", "what": "x"})
    return wire.encode(env)


def test_malformed_and_hostile_messages_are_rejected_and_counted_while_ingest_goes_on(
        mosquitto, hub_db, tmp_path):
    hub = HubProcess(mosquitto, hub_db, "hub-hostile", log_path=tmp_path / "hub.log").start()
    hub.wait_connected()
    pub = Publisher(mosquitto)
    good = stream(stores=1, per_store=8 * len(HOSTILE))
    for i, env in enumerate(good):
        pub.send(env)
        if i % 8 == 0:
            case = list(HOSTILE)[i // 8]
            pub.send(hostile_payload(case), topic=HOSTILE[case][1])
    pub.close()

    def rejects():
        db = open_store(hub_db)
        try:
            return sum(fleet.rejects(db).values()) >= len(HOSTILE) and fleet.rejects(db)
        finally:
            db.close()

    counted = wait_until(rejects, what="every hostile message counted")
    wait_until(lambda: count(hub_db) >= len(good), what="the good messages stored")
    assert hub.terminate() == 0
    assert counted == dict(Counter(code for _, _, code in HOSTILE.values()))
    assert count(hub_db) == len(good)
    assert hub.stats()["rejects"] == counted
    db = open_store(hub_db)
    assert [s["store"] for s in fleet.stores(db)] == ["s0"]  # neither victim nor s1 appear
    db.close()


def test_the_hub_says_online_retained_and_offline_when_stopped_or_killed(mosquitto, tmp_path):
    db = str(tmp_path / "hub.db")
    hub = HubProcess(mosquitto, db, "hub-state", log_path=tmp_path / "hub.log").start()
    hub.wait_connected()
    state = Subscriber(mosquitto, wire.hub_state_topic())
    wait_until(lambda: any(b["online"] for b in state.bodies()), what="online state")
    assert hub.terminate() == 0
    wait_until(lambda: state.bodies()[-1]["online"] is False, what="offline on SIGTERM")
    hub = HubProcess(mosquitto, db, "hub-state", "--keepalive", "2",
                     log_path=tmp_path / "hub.log").start()
    wait_until(lambda: state.bodies()[-1]["online"] is True, what="online again")
    hub.kill()
    wait_until(lambda: state.bodies()[-1]["online"] is False, what="the Will after SIGKILL")
    state.close()
    late = Subscriber(mosquitto, wire.hub_state_topic())
    wait_until(lambda: late.bodies(), what="the retained state for a late subscriber")
    assert late.messages[0][2] is True and late.bodies()[0]["online"] is False
    late.close()


def test_birth_and_death_through_the_broker_set_the_store_online_then_offline(
        mosquitto, hub_db, tmp_path):
    hub = HubProcess(mosquitto, hub_db, "hub-life", log_path=tmp_path / "hub.log").start()
    hub.wait_connected()
    pub = Publisher(mosquitto)

    def online():
        db = open_store(hub_db)
        try:
            s = fleet.stores(db)
            return s[0]["online"] if s else None
        finally:
            db.close()

    pub.send(envelope("birth", birth_body(7), seq=0))
    wait_until(lambda: online() is True, what="online after birth")
    pub.send(envelope("death", {"session": 6}, seq=0))  # an older session's Will, late
    pub.send(envelope("death", {"session": 7}, seq=0))
    wait_until(lambda: online() is False, what="offline after the current session's death")
    pub.close()
    assert hub.terminate() == 0
    assert json.loads(hub.log().splitlines()[-1])["stored"] == 3


def test_a_worker_whose_writer_fails_on_a_bug_exits_1_and_loses_nothing(mosquitto, tmp_path,
                                                                          monkeypatch):
    from hub.ingest import Ingest, Settings
    from hub.app import Hub, serve

    db_path = str(tmp_path / "hub.db")
    settings = Settings(host=mosquitto.host, port=mosquitto.port, client_id="hub-bug")
    Hub(open_store(db_path), settings).start().stop()  # the persistent session exists
    pub = Publisher(mosquitto)
    sent = envelope("telemetry", telemetry())
    pub.send(sent)
    pub.close()

    def bug(self, batch):
        raise KeyError("a bug in the writer")

    monkeypatch.setattr(Ingest, "commit", bug)
    assert serve(open_store(db_path), settings, stats_every=3600) == 1
    monkeypatch.undo()
    assert count(db_path) == 0
    db = open_store(db_path)
    hub = Hub(db, settings).start()  # the restarted worker gets the unacknowledged message
    try:
        wait_until(lambda: hub.ingest.counts["stored"] == 1, what="the message redelivered")
    finally:
        hub.stop()
        db.close()
    assert count(db_path) == 1


def test_the_hub_answers_births_with_its_state_live(mosquitto, tmp_path):
    import paho.mqtt.client as mqtt

    from hub.ingest import Settings
    from hub.app import Hub

    db = open_store(str(tmp_path / "hub.db"))
    hub = Hub(db, Settings(host=mosquitto.host, port=mosquitto.port,
                           client_id="hub-births")).start()
    seen: list[tuple[float, bool]] = []
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="state-watch",
                          protocol=mqtt.MQTTv5)
    watcher.on_message = lambda c, u, m: seen.append((m.topic, bool(m.retain)))
    watcher.connect(mosquitto.host, mosquitto.port, 30)
    watcher.subscribe(wire.hub_state_topic(), qos=1)
    watcher.loop_start()
    try:
        wait_until(lambda: seen, what="the hub's state")
        before = len(seen)
        pub = Publisher(mosquitto)
        for i in range(30):  # thirty stores connecting at once
            pub.send(envelope("birth", birth_body(1), store=f"b{i}"))
        pub.close()
        wait_until(lambda: len(seen) > before, what="the hub's state, live, after the births")
        answers = seen[before:]
        assert all(not retained for _, retained in answers), "delivered live, not retained"
        # How often it answers (at most once a second) is checked on a clock of the test's own
        # below; how fast is bench/ material.
    finally:
        watcher.disconnect()
        watcher.loop_stop()
        hub.stop()
        db.close()


class _Timer:
    """threading.Timer on the test's clock: it fires when the test says."""

    pending: list["_Timer"] = []
    clock: list[float] = [0.0]

    def __init__(self, delay: float, fn):
        self.at, self.fn, self.daemon, self.cancelled = _Timer.clock[0] + delay, fn, True, False

    def start(self) -> None:
        _Timer.pending.append(self)

    def cancel(self) -> None:
        self.cancelled = True


def test_births_get_the_hub_state_at_most_once_a_second_and_each_within_a_second(
        monkeypatch, tmp_path):
    """The throttle of Hub._birth_seen on a clock of the test's: thirty births in bursts get
    answers at least STATE_EVERY_S apart, and none waits longer than that for one."""
    import threading as real_threading
    from types import SimpleNamespace

    from hub import app
    from hub.ingest import Settings

    clock = [1000.0]
    monkeypatch.setattr(app, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(app, "threading", SimpleNamespace(Timer=_Timer,
                                                          Lock=real_threading.Lock,
                                                          Event=real_threading.Event))
    _Timer.pending, _Timer.clock = [], clock
    hub = app.Hub(open_store(str(tmp_path / "hub.db")), Settings(host="127.0.0.1", port=1, client_id="h"))
    said: list[float] = []
    monkeypatch.setattr(hub.ingest.client, "publish",
                        lambda topic, payload, qos, retain: said.append(clock[0]))

    def advance(to: float) -> None:
        while _Timer.pending and min(t.at for t in _Timer.pending) <= to:
            timer = min(_Timer.pending, key=lambda t: t.at)
            _Timer.pending.remove(timer)
            clock[0] = timer.at
            if not timer.cancelled:
                timer.fn()
        clock[0] = to

    hub._ready(hub.ingest)  # online, as once every lane is subscribed
    births = [1000.1, 1000.2, 1000.2, 1000.9, 1001.5, 1003.0, 1003.05, 1007.0] + \
        [1010 + i / 10 for i in range(22)]
    for at in births:
        advance(at)
        hub._birth_seen()
    advance(1100.0)
    assert said[0] == 1000.0
    gaps = [b - a for a, b in zip(said, said[1:])]
    assert min(gaps) >= 1.0 - 1e-9, said  # docs/protocol.md: at most once a second
    for at in births:
        assert any(at <= t <= at + 1.0 + 1e-9 for t in said), (at, said)
    assert len(said) < len(births)
