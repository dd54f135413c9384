"""Health models that load, pass their card check, and then fail at scoring time.

Each is the packaged model with a few ONNX nodes after it, so it scores like the packaged one
except where it was made to fail; its card is the packaged card with its own version and hash.
A model that fails on every input is caught by the shadow run of a bundle (a failed apply);
`nan_above` fails only on inputs the shadow run may not have seen (a worn autocutter), which is
what the rollout's scoring_errors gate is for.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edge_agent.health import features as F
from edge_agent.health.scorer import card_path, packaged_model


def _build(folder: Path, version: str, tail) -> Path:
    import onnx
    from onnx import TensorProto, helper

    folder.mkdir(parents=True, exist_ok=True)
    src = packaged_model()
    model = onnx.load(str(src))
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["probs_raw" if o == "probabilities" else o for o in node.output]
    nodes, _ = tail(helper, TensorProto)  # the declared output stays [N, 2], as the card says
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx_path = folder / "device_health.onnx"
    onnx_path.write_bytes(model.SerializeToString())
    card = json.loads(card_path(src).read_text())
    card.update(version=version, sha256=hashlib.sha256(onnx_path.read_bytes()).hexdigest())
    card_path(onnx_path).write_text(json.dumps(card))
    return onnx_path


def _const(helper, TensorProto, name: str, dtype, dims, values):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(
        name + "_v", dtype, dims, values))


def nan_above(folder: Path, version: str, feature: str = "cutter_wear",
              above: float = 0.5) -> Path:
    """NaN for every device whose `feature` is above `above`; the packaged scores otherwise."""
    idx = F.NAMES.index(feature)

    def tail(helper, TP):
        return [
            _const(helper, TP, "starts", TP.INT64, [1], [idx]),
            _const(helper, TP, "ends", TP.INT64, [1], [idx + 1]),
            _const(helper, TP, "axes", TP.INT64, [1], [1]),
            helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["col"]),
            _const(helper, TP, "limit", TP.FLOAT, [1], [above]),
            helper.make_node("Greater", ["col", "limit"], ["worn"]),
            _const(helper, TP, "nan", TP.FLOAT, [1], [float("nan")]),
            _const(helper, TP, "zero", TP.FLOAT, [1], [0.0]),
            helper.make_node("Where", ["worn", "nan", "zero"], ["poison"]),
            helper.make_node("Add", ["probs_raw", "poison"], ["probabilities"]),
        ], 2
    return _build(folder, version, tail)


def shifted(folder: Path, version: str, by: float) -> Path:
    """Every probability plus `by`: out of [0, 1] for every device when `by` > 1."""
    def tail(helper, TP):
        return [_const(helper, TP, "by", TP.FLOAT, [1], [by]),
                helper.make_node("Add", ["probs_raw", "by"], ["probabilities"])], 2
    return _build(folder, version, tail)


def three_columns(folder: Path, version: str) -> Path:
    """Declares probabilities [N, 2] (the card check passes) but computes [N, 3]."""
    def tail(helper, TP):
        return [_const(helper, TP, "s", TP.INT64, [1], [0]),
                _const(helper, TP, "e", TP.INT64, [1], [1]),
                _const(helper, TP, "a", TP.INT64, [1], [1]),
                helper.make_node("Slice", ["probs_raw", "s", "e", "a"], ["first"]),
                helper.make_node("Concat", ["probs_raw", "first"], ["probabilities"], axis=1)], 2
    return _build(folder, version, tail)


def one_row_only(folder: Path, version: str) -> Path:
    """Reshapes the probabilities to [1, 2]: a batch of more than one device fails inside
    onnxruntime (an inference error), a batch of one scores."""
    def tail(helper, TP):
        return [_const(helper, TP, "shape", TP.INT64, [2], [1, 2]),
                helper.make_node("Reshape", ["probs_raw", "shape"], ["probabilities"])], 2
    return _build(folder, version, tail)
