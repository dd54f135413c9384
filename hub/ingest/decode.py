"""Decode one message from a store into a checked envelope, on the network thread.

Everything a store sends is untrusted: edge_protocol.decode checks the envelope and every
field of its typed body (timestamps within the hub's skew, numbers within the columns, text
bounded and free of control characters), so what reaches the writer can be committed. A bug
in a check must not become a poison message either: any other exception is turned into a
`decode_error` reject (logged once per kind of error), never a crashed or stalled worker.
"""

from __future__ import annotations

import logging

from edge_protocol.envelope import Envelope, decode
from edge_protocol.errors import ProtocolError
from edge_protocol.timestamps import Clock, Skew

log = logging.getLogger("hub.ingest")
_seen_bugs: set[str] = set()


def make_decoder(prefix: str, clock: Clock, skew: Skew):
    """Return decode(payload, topic) -> Envelope for one worker's prefix, clock and skew."""

    def decode_one(payload: bytes, topic_name: str) -> Envelope:
        try:
            return decode(payload, topic_name, prefix, clock, skew)
        except ProtocolError:
            raise
        except Exception as err:  # noqa: BLE001 - a bug in a check: reject, do not crash
            kind = type(err).__name__
            if kind not in _seen_bugs and len(_seen_bugs) < 100:
                _seen_bugs.add(kind)
                log.exception("decoding a message failed unexpectedly; rejected",
                              extra={"topic": topic_name[:200]})
            raise ProtocolError("decode_error", f"{kind}: {str(err)[:120]}") from err

    return decode_one
