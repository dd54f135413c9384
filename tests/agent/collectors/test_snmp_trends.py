"""SNMP page rate, supply depletion and alert-code events over successive polls."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.collectors.snmp.protocol import Trends
from edge_protocol.vocabulary import check_value

H = 3600.0


def test_page_rate_and_toner_depletion_need_six_hours_then_follow_the_counters():
    t = Trends()
    out = t.supply_values(0.0, {"printer.page_count": 1000, "supply.1.level_pct": 80.0,
                                "supply.1.class": "consumed"})
    assert out == {"supply.1.pct_per_day": None, "supply.1.days_to_empty": None}
    t.supply_values(3 * H, {"printer.page_count": 1100, "supply.1.level_pct": 79.5})
    out = t.supply_values(12 * H, {"printer.page_count": 1500, "supply.1.level_pct": 78.0})
    assert out["printer.pages_per_day"] == 1000.0
    assert out["supply.1.pct_per_day"] == 4.0 and out["supply.1.days_to_empty"] == 19.5


def test_a_new_cartridge_or_a_reset_counter_starts_the_series_again():
    t = Trends()
    t.supply_values(0.0, {"printer.page_count": 5000, "supply.1.level_pct": 10.0})
    t.supply_values(12 * H, {"printer.page_count": 5600, "supply.1.level_pct": 8.0})
    out = t.supply_values(13 * H, {"printer.page_count": 20, "supply.1.level_pct": 100.0})
    assert "printer.pages_per_day" not in out and out["supply.1.pct_per_day"] is None


def test_alert_rows_are_counted_once_each_and_bits_when_there_is_no_table():
    t = Trends()
    assert t.count({"alert.1.code": "jam"})["printer.jam_count"] == 1
    assert t.count({"alert.1.code": "jam"})["printer.jam_count"] == 1
    c = t.count({"alert.1.code": "jam", "alert.2.code": "doorOpen"})
    assert (c["printer.jam_count"], c["printer.cover_opens"]) == (1, 1)
    t.count({})
    c = t.count({"printer.jam": True})
    assert c["printer.jam_count"] == 2
    c = t.count({"printer.jam": True, "printer.service_requested": True})
    assert (c["printer.jam_count"], c["printer.service_requests"]) == (2, 1)


@given(st.lists(st.tuples(st.floats(0, 1e7), st.integers(0, 10 ** 9),
                          st.floats(0, 100)), max_size=30))
def test_every_rate_is_a_valid_reading_value(samples):
    t = Trends()
    for now, pages, level in sorted(samples):
        out = t.supply_values(now, {"printer.page_count": pages, "supply.1.level_pct": level})
        for k, v in out.items():
            assert check_value(k, v) is None, (k, v)
