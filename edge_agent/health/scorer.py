"""Score every device's features with the ONNX health model, one batch per cycle.

onnxruntime is imported only when a model is loaded (the import costs about 37 MB and a loaded
model about 19 MB more: docs/benchmarks.md), with one intra-op thread. A model comes with its card (`<name>.card.json` beside `<name>.onnx`); loading checks
the file's hash against the card's, the card's features against this agent's features, and the
session's inputs and outputs against the card. A missing, corrupt or mismatched model raises
ModelError; `Scorer.load` then keeps the last good model (or none, and says so).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from edge_agent.errors import EdgeError
from edge_agent.health.features import NAMES

log = logging.getLogger(__name__)
MAX_MODEL_BYTES = 64 * 1024 * 1024


class ModelError(EdgeError):
    """A health model that cannot be used: missing, corrupt, or not matching its card."""


def packaged_model() -> Path:
    """Return the path of the model shipped inside the agent package."""
    return Path(str(resources.files("edge_agent.health.model").joinpath("device_health.onnx")))


def card_path(model: Path) -> Path:
    """Return the card's path for a model file: name.onnx -> name.card.json."""
    return model.with_name(model.name[:-5] + ".card.json" if model.name.endswith(".onnx")
                           else model.name + ".card.json")


def read_card(model: Path) -> dict[str, Any]:
    """Read and check a model's card; raise ModelError naming what is wrong."""
    path = card_path(model)
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ModelError(f"model card {path} is missing") from err
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise ModelError(f"model card {path} is not readable JSON: {err}") from err
    if not isinstance(card, dict):
        raise ModelError(f"model card {path}: not a JSON object")
    for key, kind in (("version", str), ("sha256", str), ("features", list),
                      ("threshold", (int, float)), ("watch_threshold", (int, float)),
                      ("format", dict)):
        if not isinstance(card.get(key), kind) or isinstance(card.get(key), bool):
            raise ModelError(f"model card {path}: {key} missing or of the wrong type")
    names = [f.get("name") if isinstance(f, dict) else None for f in card["features"]]
    if tuple(names) != NAMES:
        raise ModelError(f"model card {path}: its features {names[:3]}... (of {len(names)}) "
                         f"are not this agent's {len(NAMES)} features; retrain or upgrade")
    if not 0.0 < card["threshold"] <= 1.0 or not 0.0 < card["watch_threshold"] <= 1.0:
        raise ModelError(f"model card {path}: thresholds must be in (0, 1]")
    return card


@dataclass
class Model:
    """A loaded, checked model."""

    path: Path
    card: dict[str, Any]
    session: Any
    input_name: str

    @property
    def version(self) -> str:
        return self.card["version"]


def load_model(path: str | Path) -> Model:
    """Load a model and its card and check them against each other; raise ModelError."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_MODEL_BYTES:
            raise ModelError(f"model {path} is larger than {MAX_MODEL_BYTES} bytes")
        blob = path.read_bytes()
    except FileNotFoundError as err:
        raise ModelError(f"model {path} is missing") from err
    except OSError as err:
        raise ModelError(f"cannot read model {path}: {err.strerror or err}") from err
    card = read_card(path)
    digest = hashlib.sha256(blob).hexdigest()
    if digest != card["sha256"]:
        raise ModelError(f"model {path} does not match its card (sha256 {digest[:12]}, card "
                         f"says {card['sha256'][:12]}): corrupt or replaced")
    import onnxruntime as ort  # lazily: only an agent that scores pays for it

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise ModelError(f"model {path} is not a loadable ONNX model: {err}") from err
    fmt = card["format"]
    want_in = fmt.get("input", {}) if isinstance(fmt.get("input"), dict) else {}
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelError(f"model {path} has {len(inputs)} inputs; expected 1")
    inp = inputs[0]
    if inp.name != want_in.get("name") or inp.type != "tensor(float)" or \
            len(inp.shape) != 2 or inp.shape[1] != len(NAMES):
        raise ModelError(f"model {path}: input {inp.name} {inp.type} {inp.shape} does not match "
                         f"the card ({want_in.get('name')}, float, [N, {len(NAMES)}])")
    outputs = {o.name: o for o in session.get_outputs()}
    probs = outputs.get("probabilities")
    if probs is None or probs.type != "tensor(float)" or len(probs.shape) != 2 \
            or probs.shape[1] != 2:
        raise ModelError(f"model {path}: no 'probabilities' output of shape [N, 2] "
                         f"(outputs: {', '.join(outputs) or 'none'})")
    return Model(path, card, session, inp.name)


class Scorer:
    """The current model (the last good one) and why scoring is off, if it is."""

    def __init__(self) -> None:
        self.model: Model | None = None
        self.error: str | None = None

    def load(self, path: str | Path | None = None) -> bool:
        """Load a model (default: the packaged one); on failure keep the last good one."""
        target = Path(path) if path else packaged_model()
        try:
            model = load_model(target)
        except ModelError as err:
            self.error = str(err)
            log.error("model refused", extra={"model": str(target), "error": str(err),
                                              "keeping": self.model.version if self.model
                                              else "none: not scoring"})
            return False
        self.model, self.error = model, None
        log.info("model loaded", extra={"model": str(target), "version": model.version})
        return True

    @property
    def version(self) -> str | None:
        return self.model.version if self.model else None

    def score(self, rows: Sequence[Sequence[float]]) -> list[float]:
        """Return P(fails within 7 days) for each row, in one batch; [] without a model."""
        if self.model is None or not rows:
            return []
        import itertools

        import numpy as np

        width = len(NAMES)
        if any(len(r) != width for r in rows):
            raise ValueError(f"every row must have {width} features")
        # fromiter over the flattened rows costs a third of np.asarray on a list of lists.
        x = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float32,
                        count=len(rows) * width).reshape(len(rows), width)
        out = self.model.session.run(["probabilities"], {self.model.input_name: x})[0]
        return out[:, 1].tolist()

    def state(self) -> dict[str, Any]:
        """What `status` shows: scoring or not, the model version, the last refusal."""
        return {"scoring": self.model is not None, "model": self.version,
                "path": str(self.model.path) if self.model else None, "error": self.error}
