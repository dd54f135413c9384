"""Heartbeats by vendor, one row each: what to send, how to frame the stream, what to acknowledge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edge_agent.collectors.scanner import protocol


@dataclass(frozen=True)
class Heartbeat:
    """How one vendor's scanner is asked whether it is alive."""

    query: bytes | None  # None: no heartbeat
    framer: Callable[..., object]  # builds the stream framer from the config's framing keys
    ack_scans: bytes | None = None  # sent after each scan when the protocol wants it acknowledged
    notes: str = ""


HEARTBEATS: dict[str, Heartbeat] = {
    "none": Heartbeat(None, protocol.TextFramer, notes="suffix framing; no heartbeat"),
    "honeywell": Heartbeat(
        protocol.honeywell_query(b"232BAD"),
        lambda **kw: protocol.TextFramer(honeywell_replies=True, **kw),
        notes="asks the RS-232 baud rate (232BAD?); any ACK/ENQ/NAK reply means alive"),
    "zebra": Heartbeat(
        protocol.ssi_build(protocol.REQUEST_REVISION),
        lambda suffix=None, **kw: protocol.SsiFramer(**kw),
        ack_scans=protocol.SSI_ACK,
        notes="SSI mode: scans arrive as DECODE_DATA packets, which the host acknowledges"),
}
