"""Per-device-class thresholds from the model card, through the real engine, scorer and policy."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from edge_agent.config import ScoringSection
from edge_agent.health.engine import HealthEngine
from edge_agent.health.scorer import Scorer, card_path
from edge_agent.reading import Reading

T0 = datetime(2026, 3, 4, 10, 0, tzinfo=timezone.utc)
SCORE = 0.85


def constant_model(folder, score: float, class_thresholds=None):
    """An ONNX model scoring every device `score` (a real graph, run by onnxruntime)."""
    from onnx import helper

    from models.replay_eval import _const, _graph, _to_probabilities, write_model

    inits = [helper.make_tensor("c0", 7, [1], [0]), helper.make_tensor("c1", 7, [1], [1]),
             helper.make_tensor("ax1", 7, [1], [1]), _const("zero", [0.0]),
             _const("odds", [score / (1 - score)])]
    nodes = [helper.make_node("Slice", ["input", "c0", "c1", "ax1"], ["col"]),
             helper.make_node("Mul", ["col", "zero"], ["nil"]),
             helper.make_node("Add", ["nil", "odds"], ["s"])]
    _to_probabilities(nodes, inits, "s")
    path = write_model(folder, "constant", _graph(nodes, inits, "constant"), 0.8, 0.4, "test")
    if class_thresholds is not None:
        card = json.loads(card_path(path).read_text())
        card["class_thresholds"] = class_thresholds
        card_path(path).write_text(json.dumps(card))
    return path


def readings():
    return [Reading("p1", "escpos", T0, {"device.status": "ok", "printer.paper": "ok",
                                         "printer.cover": "closed"}),
            Reading("s1", "scanner", T0, {"device.status": "ok", "scanner.connected": True}),
            Reading("r1", "host", T0, {"device.status": "ok", "host.temp_c": 45.0})]


def decisions(path, **settings):
    scorer = Scorer()
    assert scorer.load(path), scorer.error
    engine = HealthEngine(replace(ScoringSection(), timezone="UTC", **settings), scorer)
    for r in readings():
        engine.observe(r)
    bodies, _ = engine.cycle(T0.timestamp() + 60)
    return {b["device"]: (b["decision"], b["threshold"]) for b in bodies}


LEVELS = {"printer": {"threshold": 0.9, "watch_threshold": 0.45},
          "scanner": {"threshold": 0.6, "watch_threshold": 0.3}}


def test_each_class_is_decided_at_its_own_threshold_and_an_unnamed_class_at_the_cards(tmp_path):
    got = decisions(constant_model(tmp_path, SCORE, LEVELS))
    assert got == {"p1": ("watch", 0.9), "s1": ("predicted_failure", 0.6),
                   "r1": ("predicted_failure", 0.8)}


def test_a_card_with_one_threshold_decides_every_class_at_it(tmp_path):
    got = decisions(constant_model(tmp_path, SCORE))
    assert {d for d, _ in got.values()} == {"predicted_failure"}
    assert {t for _, t in got.values()} == {0.8}


@pytest.mark.parametrize("threshold, expected", [(0.95, "watch"), (0.5, "predicted_failure")])
def test_a_threshold_set_in_the_config_applies_to_every_class(tmp_path, threshold, expected):
    got = decisions(constant_model(tmp_path, SCORE, LEVELS), threshold=threshold)
    assert got == {d: (expected, threshold) for d in ("p1", "s1", "r1")}
