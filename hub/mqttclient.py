"""A paho client that reads the socket 64 KiB at a time instead of a few bytes per packet.

paho-mqtt 2.x reads each packet's header with one-byte recv() calls and handles one packet per
select() round when no QoS 2 flow is open; a consumer draining a stream then spends most of its
CPU in system calls (91 us a 250-byte message here, 6.4k msg/s). This subclass keeps a read
buffer and drains every packet already received before returning to select(). It overrides two
private methods of paho 2.x (`_sock_recv`, `_sock_close`) and `loop_read`; pyproject pins
paho-mqtt < 3, and tests/test_hub_ingest.py exercises it against a real Mosquitto.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt


class BufferedClient(mqtt.Client):
    """paho's Client with a userspace read buffer."""

    _READ = 65536
    _BURST = 200  # packets a read round takes from the socket before letting writes (acks) out

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rbuf = bytearray()
        self._no_refill = False

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
