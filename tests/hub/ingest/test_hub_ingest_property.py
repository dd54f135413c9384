"""Any bytes on any store topic are stored or rejected with a reason: ingest never crashes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings, strategies as st

import edge_protocol as wire
from hub.domains import alerts as alert_domain, fleet
from hub.ingest import Ingest, Settings
from hub.app import open_store
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
            msg = SimpleNamespace(mid=mid, qos=1, topic=topic, payload=payload, retain=False)
            ingest._on_message(None, {"priority": False}, msg)
        items = ingest.queue.take(1000, 0, 1 << 30)
        assert len(items) == len(messages)
        ingest.commit(items)
        stored = fleet.message_count(db)
        rejected = sum(fleet.rejects(db).values())
        ignored = ingest.counts["ignored"]
        assert stored + rejected + ignored + ingest.counts["duplicates"] == len(messages)
        db.close()


def test_an_urgent_item_is_taken_at_once_as_a_batch_of_its_own():
    import threading

    from hub.ingest import Handoff, Item

    queue = Handoff(100)
    stop = threading.Event()
    for i in range(5):
        queue.put(Item(i, 1, "t", None, None, 0.0), stop)
    queue.put(Item(90, 1, "t", None, None, 0.0, urgent=True), stop, front=True)
    queue.put(Item(91, 1, "t", None, None, 0.0, urgent=True), stop, front=True)
    # A long fill wait would hold a bulk batch; the urgent ones do not wait for it.
    first = queue.take(limit=1000, wait_s=30.0, max_bytes=10**9)
    # In the order they came: a birth and the death after it never swap (they once did, put
    # at the front one by one, which kept a stopped store online under load).
    assert [i.mid for i in first] == [90, 91]
    queue.put(Item(5, 1, "t", None, None, 0.0), stop)
    rest = queue.take(limit=6, wait_s=0.01, max_bytes=10**9)
    assert [i.mid for i in rest] == [0, 1, 2, 3, 4, 5]


def test_an_urgent_item_that_comes_while_a_bulk_batch_fills_ends_the_wait_and_goes_first():
    import threading

    from hub.ingest import Handoff, Item

    queue = Handoff(100)
    stop = threading.Event()
    queue.put(Item(1, 1, "t", None, None, 0.0), stop)
    got: list = []
    writer = threading.Thread(target=lambda: got.append(
        queue.take(limit=1000, wait_s=3600.0, max_bytes=10**9)), daemon=True)
    writer.start()
    queue.put(Item(2, 1, "t", None, None, 0.0), stop)
    for mid in (90, 91, 92):
        queue.put(Item(mid, 1, "t", None, None, 0.0, urgent=True), stop, front=True)
    writer.join(120)  # returns at once unless the urgent items were ignored (an hour's wait)
    assert not writer.is_alive()
    batch = [i.mid for i in got[0]]
    # The writer may have seen the first urgent item alone or all three with the bulk ones;
    # either way the urgent ones come first and in order, and nothing is lost or repeated.
    rest = []
    while not queue.empty():
        rest += [i.mid for i in queue.take(1000, 0.0, 10**9)]
    everything = batch + rest
    assert sorted(everything) == [1, 2, 90, 91, 92]
    urgent = [m for m in everything if m >= 90]
    assert batch[0] == 90 and urgent == [90, 91, 92] and queue.bytes == 0


def test_the_hand_over_holds_the_network_thread_when_its_bytes_are_full_but_not_an_urgent_item():
    import threading

    from hub.ingest import Handoff, Item

    queue = Handoff(maxsize=1000, max_bytes=1000)
    stop = threading.Event()
    queue.put(Item(1, 1, "t", None, None, 0.0, b"x" * 600), stop)
    queue.put(Item(2, 1, "t", None, None, 0.0, b"x" * 600), stop)  # now over: 1200 bytes
    held = threading.Thread(target=queue.put,
                            args=(Item(3, 1, "t", None, None, 0.0, b"x" * 10), stop))
    held.start()
    held.join(0.3)
    assert held.is_alive(), "a put into a full hand-over must wait"
    queue.put(Item(9, 1, "t", None, None, 0.0, b"x" * 600, urgent=True), stop, front=True)
    assert queue.qsize() == 3 and queue.bytes == 1800  # the urgent one went in at once
    assert [i.mid for i in queue.take(10, 0.0, 10**9)] == [9]
    assert [i.mid for i in queue.take(1, 0.0, 10**9)] == [1]
    held.join(5)  # 600 bytes left: room again
    assert not held.is_alive()
    assert [i.mid for i in queue.take(10, 0.0, 10**9)] == [2, 3] and queue.bytes == 0
