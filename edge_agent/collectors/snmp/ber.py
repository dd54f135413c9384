"""SNMP v1/v2c GET, GETNEXT and GETBULK requests and their responses in BER; pure and bounded.

pysnmp spends 1.5-2.5 ms of CPU per request, mostly in pyasn1's general BER machinery; a poll of
40 printers every 10 s then costs more CPU than a Go poller (docs/benchmarks.md). A GET and its
response use a handful of types, so this module encodes and decodes exactly those, refusing
anything malformed with BerError. Every v1/v2c request goes through here; only SNMPv3 uses pysnmp.
"""

from __future__ import annotations

from typing import Union

Value = Union[int, bytes, str, None]

GET_REQUEST, GET_NEXT_REQUEST, GET_RESPONSE, GET_BULK_REQUEST = 0xA0, 0xA1, 0xA2, 0xA5
_SEQUENCE, _INTEGER, _OCTETS, _NULL, _OID = 0x30, 0x02, 0x04, 0x05, 0x06
_UNSIGNED = (0x41, 0x42, 0x43, 0x46)   # Counter32, Gauge32, TimeTicks, Counter64
_BYTES = (_OCTETS, 0x40, 0x44)         # OCTET STRING, IpAddress, Opaque
_ABSENT = (_NULL, 0x80, 0x81, 0x82)    # NULL, noSuchObject, noSuchInstance, endOfMibView
MAX_MESSAGE = 65507


class BerError(ValueError):
    """A message that is not a well-formed SNMP GET response."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _length(len(body)) + body


def _integer(value: int) -> bytes:
    return _tlv(_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def encode_oid(oid: str) -> bytes:
    """BER body of a dotted OID such as 1.3.6.1.2.1.1.3.0."""
    try:
        parts = [int(p) for p in oid.strip(".").split(".")]
    except ValueError as err:
        raise BerError(f"not an OID: {oid!r}") from err
    if len(parts) < 2 or parts[0] > 2 or parts[1] >= 40 or min(parts) < 0:
        raise BerError(f"not an OID: {oid!r}")
    out = bytearray()
    for n in [parts[0] * 40 + parts[1], *parts[2:]]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def get_request(version: int, community: bytes, request_id: int, oids: list[str],
                pdu_type: int = GET_REQUEST, repetitions: int = 0) -> bytes:
    """Encode a GetRequest, GetNextRequest or (v2c) GetBulkRequest; version 0 is v1, 1 is v2c.

    For GETBULK, non-repeaters is 0 and max-repetitions is `repetitions` (they take the places
    of error-status and error-index).
    """
    if pdu_type == GET_BULK_REQUEST and version == 0:
        raise BerError("GETBULK does not exist in SNMPv1")
    varbinds = b"".join(_tlv(_SEQUENCE, _tlv(_OID, encode_oid(o)) + b"\x05\x00") for o in oids)
    pdu = _tlv(pdu_type, _integer(request_id) + _integer(0) + _integer(repetitions)
               + _tlv(_SEQUENCE, varbinds))
    return _tlv(_SEQUENCE, _integer(version) + _tlv(_OCTETS, community) + pdu)


def _read(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read one TLV header at pos; return (tag, body start, body end), all within end."""
    if pos + 2 > end:
        raise BerError("truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first & 0x80:
        count = first & 0x7F
        if count == 0 or count > 3 or pos + count > end:
            raise BerError("bad length")
        size = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    else:
        size = first
    if pos + size > end:
        raise BerError("length past the end")
    return tag, pos, pos + size


def _expect(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    got, start, stop = _read(data, pos, end)
    if got != tag:
        raise BerError(f"expected tag 0x{tag:02x}, got 0x{got:02x}")
    return start, stop


def _int(body: bytes) -> int:
    if not body or len(body) > 9:
        raise BerError("bad integer")
    return int.from_bytes(body, "big", signed=True)


def decode_oid(body: bytes) -> str:
    """Dotted text of an OID's BER body."""
    if not body or len(body) > 256 or body[-1] & 0x80:
        raise BerError("bad OID")
    parts, n = [], 0
    for byte in body:
        n = (n << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(n)
            n = 0
    first = parts[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(p) for p in head + parts[1:])


def _value(tag: int, body: bytes) -> Value:
    if tag == _INTEGER:
        return _int(body)
    if tag in _UNSIGNED:
        if len(body) > 9:
            raise BerError("bad counter")
        return int.from_bytes(body, "big")
    if tag in _BYTES:
        return bytes(body)
    if tag == _OID:
        return decode_oid(body)
    if tag in _ABSENT:
        return None
    raise BerError(f"unexpected value type 0x{tag:02x}")


def decode_response(data: bytes) -> tuple[int, int, int, list[tuple[str, Value]]]:
    """Decode a GetResponse: (request id, error status, error index, [(oid, value)])."""
    if len(data) > MAX_MESSAGE:
        raise BerError("message too long")
    start, end = _expect(data, 0, len(data), _SEQUENCE)
    s, e = _expect(data, start, end, _INTEGER)
    if _int(data[s:e]) not in (0, 1):
        raise BerError("not SNMPv1 or v2c")
    _, e = _expect(data, e, end, _OCTETS)
    pos, pdu_end = _expect(data, e, end, GET_RESPONSE)
    fields = []
    for _ in range(3):
        s, pos = _expect(data, pos, pdu_end, _INTEGER)
        fields.append(_int(data[s:pos]))
    pos, list_end = _expect(data, pos, pdu_end, _SEQUENCE)
    varbinds = []
    while pos < list_end:
        s, pos = _expect(data, pos, list_end, _SEQUENCE)
        o_start, o_end = _expect(data, s, pos, _OID)
        tag, v_start, v_end = _read(data, o_end, pos)
        if v_end != pos:
            raise BerError("extra bytes in a varbind")
        varbinds.append((decode_oid(data[o_start:o_end]), _value(tag, data[v_start:v_end])))
    return fields[0], fields[1], fields[2], varbinds
