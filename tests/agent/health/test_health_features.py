"""Health features: incremental windows, bounded memory, counters, and a restart that keeps them."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from edge_agent.health import features as F
from edge_agent.reading import Reading
from edge_agent.state import db as statedb

T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)


def reading(hours: float, device: str = "p1", stale: bool = False, **values) -> Reading:
    vals = {k.replace("__", "."): v for k, v in values.items()}
    return Reading(device, "escpos", T0 + timedelta(hours=hours), vals, stale,
                   "timeout" if stale else None)


def feature(vec, name):
    return vec[F.NAMES.index(name)]


def test_cutter_error_counter_increments_become_a_daily_rate():
    w = F.DeviceWindows()
    for h in range(48):
        w.update(reading(h, printer__cutter_errors=h // 2))  # one error every 2 hours
    assert abs(feature(w.vector(), "cutter_errors_per_day") - 12) < 1.5


def test_a_counter_that_goes_down_was_reset_and_counts_from_zero():
    w = F.DeviceWindows()
    for h, count in enumerate([100, 104, 3, 5]):
        w.update(reading(h, printer__jam_count=count))
    # 4 before the reset, then 3 and 2 after it: 9 jams in 3 hours, over the 6-hour minimum.
    assert math.isclose(feature(w.vector(), "jams_per_day"), 9 / 0.25)


def test_without_a_counter_cutter_state_transitions_are_counted():
    w = F.DeviceWindows()
    states = ["ok", "error", "error", "ok", "error", "ok"]
    for h, s in enumerate(states):
        w.update(reading(h, printer__cutter=s))
    assert math.isclose(feature(w.vector(), "cutter_errors_per_day"), 2 / 0.25)


def test_windows_keep_at_most_a_week_of_buckets_whatever_the_poll_rate():
    w = F.DeviceWindows()
    for i in range(20 * 24 * 4):  # 20 days of 15-minute polls
        w.update(reading(i / 4, host__temp_c=50.0))
    assert len(w.buckets) <= F.N_BUCKETS
    assert len(w.to_json()) < 8000


def test_wear_counters_are_read_against_rated_life():
    w = F.DeviceWindows()
    w.update(reading(0, printer__head_km=75.0, printer__cut_count=1_500_000))
    vec = w.vector()
    assert feature(vec, "head_wear") == 0.5 and feature(vec, "cutter_wear") == 0.75
    assert feature(vec, "device_class") == F.CLASSES["printer"]


def test_a_rising_temperature_shows_as_a_trend_against_the_previous_days():
    w = F.DeviceWindows()
    for h in range(7 * 24):
        w.update(reading(h, host__temp_c=50.0 if h < 6 * 24 else 65.0))
    assert feature(w.vector(), "host_temp_trend_c") > 10


def test_windows_survive_a_restart_through_the_state_database(tmp_path):
    path = tmp_path / "agent.db"
    store = F.FeatureStore()
    for h in range(72):
        store.observe(reading(h, printer__cutter_errors=h, printer__head_km=10.0 + h / 100))
        store.observe(reading(h, device="reg", host__temp_c=40.0 + h / 10, host__disk_pct=50.0))
    db = statedb.connect(path)
    assert store.save(db, 1.0) == 2
    db.close()
    before = {d: store.windows[d].vector() for d in store.windows}

    db = statedb.connect(path)
    restored = F.FeatureStore()
    assert restored.load(db) == 2
    db.close()
    assert {d: restored.windows[d].vector() for d in restored.windows} == before
    # The restored windows go on counting from the saved counters, not from zero.
    restored.observe(reading(72, printer__cutter_errors=80))
    assert feature(restored.windows["p1"].vector(), "cutter_errors_per_day") > \
        feature(before["p1"], "cutter_errors_per_day")


def test_a_damaged_saved_window_is_skipped_and_the_others_load(tmp_path):
    db = statedb.connect(tmp_path / "agent.db")
    db.execute("INSERT INTO feature_windows VALUES ('bad', 'escpos', '{not json', 0)")
    db.execute("INSERT INTO feature_windows VALUES ('old', 'escpos', '{\"v\": 9}', 0)")
    good = F.DeviceWindows()
    good.update(reading(0, printer__head_km=1.0))
    db.execute("INSERT INTO feature_windows VALUES ('good', 'escpos', ?, 0)", (good.to_json(),))
    store = F.FeatureStore()
    assert store.load(db) == 1 and list(store.windows) == ["good"]
    db.close()


values = st.dictionaries(
    st.sampled_from(["printer.cutter_errors", "printer.jam_count", "scanner.reads",
                     "scanner.decode_errors", "host.fan_rpm", "host.smart.pending",
                     "host.temp_c", "host.disk_pct", "poll.latency_ms", "printer.cutter",
                     "printer.jam", "printer.head_km", "host.net.latency_ms"]),
    st.one_of(st.integers(-10**9, 10**9), st.floats(-1e6, 1e6, allow_nan=False),
              st.booleans(), st.sampled_from(["ok", "error"]), st.none()))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 24 * 10), values, st.booleans()), max_size=40))
def test_any_readings_give_a_finite_vector_of_the_right_length(items):
    w = F.DeviceWindows()
    for hours, vals, stale in sorted(items, key=lambda x: x[0]):
        w.update(Reading("d", "escpos", T0 + timedelta(hours=hours), vals, stale,
                         "x" if stale else None))
    vec = F.finite(w.vector())
    assert len(vec) == len(F.NAMES) and all(math.isfinite(v) for v in vec)
    again = F.DeviceWindows.from_json(w.to_json())
    assert F.finite(again.vector()) == vec


def test_a_v1_state_database_gains_the_health_tables_and_keeps_its_rows(tmp_path):
    import sqlite3

    path = tmp_path / "agent.db"
    old = sqlite3.connect(path, isolation_level=None)
    statedb.MIGRATIONS[0](old)
    old.execute("PRAGMA user_version=1")
    old.execute("INSERT INTO device_state VALUES ('p1', 'escpos', '{}', NULL, 0, 0, 1.0)")
    old.close()
    db = statedb.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == statedb.SCHEMA_VERSION >= 2
    assert db.execute("SELECT device FROM device_state").fetchall() == [("p1",)]
    assert db.execute("SELECT count(*) FROM feature_windows").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM health").fetchone()[0] == 0
    db.close()


def test_a_replaced_device_with_another_serial_starts_from_empty_windows():
    store = F.FeatureStore()
    for h in range(24):
        store.observe(reading(h, printer__cutter_errors=h * 2, device__serial="A1"))
    assert feature(store.windows["p1"].vector(), "cutter_errors_per_day") > 20
    for h in range(24, 30):
        store.observe(reading(h, printer__cutter_errors=0, device__serial="B2"))
    assert feature(store.windows["p1"].vector(), "cutter_errors_per_day") == 0
    assert F.DeviceWindows.from_json(store.windows["p1"].to_json()).serial == "B2"
