"""The PUBACK line of a connection (edge_agent/sync/acks.py), without paho: a message's PUBACK
goes only once it is done, and PUBACKs leave in the order the messages arrived, whatever order
they finish in and whichever thread finishes them."""

from __future__ import annotations

import random
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.sync.acks import NOTHING, AckOrder


class Sent(list):
    def __call__(self, mid: int, qos: int) -> None:
        self.append((mid, qos))


def test_a_puback_waits_for_its_message_and_for_every_message_before_it():
    sent = Sent()
    line = AckOrder(sent)
    a, b, c = (line.received(mid, 1) for mid in (7, 8, 9))
    assert sent == [] and line.waiting == 3
    c.done()
    b.done()
    assert sent == []  # 7 is not recorded yet: nothing may be acknowledged past it
    a.done()
    assert sent == [(7, 1), (8, 1), (9, 1)]
    assert line.waiting == 0 and line.acked == 3


def test_done_twice_sends_one_puback():
    sent = Sent()
    line = AckOrder(sent)
    r = line.received(1, 1)
    r.done()
    r.done()
    assert sent == [(1, 1)]


def test_qos0_has_nothing_to_acknowledge_and_holds_nothing_back():
    sent = Sent()
    line = AckOrder(sent)
    first = line.received(3, 0)
    assert first is NOTHING
    second = line.received(4, 1)
    first.done()
    assert sent == []
    second.done()
    assert sent == [(4, 1)]


def test_qos2_is_completed_with_its_own_qos():
    sent = Sent()
    line = AckOrder(sent)
    line.received(5, 2).done()
    assert sent == [(5, 2)]


def test_a_failed_message_gets_no_puback_holds_the_rest_and_tells_the_owner():
    sent, failed = Sent(), []
    line = AckOrder(sent, on_failed=failed.append)
    a, b = line.received(1, 1), line.received(2, 1)
    a.fail()
    b.done()
    a.done()  # too late: it failed (the owner drops the connection)
    assert sent == [] and [r.mid for r in failed] == [1]
    assert line.waiting == 2


def test_after_close_nothing_is_sent_even_for_messages_done_later():
    # paho's ack() does not check the id: a PUBACK sent on a later connection would acknowledge
    # whatever the broker sent there under that id.
    sent = Sent()
    line = AckOrder(sent)
    a, b = line.received(1, 1), line.received(2, 1)
    a.done()
    assert line.close() == 1
    b.done()
    line.received(3, 1).done()
    assert sent == [(1, 1)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2), min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_any_finishing_order_acknowledges_in_arrival_order_and_only_what_is_done(qos, rnd):
    sent = Sent()
    line = AckOrder(sent)
    receipts = [line.received(mid, q) for mid, q in enumerate(qos, start=1)]
    order = list(range(len(receipts)))
    rnd.shuffle(order)
    finished: set[int] = set()
    for i in order:
        receipts[i].done()
        finished.add(i)
        # What was sent is exactly the longest prefix of QoS>0 messages that are all done.
        prefix = []
        for j, q in enumerate(qos):
            if q == 0:
                continue
            if j not in finished:
                break
            prefix.append((j + 1, q))
        assert sent == prefix
    assert sent == [(m, q) for m, q in enumerate(qos, start=1) if q > 0]


def test_two_threads_finishing_at_once_still_acknowledge_in_order():
    sent = Sent()
    line = AckOrder(sent)
    receipts = [line.received(mid, 1) for mid in range(1, 2001)]
    mine = list(range(len(receipts)))
    random.Random(5).shuffle(mine)
    halves = (mine[::2], mine[1::2])
    start = threading.Barrier(2)

    def finish(indices):
        start.wait()
        for i in indices:
            receipts[i].done()

    threads = [threading.Thread(target=finish, args=(h,)) for h in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sent == [(mid, 1) for mid in range(1, 2001)]


# With a real Mosquitto and a real agent (in-process): a command the controller cannot record
# gets no PUBACK; the client drops the link, and the broker sends it again (DUP) on the next
# connection, where it is recorded, acknowledged and run once.

def test_a_command_not_recorded_comes_again_on_the_next_connection_and_runs_once(tmp_path):
    import json
    import sqlite3

    from brokers import Mosquitto
    from controlkit import Raw, signed_command
    from syncrig import REGION, RunningAgent, sync_toml
    from wait import wait_until

    from edge_protocol import topics
    from hub.keys import KeyRing

    broker = Mosquitto(tmp_path / "broker").start()
    ring = KeyRing.init(tmp_path / "keys")
    keys = ", ".join(f'"{k}"' for k in ring.public_keys().values())
    toml = (f'[agent]\nstore = "store-0001"\nregion = "{REGION}"\n'
            f'state_dir = "{tmp_path}/state"\n\n[scoring]\nenabled = false\n\n'
            f"[sync]\n{sync_toml(broker, None, wait_for_hub=False)}\n\n"
            f"[trust]\nhub_keys = [{keys}]\n\n"
            '[[devices]]\nid = "register"\nkind = "host"\ninterval = 1.0\n')
    raw = Raw(broker, "test-hub")
    a = RunningAgent(tmp_path / "agent", toml)
    try:
        a.start()
        ctl = a.agent.control
        wait_until(lambda: ctl.ready and a.client.connected, what="the agent connected")
        # A retained flags document: once applied, the cmd topic (subscribed before flags on
        # every connection) is subscribed at the broker.
        raw.send(topics.flags_topic(REGION, "store-0001"), ring.sign_document(
            {"v": 1, "type": "flags", "store": "store-0001", "version": 1,
             "flags": {"tickets": True}, "issued": "2026-12-01T00:00:00Z"}), retain=True)
        wait_until(lambda: ctl.flags_version == 1, what="the flags applied")
        connects = a.client.connects

        take, dups = ctl.take_command, []

        async def locked_once(payload, dup=False, wait=False):
            dups.append(dup)
            if len(dups) == 1:
                raise sqlite3.OperationalError("database is locked")
            return await take(payload, dup, wait)

        ctl.take_command = locked_once
        doc = signed_command(ring, seq=1, device="register", action="repoll")
        raw.send(topics.cmd_topic(REGION, "store-0001"), json.dumps(doc).encode())
        wait_until(lambda: [r for r in a.db(lambda: a.agent.db.execute(
            "SELECT status FROM control_log WHERE command = ?", (doc["id"],)).fetchall())],
            what="the command's result recorded")
        assert a.client.unrecorded == 1
        assert a.client.connects == connects + 1  # the link was dropped for it, once
        assert dups == [False, True]  # the broker's copy on the next connection is flagged
        assert ctl.executed["repoll"] == 1
        assert a.db(lambda: a.agent.db.execute(
            "SELECT status FROM control_log WHERE command = ?", (doc["id"],)).fetchall()) \
            == [("done",)]
        # Its PUBACK went on the new connection: nothing is left waiting in line there.
        wait_until(lambda: a.client._conn is not None and a.client._conn.received.waiting == 0,
                   what="every received message acknowledged")
    finally:
        raw.close()
        a.stop()
        broker.stop()
