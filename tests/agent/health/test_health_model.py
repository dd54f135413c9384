"""The health model pipeline: reproducible training, the card, and the copies the wheel carries."""

from __future__ import annotations

import hashlib
import json

import pytest

from conftest import ROOT
from edge_agent.health import features as F
from edge_agent.health.scorer import load_model
from models import train

PIPELINE = ROOT / "models"
PACKAGED = ROOT / "edge_agent" / "health" / "model"


@pytest.mark.parametrize("name", ["device_health.onnx", "device_health.card.json"])
def test_the_packaged_model_and_card_are_identical_to_the_pipelines_output(name):
    assert (PIPELINE / name).read_bytes() == (PACKAGED / name).read_bytes()


def test_the_card_names_the_models_hash_features_threshold_and_held_out_metrics():
    card = json.loads((PIPELINE / "device_health.card.json").read_text())
    blob = (PIPELINE / "device_health.onnx").read_bytes()
    assert card["sha256"] == hashlib.sha256(blob).hexdigest()
    assert card["version"] == f"device_health-{card['sha256'][:12]}"
    assert [f["name"] for f in card["features"]] == list(F.NAMES)
    assert all(f["unit"] for f in card["features"])
    assert 0 < card["watch_threshold"] < card["threshold"] < 1 and card["threshold_method"]
    assert set(card["class_thresholds"]) == {"register", "printer", "scanner"}
    for levels in card["class_thresholds"].values():
        assert 0 < levels["watch_threshold"] < levels["threshold"] < 1
    for method in ("model", "fixed_thresholds", "kmeans_distance"):
        assert {"pr_auc", "precision_at_80_recall", "median_lead_days",
                "false_alerts_per_100_device_weeks"} <= set(card["metrics"][method])
    assert any("simulated" in limit for limit in card["limits"])
    load_model(PIPELINE / "device_health.onnx")


def test_the_evaluation_report_is_the_one_written_for_the_shipped_model():
    report = (ROOT / "docs" / "model.md").read_text()
    card = json.loads((PIPELINE / "device_health.card.json").read_text())
    assert card["version"] in report and "k-means" in report


def test_training_twice_on_a_small_config_gives_the_same_model_hash(tmp_path):
    cards = [train.run(train.SMALL, tmp_path / str(i), None, None, quiet=True) for i in (1, 2)]
    assert cards[0]["sha256"] == cards[1]["sha256"]
    assert (tmp_path / "1" / "device_health.onnx").read_bytes() == \
        (tmp_path / "2" / "device_health.onnx").read_bytes()
    assert (tmp_path / "1" / "device_health.card.json").read_text() == \
        (tmp_path / "2" / "device_health.card.json").read_text()
    load_model(tmp_path / "1" / "device_health.onnx")


def test_a_different_seed_gives_a_different_model(tmp_path):
    import dataclasses

    other = dataclasses.replace(train.SMALL, seed=train.SMALL.seed + 1)
    a = train.run(train.SMALL, tmp_path / "a", None, None, quiet=True)
    b = train.run(other, tmp_path / "b", None, None, quiet=True)
    assert a["sha256"] != b["sha256"]
