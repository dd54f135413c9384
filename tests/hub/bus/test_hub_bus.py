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
