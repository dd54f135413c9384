"""The simulated printer's engine: the bytes it answers, its recovery, its control commands."""

from __future__ import annotations

import pytest

from edge_agent.collectors.escpos import protocol
from edge_agent.simulators.escpos_printer import PrinterEngine


def replies(engine: PrinterEngine, data: bytes) -> bytes:
    return b"".join(out for _, out in engine.feed(data))


ANSWERS = [
    ("a healthy printer answers DLE EOT 1-4 with 16 12 12 12",
     (), b"\x10\x04\x01\x10\x04\x02\x10\x04\x03\x10\x04\x04", b"\x16\x12\x12\x12"),
    ("a printer without paper answers 1A 32 7E to requests 1, 2 and 4",
     ("paper out", "drawer open"), b"\x10\x04\x01\x10\x04\x02\x10\x04\x04", b"\x1a\x32\x7e"),
    ("near end of paper is 1E", ("paper near_end",), b"\x10\x04\x04", b"\x1e"),
    ("GS I 67 answers the model as 5F text 00", (), b"\x1dIC", b"\x5fTM-T88V\x00"),
    ("GS I 1 answers one byte with bits 4 and 7 clear", (), b"\x1dI\x01", b"\x20"),
    ("a request split across two reads is still answered", (), b"\x10\x04", b""),
    ("print data is not answered", (), b"hello\n\x1bd\x03", b""),
    ("a sleeping printer answers nothing", ("sleep",), b"\x10\x04\x01", b""),
]


@pytest.mark.parametrize("commands, sent, answer", [a[1:] for a in ANSWERS],
                         ids=[a[0] for a in ANSWERS])
def test_the_simulator_answers_like_the_manuals_say(commands, sent, answer):
    engine = PrinterEngine()
    for c in commands:
        assert engine.command(c).startswith("ok")
    assert replies(engine, sent) == answer


def test_the_rest_of_a_split_request_completes_it():
    engine = PrinterEngine()
    assert replies(engine, b"\x10\x04") == b""
    assert replies(engine, b"\x04") == b"\x12"


def test_dle_enq_recovers_from_a_cutter_jam():
    engine = PrinterEngine()
    engine.command("jam")
    assert protocol.decode({3: replies(engine, b"\x10\x04\x03")[0]}).cutter_error
    replies(engine, protocol.recover_request())
    assert not protocol.decode({3: replies(engine, b"\x10\x04\x03")[0]}).cutter_error


def test_a_sleeping_printer_wakes_on_any_byte_and_answers_the_next_request():
    engine = PrinterEngine()
    engine.command("sleep")
    assert replies(engine, b"\x00") == b""
    assert replies(engine, b"\x10\x04\x01") == b"\x16"


def test_asb_noise_is_a_well_formed_block_the_collector_skips():
    engine = PrinterEngine()
    engine.command("asb on")
    scan = protocol.find_status_reply(replies(engine, b"\x10\x04\x02"))
    assert (scan.reply, scan.asb_blocks, scan.flow, scan.garbage) == (0x12, 1, 1, 0)


def test_paper_runs_out_over_simulated_time():
    engine = PrinterEngine()
    engine.wear.paper_m_per_hour = 10.0
    engine.advance(7.5 * 3600)
    assert engine.paper == "near_end"
    engine.advance(1 * 3600)
    assert engine.paper == "out"


@pytest.mark.parametrize("text, answer", [
    ("explode", "unknown command"),
    ("late soon", "not a number"),
    ("paper plenty", "unknown command"),
], ids=["an unknown verb", "a late delay that is not a number", "an unknown paper state"])
def test_bad_control_commands_are_answered_not_raised(text, answer):
    assert PrinterEngine().command(text).startswith(answer)


def test_the_power_save_timer_puts_an_idle_printer_to_sleep():
    engine = PrinterEngine()
    engine.sleep_after_s = 0.0
    engine._last_rx -= 1.0  # as if the last byte came a second ago
    assert replies(engine, b"\x10\x04\x01") == b""
    assert engine.faults.asleep is False  # that request woke it
