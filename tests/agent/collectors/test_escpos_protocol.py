"""The ESC/POS status parser: every pattern of PROTOCOLS.md section 1, framing, and random bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.collectors.escpos import models, protocol
from edge_agent.reading import Reading, utcnow, validate

# (sentence, {n: reply byte}, model, expected values (subset)).
PATTERNS = [
    ("a healthy Epson answers 16 12 12 12 and is ok with its drawer closed",
     {1: 0x16, 2: 0x12, 3: 0x12, 4: 0x12}, "epson-tm",
     {"device.status": "ok", "printer.online": True, "printer.cover": "closed",
      "printer.paper": "ok", "printer.cutter": "ok", "printer.error": "none",
      "printer.drawer": "closed"}),
    ("drawer pin 3 low reads as an open drawer by default",
     {1: 0x12}, "epson-tm", {"printer.drawer": "open", "device.status": "ok"}),
    ("bit 3 of DLE EOT 1 is offline",
     {1: 0x1E}, "epson-tm", {"printer.online": False, "device.status": "warning"}),
    ("bit 2 of DLE EOT 2 is an open cover",
     {1: 0x1A, 2: 0x16}, "epson-tm", {"printer.cover": "open", "device.status": "error"}),
    ("bit 5 of DLE EOT 2 is stopped by paper end",
     {2: 0x32}, "epson-tm", {"printer.paper": "out", "device.status": "error"}),
    ("bit 6 of DLE EOT 2 alone is a recoverable error",
     {2: 0x52, 3: 0x12}, "epson-tm", {"printer.error": "recoverable", "device.status": "error"}),
    ("bit 3 of DLE EOT 3 is an autocutter error, recoverable with DLE ENQ",
     {3: 0x1A}, "epson-tm", {"printer.cutter": "error", "printer.error": "recoverable"}),
    ("bit 5 of DLE EOT 3 is an unrecoverable error",
     {3: 0x32}, "epson-tm", {"printer.error": "unrecoverable", "device.status": "error"}),
    ("bit 6 of DLE EOT 3 is an auto-recoverable error such as head overheat",
     {3: 0x52}, "epson-tm", {"printer.error": "recoverable", "printer.cutter": "ok"}),
    ("bit 2 of DLE EOT 3 is a mechanical error on impact printers",
     {3: 0x16}, "epson-tm-impact", {"printer.error": "recoverable"}),
    ("bit 2 of DLE EOT 3 is ignored on thermal Epsons",
     {3: 0x16}, "epson-tm", {"printer.error": "none"}),
    ("bit 2 of DLE EOT 3 is the black-mark sensor on Citizen, not an error",
     {3: 0x16}, "citizen", {"printer.error": "none"}),
    ("DLE EOT 4 answering 12 means paper ok",
     {4: 0x12}, "epson-tm", {"printer.paper": "ok", "device.status": "ok"}),
    ("DLE EOT 4 answering 1E means paper near end",
     {4: 0x1E}, "epson-tm", {"printer.paper": "near_end", "device.status": "warning"}),
    ("DLE EOT 4 answering 72 means paper out",
     {4: 0x72}, "epson-tm", {"printer.paper": "out", "device.status": "error"}),
    ("DLE EOT 4 answering 7E means paper out even with near-end set",
     {4: 0x7E}, "epson-tm", {"printer.paper": "out"}),
    ("a printer with no paper answers 1A 32 7E to requests 1, 2 and 4",
     {1: 0x1A, 2: 0x32, 4: 0x7E}, "epson-tm",
     {"printer.online": False, "printer.paper": "out", "device.status": "error"}),
    ("Bixolon leaves bits 5 and 6 of DLE EOT 1 undefined, so FEED does not count",
     {1: 0x56}, "bixolon", {"printer.online": True, "device.status": "ok"}),
]


@pytest.mark.parametrize("replies, model, expected",
                         [p[1:] for p in PATTERNS], ids=[p[0] for p in PATTERNS])
def test_status_pattern_decodes_to_the_shared_vocabulary(replies, model, expected):
    for byte in replies.values():
        assert protocol.is_status_reply(byte)
    values = protocol.to_values(protocol.decode(replies, models.get(model).undefined))
    assert {k: values.get(k) for k in expected} == expected
    assert validate(Reading("p", "escpos", utcnow(), values)) == []


def test_drawer_polarity_follows_the_setting_and_none_hides_it():
    status = protocol.decode({1: 0x16})
    assert protocol.to_values(status, "high")["printer.drawer"] == "open"
    assert protocol.to_values(status, "low")["printer.drawer"] == "closed"
    assert "printer.drawer" not in protocol.to_values(status, "none")


def test_requests_are_the_documented_bytes():
    assert protocol.status_request(1) == b"\x10\x04\x01"
    assert protocol.status_request(4) == b"\x10\x04\x04"
    assert protocol.gs_i_request(67) == b"\x1d\x49\x43"
    assert protocol.recover_request() == b"\x10\x05\x01"
    with pytest.raises(ValueError):
        protocol.status_request(0)


CLASSES = [
    ("a DLE EOT reply is 0xx1xx10", 0x12, protocol.STATUS),
    ("a reply with every variable bit set is still a reply", 0x7E, protocol.STATUS),
    ("an ASB block starts 0xx1xx00", 0x14, protocol.ASB_HEAD),
    ("XON is 11", 0x11, protocol.XON_BYTE),
    ("XOFF is 13", 0x13, protocol.XOFF_BYTE),
    ("ASB bytes 2-4 and GS I replies are 0xx0xxxx", 0x0C, protocol.OTHER),
    ("a byte with bit 7 set is nothing we asked for", 0x92, protocol.OTHER),
]


@pytest.mark.parametrize("byte, kind", [c[1:] for c in CLASSES], ids=[c[0] for c in CLASSES])
def test_received_bytes_are_told_apart(byte, kind):
    assert protocol.classify(byte) == kind


FRAMES = [
    ("a lone reply is found", b"\x16", 0x16, 0, 0, False),
    ("an ASB block before the reply is skipped", b"\x14\x00\x03\x00\x12", 0x12, 1, 0, False),
    ("XON and XOFF before the reply are skipped", b"\x11\x13\x1e", 0x1E, 0, 0, False),
    ("garbage before the reply is counted and skipped", b"\x00\xff\x41\x72", 0x72, 0, 3, False),
    ("an ASB head at the end asks for more bytes", b"\x14\x00", None, 0, 0, True),
    ("an ASB head followed by non-ASB bytes is garbage", b"\x14\xff\xff\xff\x12", 0x12, 0, 4,
     False),
    ("nothing is no reply", b"", None, 0, 0, False),
    ("the first of two replies is the answer; the rest is stale", b"\x12\x7e", 0x12, 0, 0, False),
]


@pytest.mark.parametrize("data, reply, asb, garbage, more", [f[1:] for f in FRAMES],
                         ids=[f[0] for f in FRAMES])
def test_reply_framing(data, reply, asb, garbage, more):
    scan = protocol.find_status_reply(data)
    assert (scan.reply, scan.asb_blocks, scan.garbage, scan.need_more) == (reply, asb, garbage,
                                                                             more)


TEXTS = [
    ("a GS I text reply is 5F, ASCII, 00", b"\x5fTM-T88V\x00", "TM-T88V", False, False),
    ("XON before the text reply is skipped", b"\x11\x5fTM-T20\x00", "TM-T20", False, False),
    ("a text reply without its 00 needs more bytes", b"\x5fTM-T", None, True, False),
    ("a text reply that does not start with 5F is invalid", b"\x12abc\x00", None, False, True),
    ("non-ASCII in a text reply is invalid", b"\x5f\xff\xfe\x00", None, False, True),
    ("an endless text reply is invalid", b"\x5f" + b"A" * 200, None, False, True),
]


@pytest.mark.parametrize("data, text, more, invalid", [t[1:] for t in TEXTS],
                         ids=[t[0] for t in TEXTS])
def test_gs_i_text_replies(data, text, more, invalid):
    scan = protocol.find_text_reply(data)
    assert (scan.text, scan.need_more, scan.invalid) == (text, more, invalid)


def test_gs_i_one_byte_replies_must_have_bits_4_and_7_clear():
    assert protocol.parse_id_byte(0x20) == 0x20
    assert protocol.parse_id_byte(0x12) is None
    assert protocol.parse_id_byte(0xA0) is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_never_break_the_reply_scanner(data):
    scan = protocol.find_status_reply(data)
    assert 0 <= scan.used <= len(data)
    if scan.reply is not None:
        assert protocol.is_status_reply(scan.reply)
    text = protocol.find_text_reply(data)
    assert text.text is None or text.text.isprintable()


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from((1, 2, 3, 4)), st.integers(0, 255)),
       st.sampled_from(sorted(models.MODELS)), st.sampled_from(("low", "high", "none")))
def test_any_reply_bytes_decode_to_a_valid_reading(replies, model, drawer):
    values = protocol.to_values(protocol.decode(replies, models.get(model).undefined), drawer)
    assert validate(Reading("p", "escpos", utcnow(), values)) == []
    assert values["device.status"] in ("ok", "warning", "error")
