"""hub/bus/mqttclient.py's own reading of PUBLISH packets agrees with paho's, byte for byte.

The hub's client cuts whole QoS 1 PUBLISH packets out of its read buffer itself and leaves
every other packet, and any packet it cannot take whole, to paho. Here random streams of
packets (QoS 0, 1 and 2, DUP and RETAIN, MQTT 5 properties, one- to three-byte lengths,
topics with their own callback, empty topics, non-UTF-8 topics, message id 0), cut into random
reads, go through a socket pair to both our client and paho's own, and both must hand the
same messages to the application and stop at the same protocol error.
"""

from __future__ import annotations

import socket
import struct

import paho.mqtt.client as mqtt
from hypothesis import HealthCheck, given, settings, strategies as st

from hub.bus.mqttclient import BufferedClient


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: bytes, payload: bytes, qos: int, mid: int, dup: bool, retain: bool,
            props: bytes | None, v5: bool) -> bytes:
    var = struct.pack("!H", len(topic)) + topic
    if qos:
        var += struct.pack("!H", mid)
    if v5:
        var += props if props is not None else b"\x00"
    header = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    return bytes([header]) + varint(len(var) + len(payload)) + var + payload


TOPICS = st.sampled_from([b"edge/v1/r1/s1/telemetry", b"edge/v1/r1/s2/alert",
                          b"edge/v1/hub/state", b"", b"edge/\xff\xfe/bad", "é/ü".encode()])
PAYLOADS = st.sampled_from([0, 1, 100, 127, 200, 16_400]).map(lambda n: bytes(n % 251
                                                                            for n in range(n)))
# MQTT 5 properties: none, or a Message Expiry Interval (0x02, four bytes).
PROPS = st.sampled_from([None, b"\x05\x02\x00\x00\x00\x3c"])


def packets(v5: bool):
    one = st.builds(publish, TOPICS, PAYLOADS, st.sampled_from([0, 1, 1, 1, 2]),
                    st.sampled_from([1, 2, 7, 65535, 0]), st.booleans(), st.booleans(),
                    PROPS, st.just(v5))
    return st.lists(one | st.just(b"\xd0\x00"), min_size=1, max_size=25)  # PINGRESP too


class Recorder:
    """A client reading from one end of a socket pair, recording what reaches on_message."""

    def __init__(self, cls: type, v5: bool):
        self.client = cls(mqtt.CallbackAPIVersion.VERSION2, client_id="t",
                          protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, manual_ack=True)
        self.got: list[tuple] = []
        self.client.on_message = self.on_message
        self.client.message_callback_add("edge/v1/hub/state", self.on_state)
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.client._sock = self.ours

    def on_message(self, client, userdata, msg) -> None:
        self.got.append(("msg", msg.topic, bytes(msg.payload), msg.qos, msg.mid if msg.qos else
                         0, bool(msg.dup), bool(msg.retain)))

    def on_state(self, client, userdata, msg) -> None:
        self.got.append(("state", msg.topic, bytes(msg.payload)))

    def feed(self, chunks: list[bytes]) -> list:
        """Send the chunks one read at a time; return what was delivered and the error."""
        error = None
        for chunk in chunks:
            self.theirs.sendall(chunk)
            for _ in range(40):  # more rounds than packets: paho's own takes one a round
                try:
                    rc = self.client.loop_read()
                except (ValueError, UnicodeDecodeError, IndexError, struct.error) as err:
                    error = type(err).__name__  # paho raises these on some malformed packets
                    break
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    error = int(rc)
                    break
            if error is not None:
                break
        self.ours.close()
        self.theirs.close()
        return [self.got, error]


def cuts(data: bytes):
    """The stream cut into reads at random places."""
    return st.lists(st.integers(0, len(data)), max_size=12).map(
        lambda points: [data[a:b] for a, b in zip([0, *sorted(points)],
                                                   [*sorted(points), len(data)]) if b > a])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans().flatmap(lambda v5: st.tuples(st.just(v5), packets(v5))).flatmap(
    lambda t: st.tuples(st.just(t[0]), cuts(b"".join(t[1])))))
def test_our_client_delivers_exactly_what_paho_delivers(case):
    v5, chunks = case
    ours = Recorder(BufferedClient, v5).feed(chunks)
    paho = Recorder(mqtt.Client, v5).feed(chunks)
    assert ours == paho


def test_a_burst_of_plain_qos1_publishes_is_read_without_paho_per_packet():
    # The fast path must actually take them: paho's _packet_handle is never called.
    rec = Recorder(BufferedClient, v5=True)
    calls = []
    real = rec.client._packet_handle
    rec.client._packet_handle = lambda: calls.append(1) or real()
    stream = b"".join(publish(b"edge/v1/r1/s1/telemetry", b"x" * 300, 1, i + 1, False, False,
                              None, True) for i in range(500))
    rec.theirs.sendall(stream[:1])  # the first byte arrives alone: paho reads that packet
    rec.client.loop_read()
    rec.theirs.sendall(stream[1:])
    while len(rec.got) < 500:
        assert rec.client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert [g[4] for g in rec.got] == list(range(1, 501))
    assert len(calls) <= 3, f"paho handled {len(calls)} of 500 packets"
