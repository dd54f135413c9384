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
