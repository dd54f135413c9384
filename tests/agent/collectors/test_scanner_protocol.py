"""Scanner byte streams: suffix framing, malformed frames, Honeywell and Zebra SSI packets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.collectors.scanner import protocol as p
from edge_agent.errors import ProtocolError

EAN13 = b"4006381333931"

FRAMES = {
    "a good EAN-13 passes the EAN/UPC check": (b"4006381333931", "ean_upc", None),
    "a good UPC-A passes the EAN/UPC check": (b"036000291452", "ean_upc", None),
    "a good EAN-8 passes the EAN/UPC check": (b"96385074", "ean_upc", None),
    "a misread last digit is a bad check digit": (b"4006381333932", "ean_upc", "bad check digit"),
    "letters are not an EAN/UPC number": (b"ABC123", "ean_upc", "not an EAN/UPC number (6 bytes)"),
    "a Code 128 text passes when any printable text is allowed": (b"PN-1234/ab", "any", None),
    "a GS1 separator is allowed inside a frame": (b"0109506000134352\x1d10AB", "any", None),
    "a NUL byte is non-printable junk": (b"40\x0063", "any", "non-printable byte 0x00"),
    "a high byte is non-printable junk": (b"\xff12", "any", "non-printable byte 0xff"),
    "an empty frame is malformed": (b"", "any", "empty frame"),
}


@pytest.mark.parametrize("frame,symbology,why", FRAMES.values(), ids=FRAMES.keys())
def test_check_frame_accepts_good_codes_and_names_what_is_wrong_with_bad_ones(frame, symbology,
                                                                              why):
    assert p.check_frame(frame, symbology) == why


@pytest.mark.parametrize("suffix", ["cr", "lf", "crlf"])
def test_text_framer_splits_at_the_suffix_even_when_reads_cut_frames_anywhere(suffix):
    end = p.SUFFIXES[suffix]
    stream = (EAN13 + end) * 3 + b"40063\x01" + end
    for cut in range(1, len(stream)):
        framer = p.TextFramer(suffix, "ean_upc")
        events = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert events == [("scan", 13)] * 3 + [("malformed", "non-printable byte 0x01")], cut


def test_text_framer_counts_an_overlong_frame_once_and_recovers_at_the_next_suffix():
    framer = p.TextFramer("cr", max_frame=16)
    events = []
    for _ in range(10):
        events += framer.feed(b"A" * 10)
        assert framer.buffered <= 16
    events += framer.feed(b"\rSHORT\r")
    assert events == [("malformed", "frame longer than 16 bytes"), ("scan", 5)]


def test_text_framer_events_never_carry_the_scanned_data():
    framer = p.TextFramer("cr")
    events = framer.feed(b"CUSTOMER-LOYALTY-12345\r")
    assert events == [("scan", 22)]
    assert "CUSTOMER" not in repr(events)


def test_honeywell_query_is_syn_m_cr_tag_question_mark_terminator():
    assert p.honeywell_query(b"232BAD") == b"\x16M\r232BAD?."


@pytest.mark.parametrize("reply,status", [(b"232BAD5\x06.", "ack"), (b"232BAX?\x05.", "enq"),
                                          (b"232BAD99\x15!", "nak"), (b"\x16M\r232BAD5\x06.", "ack")],
                         ids=["ACK means answered", "ENQ means an unknown tag",
                              "NAK means a bad value", "the SYN M CR prefix is allowed"])
def test_honeywell_reply_status_is_read_from_the_byte_before_the_terminator(reply, status):
    assert p.parse_honeywell_reply(reply)[1] == status


def test_text_framer_in_honeywell_mode_tells_replies_from_scans():
    framer = p.TextFramer("cr", honeywell_replies=True)
    events = framer.feed(EAN13 + b"\r232BAD5\x06." + EAN13 + b"\r")
    assert events == [("scan", 13), ("reply", "ack"), ("scan", 13)]


def test_ssi_request_revision_packet_is_the_documented_probe():
    assert p.ssi_build(p.REQUEST_REVISION) == bytes.fromhex("04A30400FF55")


def test_ssi_parse_rejects_a_corrupted_checksum():
    packet = bytearray(p.ssi_build(p.REPLY_REVISION, b"REV1", source=p.SSI_SCANNER))
    packet[-1] ^= 1
    with pytest.raises(ProtocolError, match="checksum"):
        p.ssi_parse(bytes(packet))


def test_ssi_framer_resynchronises_after_line_noise_and_counts_the_noise_once():
    good = p.ssi_build(p.DECODE_DATA, b"\x0b" + EAN13, source=p.SSI_SCANNER)
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    framer = p.SsiFramer("ean_upc")
    events = framer.feed(bytes(bad) + good + p.ssi_build(p.CMD_ACK, source=p.SSI_SCANNER))
    assert events == [("malformed", "bad SSI checksum"), ("scan", 13), ("reply", "ack")]
    assert framer.acks_due == 1


# --- Property tests: random bytes never raise and never grow a buffer past its bound. ---------

KINDS = {"scan", "malformed", "reply"}


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=80), max_size=20),
       suffix=st.sampled_from(["cr", "lf", "crlf"]),
       symbology=st.sampled_from(["any", "ean_upc"]),
       honeywell=st.booleans())
def test_text_framer_survives_any_bytes_with_a_bounded_buffer(chunks, suffix, symbology, honeywell):
    framer = p.TextFramer(suffix, symbology, max_frame=32, honeywell_replies=honeywell)
    for chunk in chunks:
        for kind, detail in framer.feed(chunk):
            assert kind in KINDS
            if kind == "scan":
                assert isinstance(detail, int) and detail > 0
            elif kind == "reply":
                assert detail in ("ack", "enq", "nak")
            else:
                assert isinstance(detail, str) and detail
        assert framer.buffered <= 32


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=300), max_size=12))
def test_ssi_framer_survives_any_bytes_with_a_bounded_buffer(chunks):
    framer = p.SsiFramer(max_frame=300)
    for chunk in chunks:
        for kind, _ in framer.feed(chunk):
            assert kind in KINDS
        assert framer.buffered <= 300


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_ssi_parse_returns_a_packet_or_a_protocol_error_for_any_bytes(data):
    try:
        packet = p.ssi_parse(data)
    except ProtocolError:
        return
    assert p.ssi_build(packet.opcode, packet.data, packet.source, packet.status) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_honeywell_reply_parser_returns_a_status_or_a_protocol_error_for_any_bytes(data):
    try:
        _, status = p.parse_honeywell_reply(data)
    except ProtocolError:
        return
    assert status in ("ack", "enq", "nak")


@settings(max_examples=200, deadline=None)
@given(opcode=st.integers(0, 255), source=st.sampled_from([0, 4]), status=st.integers(0, 255),
       data=st.binary(max_size=251))
def test_every_built_ssi_packet_parses_back_to_itself(opcode, source, status, data):
    packet = p.ssi_parse(p.ssi_build(opcode, data, source, status))
    assert (packet.opcode, packet.source, packet.status, packet.data) == (opcode, source, status,
                                                                          data)


def split_at(stream: bytes, cuts: list[int]) -> list[bytes]:
    """Cut a stream where a port's reads might have cut it."""
    pieces, last = [], 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts):
        pieces.append(stream[last:cut])
        last = cut
    return pieces + [stream[last:]]


@settings(max_examples=300, deadline=None)
@given(stream=st.lists(st.sampled_from([EAN13, b"\r", b"\n", b"\x06", b".", b"!", b"\x05", b"\x00",
                                        b"232BAD5", b"x"]), max_size=40).map(b"".join),
       cuts=st.lists(st.integers(0, 400), max_size=6),
       suffix=st.sampled_from(["cr", "lf", "crlf"]), honeywell=st.booleans())
def test_text_framer_gives_the_same_events_however_the_reads_cut_the_stream(stream, cuts, suffix,
                                                                           honeywell):
    whole = p.TextFramer(suffix, max_frame=65536, honeywell_replies=honeywell).feed(stream)
    framer = p.TextFramer(suffix, max_frame=65536, honeywell_replies=honeywell)
    pieces = split_at(stream, cuts)
    assert [e for piece in pieces for e in framer.feed(piece)] == whole


@settings(max_examples=200, deadline=None)
@given(packets=st.lists(st.tuples(st.sampled_from([p.DECODE_DATA, p.CMD_ACK, p.REPLY_REVISION]),
                                  st.binary(max_size=40)), max_size=8),
       cuts=st.lists(st.integers(0, 600), max_size=6))
def test_ssi_framer_gives_the_same_events_however_the_reads_cut_the_stream(packets, cuts):
    stream = b"".join(p.ssi_build(op, data, source=p.SSI_SCANNER) for op, data in packets)
    whole = p.SsiFramer().feed(stream)
    assert len(whole) == len(packets)
    framer = p.SsiFramer()
    pieces = split_at(stream, cuts)
    assert [e for piece in pieces for e in framer.feed(piece)] == whole
