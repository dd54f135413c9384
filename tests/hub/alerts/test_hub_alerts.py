"""The regional alert feed: each transition republished once, flapping held back, no resends."""

from __future__ import annotations

import edge_protocol as wire
from hubkit import HubProcess, Publisher, Subscriber, alert_body, envelope, now_ts
from wait import wait_until


def feed_of(sub: Subscriber, alert: str) -> list[dict]:
    return [b for b in sub.bodies() if b["alert"] == alert]


def test_a_raised_and_cleared_alert_reaches_the_regional_feed_once_each_even_when_replayed(
        mosquitto, hub_db, tmp_path):
    log = tmp_path / "hub.log"
    hub = HubProcess(mosquitto, hub_db, "hub-feed", log_path=log).start()
    hub.wait_connected()
    feed = Subscriber(mosquitto, wire.alert_feed_topic("r1", "+"))
    pub = Publisher(mosquitto)
    since = now_ts()
    raised = envelope("alert", alert_body("raised", since=since), seq=1)
    cleared = envelope("alert", alert_body("cleared", since=since), seq=2)
    for env in (raised, raised, cleared):  # the broker redelivers; the store replays
        pub.send(env)
    # The agent restarted and raised the same alert again under a new id.
    pub.send(envelope("alert", alert_body("raised", since=since), seq=3))
    wait_until(lambda: len(feed_of(feed, "p1:paper_out")) >= 2, what="raise and clear on the feed")

    # The hub restarts: nothing it already sent is sent again. A marker alert proves the
    # restarted hub routed everything pending before we look.
    assert hub.terminate() == 0
    hub = HubProcess(mosquitto, hub_db, "hub-feed", log_path=log).start()
    pub.send(envelope("alert", alert_body("raised", device="p2"), seq=4))
    wait_until(lambda: feed_of(feed, "p2:paper_out"), what="the marker alert")
    assert hub.terminate() == 0
    pub.close()
    feed.close()

    sent = feed_of(feed, "p1:paper_out")
    assert [b["state"] for b in sent] == ["raised", "cleared"]
    first = sent[0]
    assert feed.messages[0][0] == "edge/v1/alerts/r1/s1"
    assert (first["store"], first["device"], first["what"], first["since"]) == \
        ("s1", "p1", "paper_out", since)
    assert first["explanation"] == ["printer.paper = out on p1"]
    assert len({b["id"] for b in feed.bodies()}) == len(feed.bodies())


def test_a_flapping_alert_is_held_back_until_stable_then_sent_once_in_its_latest_state(
        mosquitto, hub_db, tmp_path):
    # --flap-stable 5: the burst below is sent at once, so the hub sees the alert steady only
    # after it; a machine loaded enough to stall the burst itself for 5 s is allowed for below.
    hub = HubProcess(mosquitto, hub_db, "hub-flap", "--flap-max", "3", "--flap-window", "600",
                     "--flap-stable", "5", log_path=tmp_path / "hub.log").start()
    hub.wait_connected()
    feed = Subscriber(mosquitto, wire.alert_feed_topic("r1", "s1"))
    pub = Publisher(mosquitto)
    states = ["raised", "cleared"] * 3 + ["raised"]
    for seq, state in enumerate(states, start=1):
        # Each raise is a new instance (its own since); each clear closes the one before.
        since = now_ts(-100 + (seq + 1) // 2)
        pub.send(envelope("alert", alert_body(state, device="p9", since=since,
                                              ts=now_ts(-100 + seq)), seq=seq))
    wait_until(lambda: any(b["flapping"] for b in feed_of(feed, "p9:paper_out")),
               what="the held alert once stable")
    pub.send(envelope("alert", alert_body("raised", device="p2"), seq=len(states) + 1))
    wait_until(lambda: feed_of(feed, "p2:paper_out"), what="a later, steady alert")
    assert hub.terminate() == 0
    pub.close()
    feed.close()
    # Wherever ingest's batch boundaries fell (tests/hub/alerts/test_feed_splits.py tries
    # every split, on a clock of its own): the transitions committed before the alert crossed
    # --flap-max went out as they were, the rest was collapsed into its latest state, sent with
    # `flapping`. Held back: fewer messages than transitions, the last one the latest state.
    sent = feed_of(feed, "p9:paper_out")
    plain = [b for b in sent if not b["flapping"]]
    flapping = [b for b in sent if b["flapping"]]
    assert len(plain) <= 3 and sent[:len(plain)] == plain  # the plain ones first, in order
    assert all(a["state"] != b["state"] for a, b in zip(plain, plain[1:]))
    assert sent[-1]["state"] == "raised"
    assert sent[-1]["flapping"] == {"transitions": len(states), "window_s": 600}
    # Normally one collapsed message. A second one only if the hub saw the alert steady for
    # --flap-stable seconds in the middle of the burst (a stall of the machine): then it was
    # steady, and what went out then counted fewer transitions than the last.
    assert [b["flapping"]["transitions"] for b in flapping] == \
        sorted({b["flapping"]["transitions"] for b in flapping})
    assert len(sent) < len(states)
