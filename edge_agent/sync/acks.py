"""Acknowledge received messages in order, each only once the agent is done with it.

The sync client runs paho with `manual_ack=True`: paho sends no PUBACK by itself, the client
calls `ack(mid, qos)`. MQTT (3.1.1 and 5.0, section 4.6, [MQTT-4.6.0-2]) wants PUBACKs sent in
the order the PUBLISH packets arrived, over every topic of the connection. `AckOrder` keeps the
received QoS 1/2 message ids of one connection in arrival order; a `Receipt` is marked done
(from any thread) when its message is recorded, and every done receipt at the head of the line
is acknowledged then, in order. A receipt still open holds back the PUBACKs behind it (not the
messages: they are delivered and handled meanwhile).

No paho here (tests drive it with a plain list as the sender). The sender is called under the
lock, so two threads finishing receipts never send their PUBACKs out of order; paho's `ack`
only appends to its packet deque and wakes its network thread, so the lock is held briefly.

Traps this covers (paho-mqtt 2, `Client.ack`): paho does not check the id, so an ack after the
connection was replaced would acknowledge whatever the broker sent under that id on the new
one: `close()` makes every later `done` a no-op (the broker sends the message again on the next
connection, flagged DUP). QoS 0 messages have no PUBACK: their receipt is done at once. A
receipt is done once; a second `done` changes nothing.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable

Sender = Callable[[int, int], object]  # (mid, qos): paho's Client.ack


class Receipt:
    """One received message, to be marked done when the agent has recorded it."""

    __slots__ = ("order", "mid", "qos", "finished", "failed")

    def __init__(self, order: "AckOrder | None", mid: int, qos: int):
        self.order = order
        self.mid = mid
        self.qos = qos
        self.finished = order is None
        self.failed = False

    def done(self) -> None:
        """The message is recorded (or durably refused): its PUBACK may go, in order."""
        if self.order is not None:
            self.order._done(self)

    def fail(self) -> None:
        """It could not be recorded: no PUBACK (the broker sends it again on the next
        connection); the owner is told (`on_failed`), and should drop the connection, since
        every PUBACK behind this one is held until then."""
        if self.order is not None:
            self.order._fail(self)


NOTHING = Receipt(None, 0, 0)  # for QoS 0 and for callers without a connection


class AckOrder:
    """The PUBACK line of one connection."""

    def __init__(self, send: Sender, on_failed: Callable[[Receipt], None] | None = None):
        self._send = send
        self._on_failed = on_failed
        self._lock = threading.Lock()
        self._line: collections.deque[Receipt] = collections.deque()
        self._closed = False
        self.acked = 0      # PUBACKs sent
        self.held_max = 0   # the longest line seen (figures, tests)

    def received(self, mid: int, qos: int) -> Receipt:
        """A PUBLISH arrived (paho's thread, before it is handed on): take its place in line."""
        if qos <= 0:
            return NOTHING
        receipt = Receipt(self, mid, qos)
        with self._lock:
            if self._closed:
                receipt.finished = True
                return receipt
            self._line.append(receipt)
            if len(self._line) > self.held_max:
                self.held_max = len(self._line)
        return receipt

    def _done(self, receipt: Receipt) -> None:
        with self._lock:
            if receipt.finished or receipt.failed or self._closed:
                return
            receipt.finished = True
            while self._line and self._line[0].finished:
                head = self._line.popleft()
                self._send(head.mid, head.qos)
                self.acked += 1

    def _fail(self, receipt: Receipt) -> None:
        with self._lock:
            if receipt.finished or receipt.failed or self._closed:
                return
            receipt.failed = True
        if self._on_failed is not None:
            self._on_failed(receipt)

    def close(self) -> int:
        """The connection is over: nothing more is sent; return how many were left unacked."""
        with self._lock:
            self._closed = True
            left = len(self._line)
            self._line.clear()
        return left

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._line)
