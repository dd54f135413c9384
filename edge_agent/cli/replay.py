"""`edge-agent replay READINGS.jsonl`: run features, scorer and policy over recorded readings."""

from __future__ import annotations

import json
import sys

from edge_agent.cli.output import error
from edge_agent.errors import ReadingError

MAX_LINE = 1024 * 1024
MAX_BAD_SHOWN = 20


def register(sub) -> None:
    p = sub.add_parser("replay", help="decide over recorded readings, as the agent would",
                       description="Feed recorded readings (one serialized reading a line, "
                                   "timestamps in order) through the health features, the "
                                   "model and the policy; print each decision and alert with "
                                   "its timestamp. Bad lines are reported with their number.")
    p.add_argument("file", help="JSONL file of readings ('-' for stdin)")
    p.add_argument("--config", help="TOML config whose [scoring] section to use")
    p.add_argument("--model", help="ONNX model file (default: [scoring].model or packaged)")
    p.add_argument("--interval", type=float, default=None,
                   help="seconds of reading time between cycles (default [scoring].interval)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object a line: {\"kind\": \"decision\"|\"alert\", \"body\": ...}")
    p.set_defaults(func=run)


def _settings(args):
    import dataclasses

    from edge_agent.config import ScoringSection, load_config

    s = load_config(args.config).scoring if args.config else ScoringSection()
    if args.model:
        s = dataclasses.replace(s, model=args.model)
    if args.interval is not None:
        if not args.interval > 0:
            raise ValueError("--interval: must be > 0")
        s = dataclasses.replace(s, interval=args.interval)
    return s


def run(args) -> int:
    from edge_agent.health.engine import HealthEngine

    try:
        settings = _settings(args)
    except ValueError as err:
        error(str(err))
        return 2
    engine = HealthEngine(settings)
    if settings.enabled:
        from edge_agent.health.scorer import load_model, packaged_model

        # A bad model is the user's to fix: say why (ModelError) and stop, no log noise.
        engine.scorer.model = load_model(settings.model or packaged_model())
    try:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8",
                                                          errors="replace")
    except OSError as err:
        error(f"cannot read {args.file}: {err.strerror or err}")
        return 2
    counts = {"readings": 0, "bad": 0, "decisions": 0, "alerts": 0}
    next_cycle = None
    last_ts = None

    def emit(now: float) -> None:
        decisions, alerts = engine.cycle(now)
        for kind, bodies in (("decision", decisions), ("alert", alerts)):
            for body in bodies:
                counts[kind + "s"] += 1
                if args.json:
                    print(json.dumps({"kind": kind, "body": body}, separators=(",", ":")))
                else:
                    print(_line(kind, body))

    with stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                reading = parse_line(line, last_ts)
                ts = reading.ts.timestamp()
            except ReadingError as err:
                counts["bad"] += 1
                if counts["bad"] <= MAX_BAD_SHOWN:
                    print(f"{args.file}:{number}: {err}", file=sys.stderr)
                continue
            if last_ts is not None and ts > last_ts and last_ts >= next_cycle:
                emit(last_ts)
                next_cycle = last_ts + settings.interval
            if next_cycle is None:
                next_cycle = ts + settings.interval
            engine.observe(reading)
            counts["readings"] += 1
            last_ts = ts
    if last_ts is not None:
        emit(last_ts)
    state = engine.state()
    model = state["model"] or "no model"
    print(f"replayed {counts['readings']} readings ({counts['bad']} bad lines) with {model}: "
          f"{counts['decisions']} decisions, {counts['alerts']} alerts", file=sys.stderr)
    if counts["bad"] > MAX_BAD_SHOWN:
        print(f"({counts['bad'] - MAX_BAD_SHOWN} more bad lines not shown)", file=sys.stderr)
    return 0 if counts["readings"] else 1


def parse_line(line: str, last_ts: float | None):
    """Parse one replay line into a Reading; raise ReadingError saying what is wrong."""
    from edge_agent.reading import Reading, validate

    if len(line) > MAX_LINE:
        raise ReadingError(f"longer than {MAX_LINE} bytes")
    reading = Reading.from_json(line)
    # What the agent would never record is refused here too (found by fuzzing: a stale reading
    # without a reason passed the parser, though validate() refuses it).
    problems = validate(reading)
    if problems:
        raise ReadingError("; ".join(problems))
    try:
        ts = reading.ts.timestamp()
    except (OverflowError, ValueError, OSError) as err:
        raise ReadingError(f"ts: out of range: {err}") from err
    if last_ts is not None and ts < last_ts:
        raise ReadingError("timestamp earlier than the line before it")
    return reading


def _line(kind: str, body: dict) -> str:
    if kind == "decision":
        score = f"score {body['score']:.3f}" if body["score"] is not None else "no score"
        prev = body["previous"] or "-"
        return (f"{body['ts']}  {body['device']}  {prev} -> {body['decision']}  {score}  "
                f"({'; '.join(body['explanation'])})")
    return (f"{body['ts']}  {body['device']}  alert {body['what']} {body['state']} "
            f"({body['severity']}): {'; '.join(body['explanation'])}")
