"""A paho client with buffered reads, a lean QoS 1 receive path and acknowledgements in bulk.

paho-mqtt 2.x reads each packet's header with one-byte recv() calls and handles one packet per
select() round when no QoS 2 flow is open; a consumer draining a stream then spends most of its
CPU in system calls (91 us a 250-byte message here, 6.4k msg/s). This subclass keeps a read
buffer and drains every packet already received before returning to select(). A QoS 1 PUBLISH
without MQTT 5 properties skips paho's per-message Properties, MQTTMessage, MQTTMessageInfo,
debug formatting and topic matcher (~25 us a message here); whole such packets already in the
buffer are cut out of it in one loop (`_read_publishes`), without paho's per-packet state
machine; anything else takes paho's path. `ack_many` queues a batch's PUBACKs as one write.
It overrides private methods of paho 2.x (`_sock_recv`, `_sock_close`, `_handle_publish`) and
`loop_read`, and uses `_in_packet`, `_packet_queue` and `_last_bytes_received`; pyproject pins
paho-mqtt < 3. tests/hub/bus/test_hub_mqttclient.py checks it delivers what paho delivers on
random packet streams, and tests/hub/ingest/test_hub_ingest.py runs it against a real Mosquitto.
"""

from __future__ import annotations

import struct
import time

import paho.mqtt.client as mqtt

_PUBACK = struct.Struct("!BBH")


class Message:
    """The fields of paho's MQTTMessage that a consumer reads, without its per-message extras."""

    __slots__ = ("topic", "payload", "mid", "qos", "dup", "retain", "timestamp", "properties")

    def __init__(self, topic: str, payload: bytes, mid: int, qos: int, dup: bool,
                 retain: bool):
        self.topic = topic
        self.payload = payload
        self.mid = mid
        self.qos = qos
        self.dup = dup
        self.retain = retain
        self.timestamp = time.monotonic()
        self.properties = None


class BufferedClient(mqtt.Client):
    """paho's Client with a userspace read buffer."""

    _READ = 65536
    _BURST = 200  # packets a read round takes from the socket before letting writes (acks) out

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rbuf = bytearray()
        self._no_refill = False
        self._filtered: dict[str, bool] = {}  # topic -> a message_callback_add filter matches
        self._topics: dict[bytes, tuple[str, bool]] = {}  # the same, by the topic's bytes

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._rbuf:
            if self._no_refill:
                raise BlockingIOError()  # paho keeps a partial packet and resumes next round
            data = super()._sock_recv(self._READ)  # BlockingIOError when nothing is there
            if not data:
                return b""  # the peer closed: paho sees the usual empty read
            self._rbuf += data
        out = bytes(self._rbuf[:bufsize])
        del self._rbuf[:bufsize]
        return out

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        header = self._in_packet["command"]
        packet = self._in_packet["packet"]
        # The fast path: QoS 1, manual acks, no per-topic callbacks, no properties; paho's own
        # path (which also raises its protocol errors) for everything else.
        if (header & 0x06) != 0x02 or not self._manual_ack or self.on_message is None:
            return super()._handle_publish()
        n = len(packet)
        if n < 4:
            return super()._handle_publish()
        slen = (packet[0] << 8) | packet[1]
        pos = 2 + slen
        if slen == 0 or pos + 2 > n:
            return super()._handle_publish()
        mid = (packet[pos] << 8) | packet[pos + 1]
        pos += 2
        if self._protocol == mqtt.MQTTv5:
            if pos >= n or packet[pos] != 0:  # a property length of 0 is one zero byte
                return super()._handle_publish()
            pos += 1
        try:
            topic = bytes(packet[2:2 + slen]).decode("utf-8")
        except UnicodeDecodeError:
            return super()._handle_publish()
        filtered = self._filtered.get(topic)
        if filtered is None:
            with self._callback_mutex:
                filtered = any(True for _ in self._on_message_filtered.iter_match(topic))
            if len(self._filtered) >= 65536:  # bounded: a broker may carry many topics
                self._filtered.clear()
            self._filtered[topic] = filtered
        if filtered:
            return super()._handle_publish()
        message = Message(topic, bytes(packet[pos:]), mid, 1, bool(header & 0x08),
                          bool(header & 0x01))
        with self._in_callback_mutex:
            try:
                self.on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def message_callback_add(self, sub: str, callback) -> None:
        self._filtered, self._topics = {}, {}  # which topics have their own callback: recomputed
        super().message_callback_add(sub, callback)

    def message_callback_remove(self, sub: str) -> None:
        self._filtered, self._topics = {}, {}
        super().message_callback_remove(sub)

    def ack_many(self, mids: list[int]) -> None:
        """Acknowledge QoS 1 messages (manual_ack) with one write instead of one per message."""
        if not mids:
            return
        packet = b"".join(_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids)
        self._packet_queue(mqtt.PUBACK, packet, 0, 0)

    def _sock_close(self) -> None:
        self._rbuf = bytearray()  # bytes of a dead connection must not leak into the next
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        # Handle every packet already in our buffer before returning: select() cannot see
        # those bytes. After a burst, stop refilling from the socket (select() will see what
        # is left there) so the loop gets to write the acknowledgements queued meanwhile.
        if self._sock is None:
            return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
        packets = 0
        try:
            while True:
                if self._sock is None:
                    return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
                if self._rbuf and not self._in_packet["command"]:
                    packets += self._read_publishes()
                rc = self._packet_read()
                if rc > 0:
                    return self._loop_rc_handle(rc)
                if rc == mqtt.MQTTErrorCode.MQTT_ERR_AGAIN:
                    return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
                packets += 1
                if packets >= self._BURST:
                    self._no_refill = True
        finally:
            self._no_refill = False

    def _read_publishes(self) -> int:
        """Handle the whole plain QoS 1 PUBLISH packets at the head of the read buffer.

        The same checks as `_handle_publish`'s fast path, without paho's per-packet state
        machine (a dict of eight fields, the header read byte by byte): it stops at the first
        packet that is anything else, incomplete or malformed, and paho's `_packet_read`
        takes that one, with its own errors. Returns how many packets it handled.
        """
        if not self._manual_ack or self.on_message is None:
            return 0
        buf = self._rbuf
        n = len(buf)
        pos = 0
        v5 = self._protocol == mqtt.MQTTv5
        topics = self._topics
        on_message, userdata = self.on_message, self._userdata
        handled = 0
        with self._in_callback_mutex:
            try:
                while pos + 2 <= n:
                    header = buf[pos]
                    if header & 0xF6 != 0x32:  # not PUBLISH at QoS 1 (DUP and RETAIN may be set)
                        break
                    byte = buf[pos + 1]  # Remaining Length: 1 to 4 bytes of 7 bits
                    length = byte & 0x7F
                    i = pos + 2
                    shift = 7
                    while byte & 0x80:
                        if i >= n or shift > 21:
                            break  # incomplete, or over four bytes: paho reads it or says why
                        byte = buf[i]
                        length |= (byte & 0x7F) << shift
                        i += 1
                        shift += 7
                    if byte & 0x80:
                        break
                    end = i + length
                    if end > n or i + 2 > end:
                        break
                    start = i + 2
                    mid_at = start + ((buf[i] << 8) | buf[i + 1])
                    body = mid_at + 3 if v5 else mid_at + 2
                    if mid_at == start or body > end or (v5 and buf[mid_at + 2] != 0):
                        break  # empty topic, short packet, or MQTT 5 properties: paho's path
                    mid = (buf[mid_at] << 8) | buf[mid_at + 1]
                    if not mid:
                        break
                    key = bytes(buf[start:mid_at])
                    entry = topics.get(key)
                    if entry is None:
                        entry = self._topic_entry(key)
                        if entry is None:
                            break
                    if entry[1]:
                        break  # a message_callback_add filter matches: paho dispatches it
                    message = Message(entry[0], bytes(buf[body:end]), mid, 1,
                                      bool(header & 0x08), bool(header & 0x01))
                    pos = end
                    handled += 1
                    try:
                        on_message(self, userdata, message)
                    except Exception as err:
                        self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s",
                                       err)
                        if not self.suppress_exceptions:
                            raise
            finally:
                if pos:
                    del buf[:pos]
                    with self._msgtime_mutex:
                        self._last_bytes_received = mqtt.time_func()
        return handled

    def _topic_entry(self, key: bytes) -> tuple[str, bool] | None:
        """(topic, whether a per-topic callback matches it), remembered; None if not UTF-8."""
        try:
            topic = key.decode("utf-8")
        except UnicodeDecodeError:
            return None
        with self._callback_mutex:
            filtered = any(True for _ in self._on_message_filtered.iter_match(topic))
        if len(self._topics) >= 65536:  # bounded: a broker may carry many topics
            self._topics.clear()
        self._topics[key] = (topic, filtered)
        return self._topics[key]
