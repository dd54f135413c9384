"""Scanner bytes to events: suffix framing, malformed frames, Honeywell and Zebra SSI heartbeats.

Pure: no I/O. A framer is fed whatever the port returned and hands back events:

    ("scan", length)        a well-formed bar code frame (only its length: the data itself may be
                            customer data and never leaves this module)
    ("malformed", why)      a frame that failed a check: non-printable junk, a bad check digit,
                            too long, a bad SSI checksum
    ("reply", status)       a heartbeat answer: "ack", "enq" (Honeywell: unknown tag) or "nak"

Every buffer is bounded by `max_frame`; junk never grows memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from edge_agent.errors import ProtocolError

Event = tuple[str, object]

SUFFIXES = {"cr": b"\r", "lf": b"\n", "crlf": b"\r\n"}

ACK, ENQ, NAK, SYN = 0x06, 0x05, 0x15, 0x16
REPLY_STATUS = {ACK: "ack", ENQ: "enq", NAK: "nak"}
# A Honeywell menu reply ends with ACK, ENQ or NAK and then "." or "!"; scans never hold those.
_REPLY_END = rb"[\x05\x06\x15][.!]"
# GS (0x1d) is the GS1 function-1 separator some scanners transmit inside GS1-128 and DataMatrix.
_ALLOWED_CONTROL = frozenset({0x1D})


# --- Frame checks -------------------------------------------------------------------------------

def gtin_check_ok(digits: bytes) -> bool:
    """True when an EAN-8/UPC-A/EAN-13/GTIN-14 number's last digit is its mod-10 check digit."""
    body, check = digits[:-1], digits[-1] - 0x30
    total = sum((d - 0x30) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def _check_printable(frame: bytes) -> str | None:
    for b in frame:
        if (b < 0x20 or b > 0x7E) and b not in _ALLOWED_CONTROL:
            return f"non-printable byte 0x{b:02x}"
    return None


def _check_ean_upc(frame: bytes) -> str | None:
    if not frame.isdigit() or len(frame) not in (8, 12, 13, 14):
        return f"not an EAN/UPC number ({len(frame)} bytes)"
    if not gtin_check_ok(frame):
        return "bad check digit"
    return None


# Symbology checks, one row each: the checks a frame must pass after the printable check.
SYMBOLOGIES: dict[str, tuple[Callable[[bytes], str | None], ...]] = {
    "any": (),
    "ean_upc": (_check_ean_upc,),
}


def check_frame(frame: bytes, symbology: str = "any") -> str | None:
    """Return why a bar code frame (suffix removed) is malformed, or None if it is well formed."""
    if not frame:
        return "empty frame"
    why = _check_printable(frame)
    if why:
        return why
    for check in SYMBOLOGIES[symbology]:
        why = check(frame)
        if why:
            return why
    return None


# --- Text framing (suffix-terminated scans, Honeywell replies) ----------------------------------

class TextFramer:
    """Split a scanner's byte stream at the suffix; recognise Honeywell menu replies in it."""

    def __init__(self, suffix: str = "cr", symbology: str = "any", max_frame: int = 512,
                 honeywell_replies: bool = False):
        if suffix not in SUFFIXES:
            raise ValueError(f"unknown suffix {suffix!r}")
        if symbology not in SYMBOLOGIES:
            raise ValueError(f"unknown symbology {symbology!r}")
        self.suffix = SUFFIXES[suffix]
        self.symbology = symbology
        self.max_frame = max(4, int(max_frame))
        self.honeywell_replies = honeywell_replies
        # One search for whichever comes first: the suffix, or a Honeywell reply's end.
        alternatives = [re.escape(self.suffix)]
        if honeywell_replies:
            alternatives.append(_REPLY_END)
        self._boundary = re.compile(b"|".join(b"(" + a + b")" for a in alternatives))
        self._buf = bytearray()
        self._searched = 0  # no boundary starts before this offset: each byte is searched once
        self._discarding = False  # after an overlong frame, skip to the next suffix

    def feed(self, data: bytes) -> list[Event]:
        """Take bytes from the port; return the events they complete."""
        events: list[Event] = []
        self._buf += data
        while True:
            end, kind = self._next_boundary()
            if end < 0:
                break
            if kind == "reply":
                frame = bytes(self._buf[:end])
                del self._buf[:end]
                events.append(("reply", parse_honeywell_reply(frame)[1]))
                self._discarding = False
                continue
            frame = bytes(self._buf[:end])
            del self._buf[:end + len(self.suffix)]
            if self._discarding:
                self._discarding = False
                continue
            # A frame past the limit is malformed however the reads cut it (found by fuzzing:
            # one read holding a whole overlong frame used to pass as a scan).
            why = (f"frame longer than {self.max_frame} bytes" if len(frame) > self.max_frame
                   else check_frame(frame, self.symbology))
            events.append(("malformed", why) if why else ("scan", len(frame)))
        if len(self._buf) > self.max_frame:
            # Keep a trailing partial suffix (CR of CRLF) so the next read can complete it.
            keep = len(self.suffix) - 1
            if not self._discarding:
                events.append(("malformed", f"frame longer than {self.max_frame} bytes"))
                self._discarding = True
            del self._buf[:len(self._buf) - keep]
            self._searched = 0
        return events

    def _next_boundary(self) -> tuple[int, str]:
        """Return (index, "frame") of the next suffix or (end, "reply") of a Honeywell reply."""
        match = self._boundary.search(self._buf, self._searched)
        if match is None:
            # Both patterns are at most 2 bytes: the last byte may start one.
            self._searched = max(0, len(self._buf) - 1)
            return -1, ""
        self._searched = 0
        if match.lastindex == 2:
            return match.end(), "reply"
        return match.start(), "frame"

    @property
    def buffered(self) -> int:
        """Bytes held waiting for a frame's end."""
        return len(self._buf)


# --- Honeywell menu commands (SYN M CR) ---------------------------------------------------------

HONEYWELL_PREFIX = bytes([SYN, 0x4D, 0x0D])


def honeywell_query(tag: bytes = b"232BAD", storage: bytes = b".") -> bytes:
    """Build a `?` (current value) menu query: a harmless heartbeat that writes nothing."""
    if not (len(tag) == 6 and tag.isalnum() and tag.isascii()):
        raise ValueError(f"a Honeywell tag+subtag is 6 letters or digits, got {tag!r}")
    if storage not in (b".", b"!"):
        raise ValueError("storage is '.' (flash) or '!' (RAM)")
    return HONEYWELL_PREFIX + tag + b"?" + storage


def parse_honeywell_reply(frame: bytes) -> tuple[bytes, str]:
    """Return (echoed command, status) of a menu reply such as b'232BAD5\\x06.'."""
    if frame.startswith(HONEYWELL_PREFIX):
        frame = frame[len(HONEYWELL_PREFIX):]
    if len(frame) < 2 or frame[-1] not in (0x2E, 0x21):
        raise ProtocolError("a Honeywell reply ends with '.' or '!'")
    status = REPLY_STATUS.get(frame[-2])
    if status is None:
        raise ProtocolError(f"a Honeywell reply has ACK, ENQ or NAK before its terminator, "
                            f"got 0x{frame[-2]:02x}")
    return frame[:-2], status


# --- Zebra/Symbol SSI ---------------------------------------------------------------------------

SSI_HOST, SSI_SCANNER = 0x04, 0x00
# Opcodes (SE-923 guide; motorola-ssi-scanner lib/opcodes.js).
REQUEST_REVISION, REPLY_REVISION = 0xA3, 0xA4
CMD_ACK, CMD_NAK = 0xD0, 0xD1
SCAN_ENABLE, SCAN_DISABLE = 0xE9, 0xEA
DECODE_DATA = 0xF3
PARAM_SEND, PARAM_REQUEST = 0xC6, 0xC7
SSI_EVENT, RSM = 0xF6, 0x80
# Opcodes a packet may carry; a header with any other is junk, so resynchronising after line
# noise never waits for a "packet" whose length byte was really noise.
SSI_OPCODES = frozenset({REQUEST_REVISION, REPLY_REVISION, CMD_ACK, CMD_NAK, SCAN_ENABLE,
                         SCAN_DISABLE, DECODE_DATA, PARAM_SEND, PARAM_REQUEST, SSI_EVENT, RSM})
# What each opcode from the scanner means to the collector, one row each.
SSI_EVENTS = {REPLY_REVISION: "ack", CMD_ACK: "ack", CMD_NAK: "nak", DECODE_DATA: "scan"}


@dataclass(frozen=True)
class SsiPacket:
    """One SSI packet: Len | Opcode | Source | Status | Data | Checksum (high byte first)."""

    opcode: int
    source: int
    status: int
    data: bytes = b""


def ssi_checksum(body: bytes) -> int:
    """Return the 16-bit two's complement of the byte sum."""
    return (-sum(body)) & 0xFFFF


def ssi_build(opcode: int, data: bytes = b"", source: int = SSI_HOST, status: int = 0) -> bytes:
    """Build an SSI packet; ssi_build(REQUEST_REVISION) == bytes.fromhex('04A30400FF55')."""
    if len(data) > 251:
        raise ValueError("SSI data is at most 251 bytes")
    body = bytes([4 + len(data), opcode & 0xFF, source & 0xFF, status & 0xFF]) + bytes(data)
    return body + ssi_checksum(body).to_bytes(2, "big")


def ssi_parse(packet: bytes) -> SsiPacket:
    """Parse one whole SSI packet; raise ProtocolError naming what is wrong."""
    if len(packet) < 6:
        raise ProtocolError(f"an SSI packet is at least 6 bytes, got {len(packet)}")
    length = packet[0]
    if length < 4:
        raise ProtocolError(f"SSI length {length} is below 4")
    if len(packet) != length + 2:
        raise ProtocolError(f"SSI length says {length + 2} bytes, got {len(packet)}")
    if ssi_checksum(packet[:length]) != int.from_bytes(packet[length:], "big"):
        raise ProtocolError("bad SSI checksum")
    return SsiPacket(packet[1], packet[2], packet[3], bytes(packet[4:length]))


SSI_ACK = ssi_build(CMD_ACK)


class SsiFramer:
    """Split an SSI byte stream into packets; resynchronise past junk one byte at a time."""

    def __init__(self, symbology: str = "any", max_frame: int = 512, **_: object):
        if symbology not in SYMBOLOGIES:
            raise ValueError(f"unknown symbology {symbology!r}")
        self.symbology = symbology
        self.max_frame = max(258, int(max_frame))
        self._buf = bytearray()
        self._junk = False  # inside a run of bytes that are not a packet: counted once
        self.acks_due = 0  # DECODE_DATA packets the host must acknowledge

    def feed(self, data: bytes) -> list[Event]:
        """Take bytes from the port; return the events they complete."""
        events: list[Event] = []
        self._buf += data
        while self._buf:
            length = self._buf[0]
            if length < 4:
                self._skip(events, f"SSI length {length} is below 4")
                continue
            if len(self._buf) >= 3 and (self._buf[1] not in SSI_OPCODES
                                        or self._buf[2] not in (SSI_SCANNER, SSI_HOST)):
                self._skip(events, "not an SSI packet header")
                continue
            if len(self._buf) < length + 2:
                break
            try:
                packet = ssi_parse(bytes(self._buf[:length + 2]))
            except ProtocolError as err:
                self._skip(events, str(err))
                continue
            del self._buf[:length + 2]
            self._junk = False
            events.extend(self._event(packet))
        if len(self._buf) > self.max_frame:
            self._skip(events, "SSI buffer overflow")
            del self._buf[:]
        return events

    def _skip(self, events: list[Event], why: str) -> None:
        del self._buf[:1]
        if not self._junk:
            events.append(("malformed", why))
            self._junk = True

    def _event(self, packet: SsiPacket) -> Iterable[Event]:
        if packet.source != SSI_SCANNER:
            return ()  # Our own packets echoed back (a loopback) are not the scanner's.
        meaning = SSI_EVENTS.get(packet.opcode)
        if meaning == "scan":
            self.acks_due += 1
            # DECODE_DATA: the first byte is the bar code type, the rest the decoded data.
            why = check_frame(packet.data[1:], self.symbology) if packet.data else "empty frame"
            return (("malformed", why),) if why else (("scan", len(packet.data) - 1),)
        if meaning is not None:
            return (("reply", meaning),)
        return ()

    @property
    def buffered(self) -> int:
        """Bytes held waiting for a packet's end."""
        return len(self._buf)
