"""Scoring errors on the agent: a model that loads and then fails at scoring time (NaN, scores
out of [0, 1], the wrong output shape, an inference error, a worker that cannot start, exits or
hangs) leaves those devices to the rules, and every device that went without a score is counted
by reason, kept across a restart, shown by `status` and reported to the hub in a
`scoring_errors` event committed to the outbox (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter

import pytest

import badmodels
import edge_protocol as wire
from conftest import run_cli
from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_agent.health import features as F
from edge_agent.health.scorer import ModelError, Scorer, WorkerSession
from edge_protocol.bodies import SCORING_ERROR_REASONS
from test_health_agent import outbox_bodies, run_until, write_config

WIDTH = len(F.NAMES)


def rows(n: int, worn: tuple[int, ...] = ()) -> list[list[float]]:
    out = [[0.0] * WIDTH for _ in range(n)]
    for i in worn:
        out[i][F.NAMES.index("cutter_wear")] = 0.9
    return out


@pytest.mark.parametrize("worker", [False, True], ids=["in-process", "worker"])
def test_each_kind_of_bad_output_is_counted_by_its_reason_and_only_on_its_rows(tmp_path, worker):
    cases = [
        (badmodels.nan_above(tmp_path / "nan", "bad-nan"), rows(3, worn=(1,)),
         [True, False, True], {"non_finite": 1}),
        (badmodels.shifted(tmp_path / "shift", "bad-shift", 2.0), rows(3),
         [False] * 3, {"out_of_range": 3}),
        (badmodels.three_columns(tmp_path / "three", "bad-3"), rows(2),
         [False] * 2, {"bad_output": 2}),
        (badmodels.one_row_only(tmp_path / "one", "bad-1"), rows(4),
         [False] * 4, {"inference_error": 4}),
    ]
    for path, batch, scored, want in cases:
        scorer = Scorer(worker=worker)
        try:
            assert scorer.load(path), scorer.error  # each one passes its card check and loads
            scores, errors = scorer.score_checked(batch)
        finally:
            scorer.close()
        assert [s is not None for s in scores] == scored, path.parent.name
        assert all(0.0 <= s <= 1.0 for s in scores if s is not None)
        assert dict(errors) == want, path.parent.name
        assert set(errors) <= set(SCORING_ERROR_REASONS)


def test_a_good_model_counts_nothing():
    scorer = Scorer()
    assert scorer.load()
    scores, errors = scorer.score_checked(rows(5, worn=(2,)))
    assert all(s is not None for s in scores) and not errors


def test_a_worker_that_cannot_start_exits_or_hangs_is_counted_by_its_reason(tmp_path):
    onnx = badmodels.nan_above(tmp_path / "m", "bad-nan")
    scorer = Scorer(worker=True)
    assert scorer.load(onnx)
    scorer.close()
    onnx.write_bytes(onnx.read_bytes() + b"\x00")  # the file changed after the agent checked it
    scores, errors = scorer.score_checked(rows(3))
    assert scores == [None] * 3 and errors == Counter(worker_start=3)

    session = WorkerSession(onnx, "0" * 64)
    session.proc = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE)
    with pytest.raises(ModelError) as err:
        session._answer(60)
    assert err.value.reason == "worker_crash"
    session.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    with pytest.raises(ModelError) as err:
        session._answer(0.2)  # a worker that never answers: 0.2 s or 20, the same verdict
    assert err.value.reason == "worker_timeout"
    session.close()


def scoring_events(state_dir) -> list[dict]:
    return [b for b in outbox_bodies(state_dir, "event") if b.get("event") == "scoring_errors"]


def test_an_agent_scoring_with_a_model_that_gives_nan_counts_reports_and_keeps_the_errors(
        tmp_path):
    # NaN for every device (every device class is above -1): it loads, and every score fails.
    model = badmodels.nan_above(tmp_path / "m", "bad-everywhere", "device_class", -1.0)
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace(
        "interval = 0.3", f"interval = 0.3\nerror_report_every = 0\nmodel = \"{model}\""))
    agent = Agent(load_config(path), path)
    asyncio.run(run_until(agent, lambda a: a.health.cycles >= 3))
    assert agent.health.scorer.version == "bad-everywhere"  # loaded: no refusal to see
    decisions = outbox_bodies(tmp_path / "state", "decision")
    assert decisions and all(d["score"] is None for d in decisions)  # the rules decided
    counted = agent.health.errors_total["non_finite"]
    assert counted >= 3

    events = scoring_events(tmp_path / "state")
    for body in events:  # each one passes the hub's checks
        typed = wire.parse_body("event", body)
        assert typed.scoring is not None and typed.scoring.model == "bad-everywhere"
    assert events[0]["errors"] == {} and events[0]["total"] == {}  # the start: what it counts from
    assert sum(e["errors"].get("non_finite", 0) for e in events) == counted
    assert events[-1]["total"]["non_finite"] == counted

    doc = json.loads(run_cli("status", "--config", str(path), "--json").stdout)
    assert doc["scoring"]["errors"]["non_finite"] == counted
    text = run_cli("status", "--config", str(path)).stdout
    assert f"{counted} device score(s) failed" in text and f"non_finite {counted}" in text

    # A restart keeps the count: its first event starts from the total the last run left.
    again = Agent(load_config(path), path)
    asyncio.run(run_until(again, lambda a: a.health.cycles >= 1))
    restarted = scoring_events(tmp_path / "state")[len(events):]
    assert restarted[0]["total"]["non_finite"] >= counted
    assert again.health.errors_total["non_finite"] > counted


def test_an_agent_whose_model_does_not_load_counts_every_device_it_leaves_to_the_rules(tmp_path):
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace(
        "interval = 0.3",
        f"interval = 0.3\nerror_report_every = 0\nmodel = \"{tmp_path / 'gone.onnx'}\""))
    agent = Agent(load_config(path), path)
    asyncio.run(run_until(agent, lambda a: a.health.cycles >= 2))
    assert agent.health.errors_total["no_model"] >= 2
    assert scoring_events(tmp_path / "state")[-1]["total"]["no_model"] >= 2


def test_the_flag_that_switches_scoring_off_and_a_disabled_scorer_count_nothing(tmp_path):
    path = write_config(tmp_path)
    agent = Agent(load_config(path), path)

    def switch_off(a):
        a.health.model_allowed = lambda: False
        return a.health.cycles >= 2

    asyncio.run(run_until(agent, switch_off))
    assert not agent.health.errors_total
    (tmp_path / "off").mkdir()
    off = write_config(tmp_path / "off", enabled=False)
    quiet = Agent(load_config(off), off)
    asyncio.run(run_until(quiet, lambda a: a.health.cycles >= 2))
    assert not quiet.health.errors_total and not scoring_events(tmp_path / "off" / "state")


def test_reports_are_bounded_a_steady_stream_goes_at_most_once_a_period():
    from edge_agent.health.engine import HealthEngine

    engine = HealthEngine(load_settings())
    assert engine.error_report(0.0, 300.0) is None  # nothing to say
    engine.note_errors(Counter(non_finite=2))
    first = engine.error_report(10.0, 300.0)  # the first after a quiet spell: at once
    assert first["errors"] == {"non_finite": 2}
    engine.note_errors(Counter(non_finite=2, worker_timeout=1))
    assert engine.error_report(100.0, 300.0) is None  # a steady stream waits for its period
    later = engine.error_report(311.0, 300.0)
    assert later["errors"] == {"non_finite": 2, "worker_timeout": 1}
    assert later["total"] == {"non_finite": 4, "worker_timeout": 1}
    engine.note_errors(Counter(**{f"r{i}": 1 for i in range(40)}))  # a bounded set of reasons
    assert len(engine.errors_total) <= wire.bodies.MAX_REASONS
    wire.parse_body("event", engine.error_report(1000.0, 300.0, force=True))


def load_settings():
    from edge_agent.config import ScoringSection

    return ScoringSection()
