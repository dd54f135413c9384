"""The regional feed carries failed, predicted_failure and escalated attention only (issue 10)."""

from __future__ import annotations

import edge_protocol as wire
from hubkit import HubProcess, Publisher, Subscriber, alert_body, envelope
from wait import wait_until


def test_store_attention_stays_off_the_regional_feed_and_failures_and_escalations_reach_it(
        mosquitto, hub_db, tmp_path):
    hub = HubProcess(mosquitto, hub_db, "hub-regional", log_path=tmp_path / "hub.log").start()
    hub.wait_connected()
    feed = Subscriber(mosquitto, wire.alert_feed_topic("r1", "+"))
    pub = Publisher(mosquitto)
    roll = [dict(alert_body(state, what=what), family="attention", audience="store",
                 severity="warning")
            for what, state in (("paper_near_end", "raised"), ("paper_near_end", "cleared"),
                                ("paper_out", "raised"), ("cover_open", "raised"),
                                ("cover_open", "cleared"), ("paper_out", "cleared"))]
    escalated = dict(alert_body("raised", what="paper_out", device="p2"), family="attention",
                     audience="region", escalated=True, escalated_after_s=900)
    escalated["alert"] = "p2:paper_out:escalated"
    failed = dict(alert_body("raised", what="failed", device="p3"), family="failed",
                  audience="region", supersedes={"alert": "p3:predicted_failure",
                                                 "since": "2026-01-01T00:00:00Z",
                                                 "lead_s": 7200.0})
    for seq, body in enumerate(roll + [escalated, failed], 1):
        pub.send(envelope("alert", body, seq=seq))
    wait_until(lambda: len(feed.bodies()) >= 2, what="the escalation and the failure")
    assert hub.terminate() == 0
    pub.close()
    feed.close()
    sent = feed.bodies()
    assert sorted(b["alert"] for b in sent) == ["p2:paper_out:escalated", "p3:failed"]
    by = {b["alert"]: b for b in sent}
    assert by["p3:failed"]["supersedes"]["lead_s"] == 7200.0
    assert by["p2:paper_out:escalated"]["escalated"] is True
