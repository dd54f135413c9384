"""Score every device's features with the ONNX health model, one batch per cycle.

The running agent scores in a worker process (`Scorer(worker=True)`): started before a cycle,
gone a few seconds after it, so onnxruntime, numpy and the session (about 45 MB, most of the
agent's footprint: docs/benchmarks.md) are never resident in the agent between cycles. The
worker is this module (`python -m edge_agent.health.scorer --worker MODEL SHA256`), speaking
one JSON line a request on its stdin and stdout (POSIX only: it waits with select(); on
Windows the agent scores in process). Everything else (replay, tests, benches) scores
in process, as before; both give the same scores (the same session options, float32 input).

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
import math
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from edge_protocol.bodies import SCORING_ERROR_REASONS

from edge_agent.errors import EdgeError
from edge_agent.health.features import CLASS_CODES, NAMES

log = logging.getLogger(__name__)
MAX_MODEL_BYTES = 64 * 1024 * 1024
# A worker with no request for this long exits: a cycle's batches come within milliseconds.
WORKER_IDLE_S = 5.0
# Seconds a worker may take to start (interpreter, onnxruntime, session) and to answer.
WORKER_START_S = 60.0
WORKER_ANSWER_S = 30.0


class ModelError(EdgeError):
    """A health model that cannot be used: missing, corrupt, or not matching its card; or a
    scoring batch that failed, with `reason` one of SCORING_ERROR_REASONS."""

    def __init__(self, message: str = "", reason: str = "inference_error"):
        super().__init__(message)
        self.reason = reason if reason in SCORING_ERROR_REASONS else "inference_error"


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
    by_class = card.get("class_thresholds")
    if by_class is not None:
        # Optional (a card with one threshold is still good): per device class, its own
        # threshold and watch level; a class not named uses the card's threshold.
        if not isinstance(by_class, dict):
            raise ModelError(f"model card {path}: class_thresholds is not an object")
        for cls, levels in by_class.items():
            if cls not in CLASS_CODES:
                raise ModelError(f"model card {path}: class_thresholds names {cls!r}, not one "
                                 f"of {', '.join(CLASS_CODES)}")
            if not isinstance(levels, dict):
                raise ModelError(f"model card {path}: class_thresholds.{cls} is not an object")
            for key in ("threshold", "watch_threshold"):
                v = levels.get(key)
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 < v <= 1.0:
                    raise ModelError(f"model card {path}: class_thresholds.{cls}.{key} must be "
                                     "a number in (0, 1]")
            if levels["watch_threshold"] > levels["threshold"]:
                raise ModelError(f"model card {path}: class_thresholds.{cls}: the watch level "
                                 "is above the threshold")
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
    path, blob, card = read_checked(path)
    session, input_name = make_session(path, blob, card)
    return Model(path, card, session, input_name)


def load_worker_model(path: str | Path) -> Model:
    """Check a model and its card here, and its session in a worker (which exits when idle)."""
    path, _, card = read_checked(path)
    session = WorkerSession(path, card["sha256"])
    session.start()  # a model onnxruntime refuses is refused now, as load_model does
    return Model(path, card, session, "")


def read_checked(path: str | Path) -> tuple[Path, bytes, dict[str, Any]]:
    """Read a model and its card and check the file against the card (no onnxruntime)."""
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
    return path, blob, card


def make_session(path: Path, blob: bytes, card: dict[str, Any]) -> tuple[Any, str]:
    """Build the onnxruntime session and check its inputs and outputs against the card.

    Session options measured (docs/benchmarks.md, "Scoring memory"): disabling the memory
    arena or memory patterns, or lowering graph optimisation, changes the RSS of this model by
    less than 0.2 MB; one intra-op and one inter-op thread keep a scoring cycle on one core.
    """
    import onnxruntime as ort  # lazily: only a process that scores pays for it

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
    return session, inp.name


def run_session(session: Any, input_name: str, rows: Sequence[Sequence[float]]) -> list[float]:
    """Score rows in one batch: P(fails within 7 days) for each."""
    import itertools

    import numpy as np

    width = len(NAMES)
    if any(len(r) != width for r in rows):
        raise ValueError(f"every row must have {width} features")
    # fromiter over the flattened rows costs a third of np.asarray on a list of lists.
    x = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float32,
                    count=len(rows) * width).reshape(len(rows), width)
    out = session.run(["probabilities"], {input_name: x})[0]
    # The card check saw the declared shape; a graph may still compute another one.
    shape = getattr(out, "shape", ())
    if len(shape) != 2 or shape[0] != len(rows) or shape[1] != 2:
        raise ModelError(f"the model's probabilities came out of shape {tuple(shape)}, "
                         f"not ({len(rows)}, 2)", "bad_output")
    return out[:, 1].tolist()


class WorkerSession:
    """The session of a model in a worker process, started when needed, gone when idle.

    `run()` starts the worker if none is alive (or it exited while idle) and sends one batch.
    A worker that dies, hangs or answers nonsense raises ModelError for that batch; the next
    batch starts a new one.
    """

    def __init__(self, path: Path, sha256: str, idle_s: float = WORKER_IDLE_S):
        self.path, self.sha256, self.idle_s = path, sha256, idle_s
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def _alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start a worker (if none is alive) and wait until its session is ready."""
        if self._alive():
            return
        self.close()
        env = dict(os.environ)
        # The worker must import this very edge_agent (a checkout run without installing).
        root = str(Path(__file__).resolve().parent.parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                    else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.health.scorer", "--worker", str(self.path),
             self.sha256, str(self.idle_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            close_fds=True)
        self.starts += 1
        try:
            hello = self._answer(WORKER_START_S)
        except ModelError as err:
            raise ModelError(str(err), "worker_timeout" if err.reason == "worker_timeout"
                             else "worker_start") from err
        if "error" in hello:
            self.close()
            raise ModelError(str(hello["error"]), "worker_start")
        if hello.get("ready") is not True:
            self.close()
            raise ModelError(f"scoring worker for {self.path} did not start", "worker_start")

    def _answer(self, timeout: float) -> dict[str, Any]:
        import select

        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise ModelError(f"scoring worker for {self.path} did not answer in "
                                 f"{timeout:g} s", "worker_timeout")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                break
        line = self.proc.stdout.readline(1 << 24)
        if not line:
            self.close()
            raise ModelError(f"scoring worker for {self.path} exited", "worker_crash")
        try:
            doc = json.loads(line)
        except ValueError as err:
            self.close()
            raise ModelError(f"scoring worker for {self.path} answered nonsense",
                             "worker_crash") from err
        if not isinstance(doc, dict):
            self.close()
            raise ModelError(f"scoring worker for {self.path} answered nonsense", "worker_crash")
        return doc

    def run(self, rows: Sequence[Sequence[float]]) -> list[Any]:
        """The worker's scores for the rows, one a row, as it sent them (a score may be NaN,
        infinite or out of [0, 1]: Scorer.score_checked judges each); ModelError with its
        reason when the batch got no scores at all."""
        request = (json.dumps({"rows": [list(map(float, r)) for r in rows]},
                              allow_nan=False) + "\n").encode()
        for attempt in (1, 2):
            self.start()
            assert self.proc is not None and self.proc.stdin is not None
            try:
                self.proc.stdin.write(request)
                self.proc.stdin.flush()
                doc = self._answer(WORKER_ANSWER_S)
            except (BrokenPipeError, ModelError) as err:
                # It may have reached its idle exit just as we wrote: one new worker, once.
                self.close()
                if attempt == 2:
                    if isinstance(err, ModelError):
                        raise
                    raise ModelError(f"scoring worker for {self.path} went away",
                                     "worker_crash") from err
                continue
            if "error" in doc:
                raise ModelError(f"scoring worker for {self.path}: {str(doc['error'])[:300]}",
                                 str(doc.get("reason") or "inference_error"))
            scores = doc.get("scores")
            if not isinstance(scores, list) or len(scores) != len(rows):
                raise ModelError(f"scoring worker for {self.path}: scores missing or not one "
                                 "a row", "bad_output")
            return scores
        return []  # pragma: no cover - the loop returns or raises

    def close(self) -> None:
        """Stop the worker now (closing its stdin ends it; kill if it lingers)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def worker_main(path: str, sha256: str, idle_s: float) -> int:
    """The scoring worker: load the model, say ready, score JSON lines until idle or EOF."""
    import select

    out = sys.stdout

    def say(doc: dict[str, Any]) -> None:
        out.write(json.dumps(doc) + "\n")
        out.flush()

    try:
        model_path, blob, card = read_checked(path)
        if card["sha256"] != sha256:
            raise ModelError(f"model {path} changed since the agent checked it")
        session, input_name = make_session(model_path, blob, card)
    except ModelError as err:
        say({"error": str(err)})
        return 1
    say({"ready": True})
    stdin = sys.stdin.buffer
    while True:
        ready, _, _ = select.select([stdin], [], [], idle_s)
        if not ready:
            return 0  # idle: leave no resident memory behind
        line = stdin.readline(1 << 24)
        if not line:
            return 0
        try:
            rows = json.loads(line)["rows"]
            say({"scores": run_session(session, input_name, rows)})
        except Exception as err:  # report it to the agent, which logs and counts it
            say({"error": f"{type(err).__name__}: {err}",
                 "reason": getattr(err, "reason", "inference_error")})


class Scorer:
    """The current model (the last good one) and why scoring is off, if it is."""

    def __init__(self, worker: bool = False) -> None:
        self.model: Model | None = None
        self.error: str | None = None
        self.worker = worker  # score in a worker process that is not resident between cycles

    def load(self, path: str | Path | None = None) -> bool:
        """Load a model (default: the packaged one); on failure keep the last good one."""
        target = Path(path) if path else packaged_model()
        try:
            model = load_worker_model(target) if self.worker else load_model(target)
        except ModelError as err:
            self.error = str(err)
            log.error("model refused", extra={"model": str(target), "error": str(err),
                                              "keeping": self.model.version if self.model
                                              else "none: not scoring"})
            return False
        old, self.model, self.error = self.model, model, None
        if old is not None and isinstance(old.session, WorkerSession):
            old.session.close()
        log.info("model loaded", extra={"model": str(target), "version": model.version})
        return True

    @property
    def version(self) -> str | None:
        return self.model.version if self.model else None

    def score(self, rows: Sequence[Sequence[float]]) -> list[float]:
        """Return P(fails within 7 days) for each row, in one batch; [] without a model.

        In a worker, a batch with any unusable score gives [] (score_checked says which and
        why); in process, the model's numbers as they came (a shadow run judges them)."""
        if self.model is None or not rows:
            return []
        width = len(NAMES)
        if any(len(r) != width for r in rows):
            raise ValueError(f"every row must have {width} features")
        if isinstance(self.model.session, WorkerSession):
            scores, errors = self.score_checked(rows)
            return [] if errors else scores  # type: ignore[return-value]
        return run_session(self.model.session, self.model.input_name, rows)

    def score_checked(self, rows: Sequence[Sequence[float]]
                      ) -> tuple[list[float | None], Counter[str]]:
        """Score rows in one batch; return each row's score (None when it has no usable one)
        and the rows without one, counted by reason (SCORING_ERROR_REASONS). A batch that
        fails as a whole (the session raised, the worker crashed, hung or could not start,
        the output had the wrong shape) counts every row; a NaN, an infinity or a number
        outside [0, 1] counts its own row, and the other rows keep their scores. Without a
        model: ([], no errors); the caller knows whether it wanted one."""
        errors: Counter[str] = Counter()
        if self.model is None or not rows:
            return [], errors
        width = len(NAMES)
        if any(len(r) != width for r in rows):
            raise ValueError(f"every row must have {width} features")
        try:
            if isinstance(self.model.session, WorkerSession):
                raw = self.model.session.run(rows)
            else:
                raw = run_session(self.model.session, self.model.input_name, rows)
        except ModelError as err:  # this batch goes without scores; the next tries again
            log.error("scoring failed", extra={"error": str(err)[:300], "reason": err.reason,
                                               "devices": len(rows)})
            errors[err.reason] += len(rows)
            return [None] * len(rows), errors
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
            log.error("scoring failed", extra={"error": f"{type(err).__name__}: {err}"[:300],
                                               "reason": "inference_error",
                                               "devices": len(rows)})
            errors["inference_error"] += len(rows)
            return [None] * len(rows), errors
        out: list[float | None] = []
        for x in raw:
            if type(x) not in (float, int):
                errors["bad_output"] += 1
                out.append(None)
            elif not math.isfinite(x):
                errors["non_finite"] += 1
                out.append(None)
            elif not 0.0 <= x <= 1.0:
                errors["out_of_range"] += 1
                out.append(None)
            else:
                out.append(float(x))
        if errors:
            log.error("scores refused", extra={"model": self.version, **dict(errors)})
        return out, errors

    def warm(self) -> None:
        """Start the scoring worker before a cycle (call it off the event loop); a worker that
        cannot start is logged, and the cycle runs without scores."""
        if self.model is not None and isinstance(self.model.session, WorkerSession):
            try:
                self.model.session.start()
            except ModelError as err:
                log.error("scoring worker cannot start", extra={"error": str(err)})

    def close(self) -> None:
        """Stop the scoring worker, if there is one."""
        if self.model is not None and isinstance(self.model.session, WorkerSession):
            self.model.session.close()

    def state(self) -> dict[str, Any]:
        """What `status` shows: scoring or not, the model version, the last refusal."""
        return {"scoring": self.model is not None, "model": self.version,
                "path": str(self.model.path) if self.model else None, "error": self.error}


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        raise SystemExit(worker_main(sys.argv[2], sys.argv[3], float(sys.argv[4])))
    print("usage: python -m edge_agent.health.scorer --worker MODEL SHA256 IDLE_S",
          file=sys.stderr)
    raise SystemExit(2)
