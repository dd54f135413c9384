"""A TCP proxy between MQTT v5 clients and a broker that sees what was published and acknowledged.

It parses MQTT packets in both directions (plain TCP; fixed header, topic, packet id) and
records, per connection, which envelope ids the broker acknowledged with a PUBACK. With
`hold_acks`, it holds the broker's PUBACKs until the client has stopped publishing for `quiet_s`
and then releases them all: the number of QoS 1 PUBLISHes not yet answered by a released PUBACK,
at its peak, is at most what the client had unacknowledged, so a client that overruns its
window shows.
"""

from __future__ import annotations

import json
import socket
import threading
import time

PUBLISH, PUBACK = 3, 4


def _packets(sock: socket.socket):
    """Yield (type, raw bytes) for each MQTT packet read from a socket until it closes."""
    buf = b""
    while True:
        while len(buf) >= 2:
            length, mult, i, complete = 0, 1, 1, False
            while i < len(buf) and i <= 4:
                byte = buf[i]
                length += (byte & 0x7F) * mult
                mult *= 128
                i += 1
                if not byte & 0x80:
                    complete = True
                    break
            if not complete or len(buf) < i + length:
                break
            raw, buf = buf[:i + length], buf[i + length:]
            yield raw[0] >> 4, raw
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        buf += data


def _varint(raw: bytes, i: int) -> tuple[int, int]:
    value, mult = 0, 1
    while True:
        byte = raw[i]
        value += (byte & 0x7F) * mult
        mult *= 128
        i += 1
        if not byte & 0x80:
            return value, i


def parse_publish(raw: bytes) -> tuple[str, int | None, bytes]:
    """Return (topic, packet id or None for QoS 0, payload) of an MQTT v5 PUBLISH."""
    _, i = _varint(raw, 1)
    n = int.from_bytes(raw[i:i + 2], "big")
    topic = raw[i + 2:i + 2 + n].decode("utf-8", "replace")
    i += 2 + n
    mid = None
    if (raw[0] >> 1) & 3:
        mid = int.from_bytes(raw[i:i + 2], "big")
        i += 2
    props, i = _varint(raw, i)
    return topic, mid, raw[i + props:]


class Proxy:
    """Forward every client connection on a free port to the broker, recording PUBACKed ids."""

    def __init__(self, broker_host: str, broker_port: int, *, hold_acks: bool = False,
                 quiet_s: float | None = 0.15, ignore: str | None = None):
        self.broker = (broker_host, broker_port)
        self.hold_acks = hold_acks
        self.quiet_s = quiet_s
        self.ignore = ignore  # a topic whose publishes are not counted (the birth)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.published = 0       # counted QoS 1 PUBLISH packets from clients
        self.released = 0        # PUBACKs for counted publishes handed back to clients
        self.max_outstanding = 0
        self.acked_ids: set[str] = set()   # envelope ids the broker acknowledged
        self.last_publish = time.monotonic()
        self.stopped = threading.Event()
        self.sockets: list[socket.socket] = []
        self.holds: list[tuple[socket.socket, list]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.broker, timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()  # The broker is down: the client sees a refused connection.
                continue
            self.sockets += [client, upstream]
            pending: dict[int, tuple[str, bool]] = {}  # packet id -> (envelope id, counted)
            held: list[tuple[bytes, bool]] = []
            threading.Thread(target=self._up, args=(client, upstream, pending),
                             daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, pending, held),
                             daemon=True).start()
            self.holds.append((client, held))
            if self.hold_acks and self.quiet_s is not None:
                threading.Thread(target=self._release, args=(client, held), daemon=True).start()

    def _up(self, client, upstream, pending) -> None:
        for kind, raw in _packets(client):
            if kind == PUBLISH and (raw[0] >> 1) & 3 == 1:
                topic, mid, payload = parse_publish(raw)
                try:
                    env_id = json.loads(payload).get("id", "")
                except ValueError:
                    env_id = ""
                counted = topic != self.ignore
                with self.lock:
                    pending[mid] = (env_id, counted)
                    if counted:
                        self.published += 1
                        self.last_publish = time.monotonic()
                        self.max_outstanding = max(self.max_outstanding,
                                                   self.published - self.released)
            try:
                upstream.sendall(raw)
            except OSError:
                break
        _close(client, upstream)

    def _down(self, upstream, client, pending, held) -> None:
        for kind, raw in _packets(upstream):
            if kind == PUBACK:
                mid = int.from_bytes(raw[2:4], "big")
                code = raw[4] if len(raw) > 4 else 0
                with self.lock:
                    env_id, counted = pending.pop(mid, ("", False))
                    if env_id and code < 0x80:
                        self.acked_ids.add(env_id)
                    if self.hold_acks:
                        held.append((raw, counted))
                        continue
                    self.released += counted
            try:
                client.sendall(raw)
            except OSError:
                break
        _close(client, upstream)

    def _release(self, client, held) -> None:
        while not self.stopped.is_set():
            time.sleep(self.quiet_s / 3)
            with self.lock:
                quiet = time.monotonic() - self.last_publish >= self.quiet_s
            if quiet and not self._send_held(client, held):
                return

    def _send_held(self, client, held) -> bool:
        with self.lock:
            out = list(held)
            held.clear()
            self.released += sum(counted for _, counted in out)
        try:
            if out:
                client.sendall(b"".join(raw for raw, _ in out))
        except OSError:
            return False
        return True

    def release(self) -> None:
        """Hand every held PUBACK to its client now (with quiet_s=None nothing else does)."""
        for client, held in list(self.holds):
            self._send_held(client, held)

    def held(self) -> int:
        with self.lock:
            return sum(len(h) for _, h in self.holds)

    def acked(self) -> set[str]:
        with self.lock:
            return set(self.acked_ids)

    def close(self) -> None:
        self.stopped.set()
        _close(self.listener, *self.sockets)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass
