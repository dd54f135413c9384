"""The health model pipeline: reproducible training, the card, and the copies the wheel carries."""

from __future__ import annotations

import dataclasses
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


# Smaller than train.SMALL (which `make model`'s smoke run uses): the pipeline end to end,
# with failures in both fleets, in a few seconds. What is asserted is reproducibility, not skill.
TINY = dataclasses.replace(train.SMALL, devices=30, days=12.0, heldout_devices=16,
                           heldout_days=12.0, n_estimators=6)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One training run on TINY: its output folder and card (shared by the tests below)."""
    out = tmp_path_factory.mktemp("tiny") / "first"
    return out, train.run(TINY, out, None, None, quiet=True)


def test_training_twice_on_a_small_config_gives_the_same_model_hash(tiny_run, tmp_path):
    first, card = tiny_run
    again = train.run(TINY, tmp_path / "again", None, None, quiet=True)
    assert card["sha256"] == again["sha256"]
    assert (first / "device_health.onnx").read_bytes() == \
        (tmp_path / "again" / "device_health.onnx").read_bytes()
    assert (first / "device_health.card.json").read_text() == \
        (tmp_path / "again" / "device_health.card.json").read_text()
    load_model(first / "device_health.onnx")


def test_a_different_seed_gives_a_different_model(tiny_run, tmp_path):
    _, card = tiny_run
    other = train.run(dataclasses.replace(TINY, seed=TINY.seed + 1), tmp_path / "b", None, None,
                      quiet=True)
    assert card["sha256"] != other["sha256"]
