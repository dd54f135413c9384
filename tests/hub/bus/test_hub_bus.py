"""hub.bus's publisher and subscriber against a real Mosquitto."""

from __future__ import annotations

import pytest

from hub.bus.publisher import Publisher
from hub.bus.subscriber import Subscriber
from hub.errors import BrokerError
from wait import wait_until


def test_a_published_message_reaches_a_subscriber_and_a_retained_one_a_late_one(mosquitto):
    seen: list[tuple[str, bytes]] = []
    sub = Subscriber(mosquitto.host, mosquitto.port, [("edge/v1/r1/s1/cmd", 1)],
                     lambda t, p: seen.append((t, p)))
    sub.connect()
    pub = Publisher(mosquitto.host, mosquitto.port).connect()
    try:
        wait_until(lambda: sub.client.is_connected(), what="the subscriber to connect")
        wait_until(lambda: (pub.publish("edge/v1/r1/s1/cmd", b"ping") or True) and seen,
                   what="the message at the subscriber")
        assert seen[0] == ("edge/v1/r1/s1/cmd", b"ping")
        pub.publish("edge/v1/r1/s1/config", b"cfg", retain=True)
        late: list[tuple[str, bytes]] = []
        sub2 = Subscriber(mosquitto.host, mosquitto.port, [("edge/v1/r1/s1/config", 1)],
                          lambda t, p: late.append((t, p)))
        sub2.connect()
        try:
            wait_until(lambda: late, what="the retained config for a late subscriber")
            assert late[0] == ("edge/v1/r1/s1/config", b"cfg")
        finally:
            sub2.stop()
    finally:
        pub.close()
        sub.stop()


def test_an_unreachable_broker_is_a_broker_error_not_a_traceback():
    from conftest import free_port

    with pytest.raises(BrokerError, match="cannot reach the broker"):
        Publisher("127.0.0.1", free_port()).connect()


class _Lane:
    """Stands in for one of the consumer's paho clients in its callbacks: records SUBSCRIBEs
    and hands out message ids as paho does (only what _on_connect uses)."""

    def __init__(self, first_mid: int):
        self.mid = first_mid
        self.subscribed: list = []

    def subscribe(self, topic, qos=0):
        self.subscribed.append(topic)
        self.mid += 1
        return 0, self.mid


def test_stores_are_told_to_send_only_once_every_lane_has_its_subscription_acknowledged():
    """Said after the bulk lane alone, a store's alert published before the priority lane's
    SUBACK reached the bulk lane only, behind its backlog, and was overtaken by later ones
    (issue 11, seen in the long-outage test under stress-ng)."""
    from types import SimpleNamespace

    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    from hub.bus.consumer import Consumer, ConsumerSettings

    said: list[str] = []
    connected: list[str] = []
    consumer = Consumer(ConsumerSettings(prefix="t", client_id="c"),
                        on_connected=lambda c: connected.append("bulk"),
                        on_ready=lambda c: said.append("online"))
    assert consumer.lane is not None
    bulk, lane = _Lane(100), _Lane(200)
    ok = ReasonCode(PacketTypes.CONNACK, "Success")
    gone = ReasonCode(PacketTypes.DISCONNECT, "Unspecified error")
    granted = [ReasonCode(PacketTypes.SUBACK, identifier=1)]
    refused = [ReasonCode(PacketTypes.SUBACK, "Not authorized")]
    flags = SimpleNamespace(session_present=False)
    B, P = {"priority": False}, {"priority": True}

    consumer._on_connect(bulk, B, flags, ok, None)
    consumer._on_connect(lane, P, flags, ok, None)
    consumer._on_subscribe(bulk, B, bulk.mid, granted, None)
    consumer._on_subscribe(bulk, B, 999, granted, None)  # another subscription of the client
    assert said == [] and not consumer.ready.is_set()
    consumer._on_subscribe(lane, P, lane.mid, refused, None)  # refused: still not subscribed
    assert said == []
    consumer._on_subscribe(lane, P, lane.mid, granted, None)
    assert said == ["online"] and consumer.ready.is_set()

    # The lane drops and comes back: nothing is said again until its new SUBACK.
    consumer._on_disconnect(lane, P, flags, gone, None)
    consumer._on_connect(lane, P, flags, ok, None)
    consumer._on_subscribe(lane, P, lane.mid - 1, granted, None)  # the old connection's mid
    assert said == ["online"]
    consumer._on_subscribe(lane, P, lane.mid, granted, None)
    assert said == ["online", "online"]
    # Likewise the bulk lane.
    consumer._on_disconnect(bulk, B, flags, gone, None)
    consumer._on_connect(bulk, B, flags, ok, None)
    assert said == ["online", "online"]
    consumer._on_subscribe(bulk, B, bulk.mid, granted, None)
    assert said == ["online", "online", "online"]
    assert len(bulk.subscribed) == 2 and len(lane.subscribed) == 2
    assert connected == ["bulk", "bulk"]  # the hub's own state topic: at each bulk connect
