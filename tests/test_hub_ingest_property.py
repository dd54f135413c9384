"""Any bytes on any store topic are stored or rejected with a reason: ingest never crashes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings, strategies as st

from edge_agent import wire
from hub import fleet
from hub.ingest import Ingest, Settings
from hub.store import open_store
from hubkit import envelope, telemetry

TOPICS = st.sampled_from(["edge/v1/r1/s1/telemetry", "edge/v1/r1/s1/alert",
                          "edge/v1/r1/s2/birth", "edge/v1/r1/s1/selfie", "edge/v1/r1/s1/cmd"])
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3) |
                       st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)


def payloads():
    valid = st.just(None).map(lambda _: wire.encode(envelope("telemetry", telemetry(1))))
    mutated = st.builds(lambda extra: wire.encode({**envelope("alert", {}), **extra}),
                        st.dictionaries(st.sampled_from(["v", "id", "seq", "store", "kind",
                                                         "body", "ts"]), JSONISH, max_size=3))
    return st.one_of(st.binary(max_size=300), valid, mutated,
                     JSONISH.map(lambda v: wire.encode(v) if v is not None else b"null"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(TOPICS, payloads()), min_size=1, max_size=20))
def test_every_message_is_either_stored_rejected_or_ignored(messages):
    with tempfile.TemporaryDirectory() as tmp:
        db = open_store(str(Path(tmp) / "hub.db"))
        ingest = Ingest(db, Settings(priority_lane=False))
        for mid, (topic, payload) in enumerate(messages, start=1):
            msg = SimpleNamespace(mid=mid, qos=1, topic=topic, payload=payload)
            ingest._on_message(None, {"priority": False}, msg)
        items = ingest.queue.take(1000, 0, 1 << 30)
        assert len(items) == len(messages)
        ingest.commit(items)
        stored = fleet.message_count(db)
        rejected = sum(fleet.rejects(db).values())
        ignored = ingest.counts["ignored"]
        assert stored + rejected + ignored + ingest.counts["duplicates"] == len(messages)
        db.close()
