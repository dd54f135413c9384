"""`edge-agent replay` and `edge-agent model info`, run as a user would, on simulated readings."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from hypothesis import given, settings, strategies as st

from conftest import run_cli
import edge_protocol as wire
from edge_agent.cli.replay import parse_line
from edge_agent.errors import ReadingError
from edge_agent.reading import parse_ts
from models import fleetsim


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """A month of readings every 30 min: a printer whose cutter wears out on day 24, and a
    healthy one."""
    path = tmp_path_factory.mktemp("replay") / "month.jsonl"
    result = run_cli("replay", "--out", str(path), "--days", "30", "--fail-day", "24",
                     module="models.fleetsim")
    assert result.returncode == 0, result.stderr
    readings, bad, good = fleetsim.replay_pair(days=30, fail_day=24)
    return path, datetime.fromtimestamp(bad.fail_at, tz=parse_ts(readings[0].to_dict()["ts"])
                                        .tzinfo)


@pytest.fixture(scope="module")
def replayed(month):
    path, _ = month
    result = run_cli("replay", str(path), "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_replay_of_a_degrading_printer_predicts_its_failure_days_before_it_fails(month,
                                                                                   replayed):
    _, fails_at = month
    predicted = [m["body"] for m in replayed if m["kind"] == "decision"
                 and m["body"]["device"] == "printer-degrading"
                 and m["body"]["decision"] == "predicted_failure"]
    assert predicted, "no predicted_failure for the degrading printer"
    first = parse_ts(predicted[0]["ts"])
    assert first < fails_at
    assert (fails_at - first).total_seconds() >= 2 * 86400, "predicted less than 48 h ahead"
    assert predicted[0]["explanation"] and predicted[0]["model"].startswith("device_health-")
    failed = [m["body"] for m in replayed if m["kind"] == "decision"
              and m["body"]["device"] == "printer-degrading" and m["body"]["decision"] == "failed"]
    assert failed and parse_ts(failed[0]["ts"]) >= fails_at


def test_the_wearing_printer_is_one_prediction_episode_superseded_by_its_failure(replayed):
    alerts = [m["body"] for m in replayed if m["kind"] == "alert"
              and m["body"]["device"] == "printer-degrading"
              and m["body"]["family"] in ("predicted_failure", "failed")]
    assert [(a["what"], a["state"]) for a in alerts] == [
        ("predicted_failure", "raised"), ("predicted_failure", "cleared"), ("failed", "raised")]
    assert alerts[2]["supersedes"]["since"] == alerts[0]["since"]
    assert alerts[2]["supersedes"]["lead_s"] >= 2 * 86400
    assert any("autocutter" in e for e in alerts[0]["explanation"])


def test_roll_changes_over_a_month_give_attention_only(replayed):
    healthy = [m["body"] for m in replayed if m["kind"] == "alert"
               and m["body"]["device"] == "printer-healthy"]
    assert any(a["what"] == "paper_out" for a in healthy)
    assert all(a["family"] == "attention" for a in healthy)


def test_replay_of_a_healthy_printer_gives_no_prediction_over_a_month(replayed):
    healthy = [m["body"]["decision"] for m in replayed if m["kind"] == "decision"
               and m["body"]["device"] == "printer-healthy"]
    assert healthy and "predicted_failure" not in healthy and "failed" not in healthy


def test_every_replayed_decision_and_alert_follows_the_wire_protocol(replayed):
    assert any(m["kind"] == "alert" for m in replayed)
    for m in replayed:
        (wire.check_decision if m["kind"] == "decision" else wire.check_alert)(m["body"])


def test_replay_reports_bad_lines_with_their_number_and_goes_on(tmp_path, month):
    path, _ = month
    lines = path.read_text().splitlines()[:50]
    lines[3] = "{not json"
    lines[7] = json.dumps({"device": "x", "kind": "escpos", "ts": "yesterday", "values": {}})
    lines[9] = lines[0]  # a timestamp earlier than the line before it
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    result = run_cli("replay", str(bad))
    assert result.returncode == 0
    assert f"{bad}:4: not JSON" in result.stderr
    assert f"{bad}:8: ts: not an ISO 8601 timestamp" in result.stderr
    assert f"{bad}:10: timestamp earlier" in result.stderr
    assert "47 readings (3 bad lines)" in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_of_a_missing_file_is_a_plain_error(tmp_path):
    result = run_cli("replay", str(tmp_path / "absent.jsonl"))
    assert result.returncode == 2 and "cannot read" in result.stderr
    assert "Traceback" not in result.stderr


def test_model_info_prints_the_packaged_models_card():
    result = run_cli("model", "info")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("model device_health-")
    assert "cutter_errors_per_day" in result.stdout and "threshold" in result.stdout
    as_json = run_cli("model", "info", "--json")
    card = json.loads(as_json.stdout)
    assert card["version"] in result.stdout and len(card["features"]) >= 16
    for kind, t in card.get("class_thresholds", {}).items():  # each kind's own operating point
        assert f"{kind}: threshold {t['threshold']} (watch {t['watch_threshold']})" \
            in result.stdout


def test_model_info_on_a_broken_model_says_why_without_a_traceback(tmp_path):
    broken = tmp_path / "m.onnx"
    broken.write_bytes(b"junk")
    result = run_cli("model", "info", "--model", str(broken))
    assert result.returncode == 1
    assert "card" in result.stderr and "missing" in result.stderr
    assert "Traceback" not in result.stderr


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    st.text(max_size=200),
    st.fixed_dictionaries({"device": json_values, "kind": json_values,
                           "ts": st.one_of(st.datetimes().map(lambda d: d.isoformat()),
                                           json_values),
                           "values": st.one_of(st.dictionaries(
                               st.sampled_from(["printer.jam_count", "host.temp_c",
                                                "printer.paper", "nope"]), json_values),
                               json_values)}).map(json.dumps)))
def test_a_replay_line_is_a_reading_or_a_reading_error_never_a_crash(line):
    try:
        reading = parse_line(line, None)
    except ReadingError:
        return
    assert reading.device and reading.ts.tzinfo is not None


def test_replay_with_a_missing_model_says_so_and_fails(month):
    path, _ = month
    result = run_cli("replay", str(path), "--model", "/nonexistent/model.onnx")
    assert result.returncode == 1
    assert "model /nonexistent/model.onnx is missing" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_replay_gives_the_same_decisions_every_time(month, replayed):
    path, _ = month
    again = run_cli("replay", str(path), "--json")
    assert [json.loads(line) for line in again.stdout.splitlines()] == replayed


def test_a_stale_replay_line_without_a_reason_is_refused_as_the_agent_never_writes_one():
    """Found by fuzzing (fuzz/corpus/replay_line/regress-stale-without-reason)."""
    from edge_agent.cli.replay import parse_line
    from edge_agent.errors import ReadingError

    line = ('{"device":"h","kind":"host","ts":"2026-11-22T15:00:01Z",'
            '"values":{"host.cpu_pct":5},"stale":true}')
    with pytest.raises(ReadingError, match="a stale reading must say why"):
        parse_line(line, None)
    assert parse_line(line[:-1] + ',"reason":"timeout"}', None).reason == "timeout"
