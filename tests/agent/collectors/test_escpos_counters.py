"""Epson maintenance counters (GS g 2) over TCP and a pty against the simulator, and the parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.collectors.escpos import protocol
from edge_agent.reading import validate

from test_escpos_collector import run_with_printer

TRANSPORTS = ("tcp", "pty")


def counters_story(*commands, polls=2):
    async def body(sim, collector):
        out = []
        for _ in range(polls):
            reading = await collector.poll()
            assert validate(reading) == []
            out.append(reading)
        return out
    return body


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_counters_are_read_on_the_first_poll_and_mapped_to_wear(transport):
    readings = run_with_printer(transport, counters_story(), "cuts 1840000",
                                "cuts_per_hour 0")
    first, second = readings
    assert not first.stale
    v = first.values
    assert v["printer.cut_count"] == 1_840_000 and v["printer.counter.178"] == 1_840_000
    assert v["printer.operating_hours"] == 0 and "printer.head_km" in v
    # Hourly cadence: the next poll a moment later reads status only.
    assert "printer.cut_count" not in second.values and not second.stale


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_counters_follow_simulated_wear(transport):
    async def body(sim, collector):
        sim.engine.wear.paper_m_per_hour = 2.0
        sim.engine.wear.roll_m = sim.engine.wear.paper_m = 10_000.0
        sim.engine.wear.cuts_per_hour = 100.0
        sim.engine.advance(10 * 3600)
        reading = await collector.poll()
        return reading.values

    v = run_with_printer(transport, body)
    assert v["printer.operating_hours"] == 10
    assert v["printer.cut_count"] == 1000
    assert v["printer.head_km"] == pytest.approx(0.020, abs=0.001)  # 20 m of paper


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", ["garbage", "partial", "silent"])
def test_bad_counter_replies_leave_the_status_reading_whole(transport, mode):
    readings = run_with_printer(transport, counters_story(), f"counters {mode}",
                                "paper near_end")
    first, second = readings
    for r in (first, second):
        assert not r.stale and r.values["printer.paper"] == "near_end"
        assert "printer.cut_count" not in r.values
        assert r.values["device.status"] in ("ok", "warning")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_model_without_gs_g_is_never_asked(transport):
    async def body(sim, collector):
        before = sim.engine.received
        await collector.poll()
        return sim.engine.received - before

    legacy = run_with_printer(transport, body, model="epson-tm-legacy", identify=False)
    assert legacy == 4 * 3  # four DLE EOT requests, no GS g
    epson = run_with_printer(transport, body, identify=False)
    assert epson == 4 * 3 + 4 * 6  # and four GS g 2 requests


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_error_onsets_are_counted_once_each(transport):
    async def body(sim, collector):
        got = []
        for cmd in ("jam", None, "clear", "jam", "clear", None):
            if cmd:
                sim.command(cmd)
            got.append((await collector.poll()).values["printer.cutter_errors"])
        return got

    assert run_with_printer(transport, body) == [1, 1, 1, 2, 2, 2]


@given(st.integers(0, 4_294_967_295), st.sampled_from([b"", b"\x11", b"\x13\x11"]))
def test_a_counter_reply_round_trips(value, flow):
    scan = protocol.find_counter_reply(flow + b"\x5f" + str(value).encode() + b"\x00")
    assert scan.value == value and not scan.invalid and not scan.need_more


@settings(max_examples=500)
@given(st.binary(max_size=40))
def test_the_counter_parser_never_raises_and_returns_at_most_ten_digits(data):
    scan = protocol.find_counter_reply(data)
    assert 0 <= scan.used <= len(data)
    if scan.value is not None:
        assert 0 <= scan.value < 10 ** 10 and not scan.invalid and not scan.need_more
        assert data[scan.used - 1] == 0
    else:
        assert scan.invalid or scan.need_more


@given(st.integers(0, 10 ** 10 - 1), st.integers(1, 11))
def test_a_truncated_reply_needs_more_and_never_reads_a_wrong_value(value, cut):
    whole = b"\x5f" + str(value).encode() + b"\x00"
    part = whole[:min(cut, len(whole) - 1)]
    assert protocol.find_counter_reply(part).need_more


def test_garbage_and_overlong_replies_are_invalid():
    for data in (b"\x5f\x00", b"\x5f12a\x00", b"A123\x00", b"\x5f" + b"1" * 11 + b"\x00"):
        assert protocol.find_counter_reply(data).invalid, data


def test_the_request_bytes_follow_the_manual():
    assert protocol.counter_request(178) == bytes.fromhex("1d673200b200") and \
        protocol.counter_request(198) == bytes.fromhex("1d673200c600")
    with pytest.raises(ValueError):
        protocol.counter_request(70000)
