"""Health scorer: a checked model, one batch for all devices, and refusal of a bad model."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from edge_agent.health import features as F
from edge_agent.health.scorer import ModelError, Scorer, card_path, load_model, packaged_model


@pytest.fixture
def model_dir(tmp_path):
    """A copy of the packaged model and its card in a folder the test may damage."""
    src = packaged_model()
    dst = tmp_path / "device_health.onnx"
    shutil.copyfile(src, dst)
    shutil.copyfile(card_path(src), card_path(dst))
    return dst


def rewrite_card(path, **changes):
    card = json.loads(card_path(path).read_text())
    card.update(changes)
    card_path(path).write_text(json.dumps(card))


def test_the_packaged_model_loads_and_scores_a_batch_of_devices_in_one_call():
    scorer = Scorer()
    assert scorer.load()
    rows = [[0.0] * len(F.NAMES) for _ in range(50)]
    rows[3][F.NAMES.index("cutter_errors_per_day")] = 30.0
    scores = scorer.score(rows)
    assert len(scores) == 50 and all(0.0 <= s <= 1.0 for s in scores)
    assert scorer.state()["scoring"] and scorer.version.startswith("device_health-")


def test_a_corrupt_model_is_refused_and_the_last_good_one_is_kept(model_dir):
    scorer = Scorer()
    assert scorer.load(model_dir)
    good = scorer.version
    blob = bytearray(model_dir.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    model_dir.write_bytes(bytes(blob))
    assert not scorer.load(model_dir)
    assert "does not match its card" in scorer.error
    assert scorer.version == good and scorer.score([[0.0] * len(F.NAMES)])


def test_a_corrupt_model_whose_card_hash_was_updated_is_still_refused_as_not_onnx(model_dir):
    model_dir.write_bytes(b"\x08\x07garbage that is not a protobuf model")
    rewrite_card(model_dir, sha256=hashlib.sha256(model_dir.read_bytes()).hexdigest())
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        load_model(model_dir)


def test_a_model_whose_card_lists_other_features_is_refused(model_dir):
    card = json.loads(card_path(model_dir).read_text())
    card["features"] = card["features"][:-1]
    card_path(model_dir).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="not this agent's"):
        load_model(model_dir)


def test_a_model_whose_input_does_not_match_its_card_is_refused(model_dir):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from models.train import _patch_skl2onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    _patch_skl2onnx()
    rng = np.random.default_rng(0)
    X = rng.random((200, 5)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(int)
    clf = HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(X, y)
    onx = convert_sklearn(clf, initial_types=[("input", FloatTensorType([None, 5]))],
                          options={id(clf): {"zipmap": False}}, target_opset=15)
    model_dir.write_bytes(onx.SerializeToString())
    rewrite_card(model_dir, sha256=hashlib.sha256(model_dir.read_bytes()).hexdigest())
    with pytest.raises(ModelError, match="does not match the card"):
        load_model(model_dir)


def test_a_missing_model_or_card_is_a_clear_error(model_dir, tmp_path):
    with pytest.raises(ModelError, match="is missing"):
        load_model(tmp_path / "nope.onnx")
    card_path(model_dir).unlink()
    with pytest.raises(ModelError, match="card .* is missing"):
        load_model(model_dir)


def test_without_any_good_model_the_scorer_says_it_is_not_scoring(tmp_path):
    scorer = Scorer()
    assert not scorer.load(tmp_path / "absent.onnx")
    state = scorer.state()
    assert state["scoring"] is False and state["model"] is None and "missing" in state["error"]
    assert scorer.score([[0.0] * len(F.NAMES)]) == []


WORKER_SCRIPT = """
import json, sys, time
from edge_agent.health import features as F
from edge_agent.health.scorer import Scorer, WorkerSession

rows = [[0.0] * len(F.NAMES) for _ in range(20)]
rows[3][F.NAMES.index("cutter_errors_per_day")] = 30.0
scorer = Scorer(worker=True)
assert scorer.load()
scores = scorer.score(rows)
session = scorer.model.session
pid = session.proc.pid
# Idle, the worker exits by itself (a few seconds); wait with patience, not as a verdict.
deadline = time.monotonic() + 60
while session.proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.05)
exited = session.proc.poll() is not None
again = scorer.score(rows)
scorer.close()
heavy = sorted(m for m in ("onnxruntime", "numpy") if m in sys.modules)
print(json.dumps({"scores": scores, "again": again, "exited": exited, "starts": session.starts,
                  "heavy": heavy}))
"""


def test_the_worker_scores_as_in_process_and_leaves_onnxruntime_and_numpy_out_of_the_agent():
    import subprocess
    import sys

    from conftest import agent_env

    out = subprocess.run([sys.executable, "-c", WORKER_SCRIPT], capture_output=True, text=True,
                         timeout=180, env=agent_env())
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    rows = [[0.0] * len(F.NAMES) for _ in range(20)]
    rows[3][F.NAMES.index("cutter_errors_per_day")] = 30.0
    scorer = Scorer()
    assert scorer.load()
    assert doc["scores"] == scorer.score(rows) == doc["again"]
    assert doc["heavy"] == []
    assert doc["exited"] and doc["starts"] >= 2  # a new worker after the idle exit


def test_a_model_onnxruntime_refuses_is_refused_by_the_worker_too(model_dir):
    model_dir.write_bytes(b"\x08\x07garbage that is not a protobuf model")
    rewrite_card(model_dir, sha256=hashlib.sha256(model_dir.read_bytes()).hexdigest())
    scorer = Scorer(worker=True)
    assert not scorer.load(model_dir)
    assert "not a loadable ONNX model" in scorer.error
    assert scorer.score([[0.0] * len(F.NAMES)]) == []


CLASS_LEVELS = {"printer": {"threshold": 0.9, "watch_threshold": 0.45},
                "scanner": {"threshold": 0.6, "watch_threshold": 0.3}}


def test_a_card_may_carry_thresholds_per_device_class_and_one_without_them_still_loads(model_dir):
    rewrite_card(model_dir, class_thresholds=CLASS_LEVELS)
    assert load_model(model_dir).card["class_thresholds"] == CLASS_LEVELS
    card = json.loads(card_path(model_dir).read_text())
    del card["class_thresholds"]
    card_path(model_dir).write_text(json.dumps(card))
    assert "class_thresholds" not in load_model(model_dir).card


@pytest.mark.parametrize("levels, why", [
    ({"toaster": {"threshold": 0.9, "watch_threshold": 0.4}}, "not one of"),
    ({"printer": {"threshold": 1.5, "watch_threshold": 0.4}}, r"printer.threshold must be"),
    ({"printer": {"threshold": 0.9}}, r"printer.watch_threshold must be"),
    ({"printer": {"threshold": True, "watch_threshold": 0.4}}, r"printer.threshold must be"),
    ({"printer": {"threshold": 0.5, "watch_threshold": 0.6}}, "watch level is above"),
    ({"printer": 0.9}, "not an object"),
    ([0.9, 0.8], "not an object"),
])
def test_a_card_with_bad_class_thresholds_is_refused_naming_what_is_wrong(model_dir, levels, why):
    rewrite_card(model_dir, class_thresholds=levels)
    with pytest.raises(ModelError, match=why):
        load_model(model_dir)
