"""Typed, range-checked message bodies: Reading, Telemetry, Decision, Alert, Birth, Death, Event.

Every body from the network is untrusted. `from_dict` checks EVERY field, so that whatever
passes can be stored and shown without another check:
- timestamps parse, and lie within a skew of the receiver's clock when a clock is given;
- integers fit a signed 64-bit BIGINT, floats are finite (and so fit DOUBLE PRECISION);
- text is a str, bounded in length and free of NUL, control characters and bidi overrides;
  identifiers (device, what, alert key, kinds) are stricter: [A-Za-z0-9][A-Za-z0-9_.:-]*;
- nested maps and lists are bounded in size and hold only scalars.
Anything else raises ProtocolError with a reason code the hub counts: bad_body (shape or
type), bad_ts, implausible_ts, out_of_range (numbers), bad_text.

`check_body(kind, body, clock, skew)` is what envelope.decode() calls: the same checks, with
a fast path for telemetry (the hub's hot path) that builds no objects for a valid reading.
Names unknown to the vocabulary are accepted in reading values (a newer agent may know more
words), but their values must still be scalars within range.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

from edge_protocol import vocabulary
from edge_protocol.errors import ProtocolError
from edge_protocol.timestamps import DEFAULT_SKEW, Clock, Skew, check_plausible, parse_ts

MIN_INT, MAX_INT = -(2**63), 2**63 - 1   # what a database's BIGINT holds
# An agent counts sessions one a connection and seqs one a message, from 1: beyond these they
# are absurd (2^31 connections is 68 years at one a second; 2^53 messages 285 years at a
# million a second), and a session or seq of 2^63-1 would pin a store at the hub for good.
MAX_SESSION = 2**31 - 1
MAX_SEQ = 2**53
MAX_TEXT = 1000          # characters in a free text field (reason, explanation line, version)
MAX_LIST = 64            # explanation lines
MAX_MAP = 512            # keys in values / features / extra maps
MAX_READINGS = 5000      # readings in one telemetry message
MAX_INVENTORY = 5000     # devices in one birth
DECISIONS = ("ok", "watch", "predicted_failure", "failed")
ALERT_STATES = ("raised", "cleared")
SEVERITIES = ("info", "warning", "critical")
ALERT_FAMILIES = ("attention", "failed", "predicted_failure")   # docs/alerts.md
ALERT_AUDIENCES = ("store", "region", "central_it")

Scalar = Union[str, int, float, bool, None]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}\Z")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,160}\Z")     # alert keys: "<device>:<what>"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:<>\-]{0,127}\Z")  # value and feature names
# C0 and C1 controls (NUL, BEL, BS, ESC, CR, LF, DEL...) and the bidi controls that reorder
# what a terminal shows (U+202E right-to-left override and its kin).
_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                        "\ud800-\udfff]")


def _fail(code: str, detail: str) -> ProtocolError:
    return ProtocolError(code, detail)


def _ts_fail(err: ProtocolError, name: str) -> ProtocolError:
    detail = err.detail[4:] if err.detail.startswith("ts: ") else err.detail
    return ProtocolError(err.code, f"{name}: {detail}")


def check_text(value: object, name: str, *, optional: bool = False,
               max_len: int = MAX_TEXT) -> Optional[str]:
    """A bounded str free of control characters (None allowed when optional)."""
    if value is None and optional:
        return None
    if type(value) is not str:
        raise _fail("bad_body", f"{name}: expected a string")
    if len(value) > max_len:
        raise _fail("bad_text", f"{name}: longer than {max_len} characters")
    if _BAD_CHARS.search(value):
        raise _fail("bad_text", f"{name}: contains a control character")
    return value


def clean_text(value: str, max_len: int = MAX_TEXT) -> str:
    """What an encoder sends for device-reported text: each control or bidi character becomes a
    space and the text is cut to max_len (an SNMP sysDescr often ends in CR LF)."""
    if _BAD_CHARS.search(value):
        value = _BAD_CHARS.sub(" ", value)
    return value[:max_len]


def check_id(value: object, name: str, pattern: re.Pattern = _ID) -> str:
    """An identifier: letters, digits and _ . : - only, bounded."""
    if type(value) is not str:
        raise _fail("bad_body", f"{name}: expected a string")
    if not pattern.match(value):
        raise _fail("bad_text", f"{name}: not a valid identifier")
    return value


def check_int(value: object, name: str, lo: int = MIN_INT, hi: int = MAX_INT) -> int:
    """An int (not a bool) within [lo, hi] (by default what a BIGINT holds)."""
    if type(value) is not int:
        raise _fail("bad_body", f"{name}: expected an integer")
    if not lo <= value <= hi:
        raise _fail("out_of_range", f"{name}: outside {lo}..{hi}")
    return value


def check_number(value: object, name: str, *, optional: bool = False) -> Optional[float]:
    """A finite number that fits DOUBLE PRECISION (an int is taken when it fits a BIGINT)."""
    if value is None and optional:
        return None
    t = type(value)
    if t is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise _fail("out_of_range", f"{name}: not a finite number")
        return value  # type: ignore[return-value]
    if t is int:
        if not MIN_INT <= value <= MAX_INT:  # type: ignore[operator]
            raise _fail("out_of_range", f"{name}: outside a 64-bit integer")
        return value  # type: ignore[return-value]
    raise _fail("bad_body", f"{name}: expected a number")


def check_scalar(value: object, name: str) -> Scalar:
    """A JSON scalar within the column ranges: bounded text, BIGINT int, finite float."""
    t = type(value)
    if value is None or t is bool:
        return value  # type: ignore[return-value]
    if t is str:
        return check_text(value, name)
    if t is int or t is float:
        return check_number(value, name)
    raise _fail("bad_body", f"{name}: expected a string, number, boolean or null")


def check_ts(value: object, name: str, clock: Clock | None, skew: Skew) -> str:
    """A timestamp string that parses (and is plausible against the clock, when given)."""
    if type(value) is not str:
        raise _fail("bad_body", f"{name}: expected an ISO 8601 string")
    try:
        when = parse_ts(value)
        if clock is not None:
            check_plausible(when, clock, skew, name)
    except ProtocolError as err:
        raise _ts_fail(err, name) from err
    return value  # type: ignore[return-value]


def _map(value: object, name: str, *, optional: bool = False) -> dict:
    if value is None and optional:
        return {}
    if type(value) is not dict:
        raise _fail("bad_body", f"{name}: expected an object")
    if len(value) > MAX_MAP:  # type: ignore[arg-type]
        raise _fail("bad_body", f"{name}: more than {MAX_MAP} entries")
    return value  # type: ignore[return-value]


def _lines(value: object, name: str) -> tuple[str, ...]:
    if type(value) is not list:
        raise _fail("bad_body", f"{name}: expected a list of strings")
    if len(value) > MAX_LIST:  # type: ignore[arg-type]
        raise _fail("bad_body", f"{name}: more than {MAX_LIST} entries")
    return tuple(check_text(e, f"{name}[{i}]") for i, e in enumerate(value))  # type: ignore


def check_values(values: Mapping[str, object], *, strict_names: bool = True) -> list[str]:
    """Return one problem per value that is not valid in the vocabulary (empty if all are).

    Every value must also be a scalar within range; a name unknown to the vocabulary is a
    problem only with strict_names.
    """
    problems = []
    for name, value in values.items():
        if type(name) is not str or not _NAME.match(name):
            problems.append(f"values: key {str(name)[:80]!r} is not a valid name")
            continue
        try:
            check_scalar(value, f"values.{name}")
        except ProtocolError as err:
            problems.append(err.detail)
            continue
        why = vocabulary.check_value(name, value)
        if why and (strict_names or why != "not in the vocabulary"):
            problems.append(f"values.{name}: {why}")
    return problems


# Typed bodies ---------------------------------------------------------------------------------

_READING_KEYS = frozenset(("device", "kind", "ts", "values", "stale", "reason"))


@dataclass(frozen=True, slots=True)
class Reading:
    """One poll of one device, as it travels in a telemetry body (ts kept as sent)."""

    device: str
    kind: str
    ts: str
    values: Mapping[str, Scalar] = field(default_factory=dict)
    stale: bool = False
    reason: Optional[str] = None

    @classmethod
    def from_dict(cls, data: object, clock: Clock | None = None, skew: Skew = DEFAULT_SKEW,
                  *, strict_names: bool = False, where: str = "reading") -> "Reading":
        if type(data) is not dict:
            raise _fail("bad_body", f"{where}: expected an object")
        unknown = set(data) - _READING_KEYS  # type: ignore[arg-type]
        if unknown:
            raise _fail("bad_body", f"{where}: unknown field(s) "
                        f"{', '.join(sorted(str(u)[:40] for u in unknown))[:200]}")
        get = data.get  # type: ignore[attr-defined]
        device = check_id(get("device"), f"{where}.device")
        kind = check_id(get("kind"), f"{where}.kind")
        ts = check_ts(get("ts"), f"{where}.ts", clock, skew)
        values = _map(get("values", {}), f"{where}.values")
        problems = check_values(values, strict_names=strict_names)
        if problems:
            code = "bad_text" if "control character" in problems[0] or \
                "longer than" in problems[0] else \
                "out_of_range" if "outside" in problems[0] or "finite" in problems[0] \
                else "bad_body"
            raise _fail(code, f"{where}: " + "; ".join(problems)[:250])
        stale = get("stale", False)
        if type(stale) is not bool:
            raise _fail("bad_body", f"{where}.stale: expected true or false")
        reason = check_text(get("reason"), f"{where}.reason", optional=True)
        return cls(device, kind, ts, values, stale, reason)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "kind": self.kind, "ts": self.ts,
                "values": dict(self.values), "stale": self.stale, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Telemetry:
    readings: tuple[Reading, ...]

    @classmethod
    def from_dict(cls, data: object, clock: Clock | None = None,
                  skew: Skew = DEFAULT_SKEW) -> "Telemetry":
        readings = _readings(data)
        return cls(tuple(Reading.from_dict(r, clock, skew, where=f"readings[{i}]")
                         for i, r in enumerate(readings)))

    def to_dict(self) -> dict[str, Any]:
        return {"readings": [r.to_dict() for r in self.readings]}


def _readings(data: object) -> list:
    if type(data) is not dict:
        raise _fail("bad_body", "body: expected an object")
    readings = data.get("readings")  # type: ignore[attr-defined]
    if type(readings) is not list:
        raise _fail("bad_body", "readings: missing or of the wrong type")
    if len(readings) > MAX_READINGS:
        raise _fail("bad_body", f"readings: more than {MAX_READINGS}")
    return readings


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy concluded for one device, with its provenance."""

    device: str
    decision: str
    ts: str
    previous: Optional[str] = None
    score: Optional[float] = None
    threshold: Optional[float] = None
    model: Optional[str] = None
    features: Mapping[str, Optional[float]] = field(default_factory=dict)
    explanation: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: object, clock: Clock | None = None, skew: Skew = DEFAULT_SKEW,
                  *, where: str = "") -> "Decision":
        if type(data) is not dict:
            raise _fail("bad_body", f"{where}body: expected an object")
        get = data.get  # type: ignore[attr-defined]
        device = check_id(get("device"), where + "device")
        decision = get("decision")
        if type(decision) is not str or decision not in DECISIONS:
            raise _fail("bad_body", f"{where}decision: not one of the decisions")
        previous = get("previous")
        if previous is not None and (type(previous) is not str or previous not in DECISIONS):
            raise _fail("bad_body", f"{where}previous: not one of the decisions")
        score = check_number(get("score"), where + "score", optional=True)
        threshold = check_number(get("threshold"), where + "threshold", optional=True)
        model = check_text(get("model"), where + "model", optional=True, max_len=200)
        features = _map(get("features"), where + "features")
        for name, value in features.items():
            if type(name) is not str or not _NAME.match(name):
                raise _fail("bad_text", f"{where}features: a key is not a valid name")
            check_number(value, f"{where}features.{name}", optional=True)
        explanation = _lines(get("explanation"), where + "explanation")
        ts = check_ts(get("ts"), where + "ts", clock, skew)
        return cls(device, decision, ts, previous, score, threshold, model, features,
                   explanation)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "decision": self.decision, "previous": self.previous,
                "score": self.score, "threshold": self.threshold, "model": self.model,
                "features": dict(self.features), "explanation": list(self.explanation),
                "ts": self.ts}


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert raised or cleared on a device; `alert` is its stable key "<device>:<what>"."""

    alert: str
    device: str
    what: str
    state: str
    severity: str
    since: str
    ts: str
    explanation: tuple[str, ...] = ()
    decision: Optional[Decision] = None
    # Optional (docs/alerts.md); an older agent sends none of them.
    family: Optional[str] = None
    audience: Optional[str] = None
    escalated: Optional[bool] = None
    escalated_after_s: Optional[float] = None
    supersedes: Optional[dict] = None   # {"alert": key, "since": ts, "lead_s": seconds >= 0}

    @classmethod
    def from_dict(cls, data: object, clock: Clock | None = None,
                  skew: Skew = DEFAULT_SKEW) -> "Alert":
        if type(data) is not dict:
            raise _fail("bad_body", "body: expected an object")
        get = data.get  # type: ignore[attr-defined]
        alert = check_id(get("alert"), "alert", _KEY)
        device = check_id(get("device"), "device")
        what = check_id(get("what"), "what")
        state = get("state")
        if type(state) is not str or state not in ALERT_STATES:
            raise _fail("bad_body", "state: not raised or cleared")
        severity = get("severity")
        if type(severity) is not str or severity not in SEVERITIES:
            raise _fail("bad_body", "severity: not a severity")
        # since: when the condition began; it may be older than the skew allows for a ts
        # (an alert raised long ago and cleared now), so only its parse and the future bound.
        since = check_ts(get("since"), "since", clock,
                         Skew(skew.future_s, max(skew.past_s, 10 * 365 * 86400.0)))
        ts = check_ts(get("ts"), "ts", clock, skew)
        explanation = _lines(get("explanation"), "explanation")
        decision = get("decision")
        typed = None if decision is None else Decision.from_dict(decision, clock, skew,
                                                                  where="decision.")
        family = get("family")
        if family is not None and (type(family) is not str or family not in ALERT_FAMILIES):
            raise _fail("bad_body", "family: not an alert family")
        audience = get("audience")
        if audience is not None and (type(audience) is not str
                                     or audience not in ALERT_AUDIENCES):
            raise _fail("bad_body", "audience: not an audience")
        escalated = get("escalated")
        if escalated is not None and type(escalated) is not bool:
            raise _fail("bad_body", "escalated: expected true or false")
        after = check_number(get("escalated_after_s"), "escalated_after_s", optional=True)
        if after is not None and after < 0:
            raise _fail("out_of_range", "escalated_after_s: must be >= 0")
        sup = get("supersedes")
        if sup is not None:
            if type(sup) is not dict or set(sup) != {"alert", "since", "lead_s"}:
                raise _fail("bad_body", "supersedes: expected {alert, since, lead_s}")
            lead = check_number(sup["lead_s"], "supersedes.lead_s")
            if lead is None or lead < 0:
                raise _fail("out_of_range", "supersedes.lead_s: must be >= 0")
            sup = {"alert": check_id(sup["alert"], "supersedes.alert", _KEY),
                   "since": check_ts(sup["since"], "supersedes.since", clock,
                                     Skew(skew.future_s, max(skew.past_s, 10 * 365 * 86400.0))),
                   "lead_s": lead}
        return cls(alert, device, what, state, severity, since, ts, explanation, typed,
                   family, audience, escalated, after, sup)

    def to_dict(self) -> dict[str, Any]:
        out = {"alert": self.alert, "device": self.device, "what": self.what,
               "state": self.state, "severity": self.severity, "since": self.since,
               "ts": self.ts, "explanation": list(self.explanation),
               "decision": None if self.decision is None else self.decision.to_dict()}
        for name in ("family", "audience", "escalated", "escalated_after_s", "supersedes"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


MAX_DEPTH = 4      # nesting of maps and lists in fields a newer peer may add
MAX_ITEMS = 4096   # scalars and containers in all of them together


def _bounded(value: object, where: str, depth: int, budget: list[int]) -> None:
    """A JSON value of bounded depth and size whose keys and scalars are checked."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _fail("bad_body", f"{where}: more than {MAX_ITEMS} items")
    t = type(value)
    if t is dict or t is list:
        if depth >= MAX_DEPTH:
            raise _fail("bad_body", f"{where}: nested deeper than {MAX_DEPTH}")
        if t is dict:
            for k, v in value.items():  # type: ignore[attr-defined]
                check_text(k, f"{where}: key", max_len=128)
                _bounded(v, f"{where}.{k}", depth + 1, budget)
        else:
            for i, v in enumerate(value):  # type: ignore[arg-type]
                _bounded(v, f"{where}[{i}]", depth + 1, budget)
    else:
        check_scalar(value, where)


def _extra(data: Mapping[str, object], known: frozenset, where: str) -> dict[str, Any]:
    """Fields a newer peer may add (capabilities, ...): bounded in number, depth and size,
    text-keyed, every scalar checked."""
    extra = {k: v for k, v in data.items() if k not in known}
    if len(extra) > 64:
        raise _fail("bad_body", f"{where}: more than 64 unknown fields")
    budget = [MAX_ITEMS]
    for key, value in extra.items():
        if type(key) is not str or not _NAME.match(key):
            raise _fail("bad_text", f"{where}: a field name is not valid")
        _bounded(value, f"{where}.{key}", 0, budget)
    return extra


@dataclass(frozen=True, slots=True)
class Birth:
    """A store's agent connected: its session, inventory and versions."""

    session: int
    inventory: tuple[tuple[str, str], ...]  # (device id, collector kind)
    agent_version: Optional[str] = None
    model_version: Optional[str] = None
    config_hash: Optional[str] = None
    last_seq: Optional[int] = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # capabilities and newer fields
    # The agent's state database's own id (made once with it): sessions and seqs count within
    # one instance, so a store whose state was lost comes back as a new instance at session 1.
    instance: Optional[str] = None

    _KNOWN = frozenset(("session", "inventory", "agent_version", "model_version",
                        "config_hash", "last_seq", "instance"))

    @classmethod
    def from_dict(cls, data: object, clock: Clock | None = None,
                  skew: Skew = DEFAULT_SKEW) -> "Birth":
        if type(data) is not dict:
            raise _fail("bad_body", "body: expected an object")
        get = data.get  # type: ignore[attr-defined]
        session = check_int(get("session"), "session", 0, MAX_SESSION)
        inventory = get("inventory")
        if type(inventory) is not list:
            raise _fail("bad_body", "inventory: missing or of the wrong type")
        if len(inventory) > MAX_INVENTORY:
            raise _fail("bad_body", f"inventory: more than {MAX_INVENTORY} devices")
        items = []
        for i, item in enumerate(inventory):
            if type(item) is not dict or type(item.get("id")) is not str \
                    or type(item.get("kind")) is not str:
                raise _fail("bad_body", f"inventory[{i}]: needs id and kind")
            items.append((check_id(item["id"], f"inventory[{i}].id"),
                          check_id(item["kind"], f"inventory[{i}].kind")))
        agent_version = check_text(get("agent_version"), "agent_version", optional=True,
                                   max_len=100)
        model_version = check_text(get("model_version"), "model_version", optional=True,
                                   max_len=200)
        config_hash = check_text(get("config_hash"), "config_hash", optional=True, max_len=200)
        last_seq = get("last_seq")
        if last_seq is not None:
            check_int(last_seq, "last_seq", 0, MAX_SEQ)
        instance = get("instance")
        if instance is not None:
            check_id(instance, "instance")
        extra = _extra(data, cls._KNOWN, "birth")  # type: ignore[arg-type]
        return cls(session, tuple(items), agent_version, model_version, config_hash, last_seq,
                   extra, instance)


@dataclass(frozen=True, slots=True)
class Death:
    """A store's agent went away (its Will, or a clean goodbye)."""

    session: int
    instance: Optional[str] = None  # as in the birth

    @classmethod
    def from_dict(cls, data: object, clock: Clock | None = None,
                  skew: Skew = DEFAULT_SKEW) -> "Death":
        if type(data) is not dict:
            raise _fail("bad_body", "body: expected an object")
        session = check_int(data.get("session"), "session", 0,  # type: ignore[attr-defined]
                            MAX_SESSION)
        instance = data.get("instance")  # type: ignore[attr-defined]
        if instance is not None:
            check_id(instance, "instance")
        _extra(data, frozenset(("session", "instance")), "death")  # type: ignore[arg-type]
        return cls(session, instance)


# Why a device went without a model score in a scoring cycle (docs/protocol.md, the
# scoring_errors event). An agent uses only these; the hub takes any other identifier too
# (a newer agent may know more), at most MAX_REASONS of them.
SCORING_ERROR_REASONS = ("inference_error", "non_finite", "out_of_range", "bad_output",
                         "worker_crash", "worker_timeout", "worker_start", "no_model")
SCORING_ERRORS_EVENT = "scoring_errors"
MAX_REASONS = 16


def check_counts(value: object, name: str) -> dict[str, int]:
    """{reason: count}: at most MAX_REASONS identifiers, each count an int in 0..MAX_SEQ."""
    if type(value) is not dict:
        raise _fail("bad_body", f"{name}: expected an object of counts")
    if len(value) > MAX_REASONS:  # type: ignore[arg-type]
        raise _fail("bad_body", f"{name}: more than {MAX_REASONS} reasons")
    return {check_id(k, f"{name}: reason"): check_int(v, f"{name}.{k}", 0, MAX_SEQ)
            for k, v in value.items()}  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ScoringErrors:
    """The body of a `scoring_errors` event: devices that went without a model score, by
    reason, since the previous such event (`errors`) and since the agent's state database was
    made (`total`, kept across restarts), with the model scoring when it was sent."""

    errors: Mapping[str, int]
    total: Mapping[str, int]
    model: Optional[str] = None

    _KNOWN = frozenset(("event", "errors", "total", "model"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ScoringErrors":
        errors = check_counts(data.get("errors"), "errors")
        total = check_counts(data.get("total"), "total")
        model = check_text(data.get("model"), "model", optional=True, max_len=200)
        _extra(data, cls._KNOWN, "event")
        return cls(errors, total, model)

    def to_dict(self) -> dict[str, Any]:
        return {"event": SCORING_ERRORS_EVENT, "errors": dict(self.errors),
                "total": dict(self.total), "model": self.model}


@dataclass(frozen=True, slots=True)
class Event:
    """Something a store wants the hub to know that is neither a reading nor an alert.

    Most events are free-form (bounded, every scalar checked); a `scoring_errors` event is
    typed (`scoring`: its ScoringErrors)."""

    event: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    scoring: Optional[ScoringErrors] = None

    @classmethod
    def from_dict(cls, data: object, clock: Clock | None = None,
                  skew: Skew = DEFAULT_SKEW) -> "Event":
        if type(data) is not dict:
            raise _fail("bad_body", "body: expected an object")
        event = check_id(data.get("event"), "event")  # type: ignore[attr-defined]
        scoring = None
        if event == SCORING_ERRORS_EVENT:
            scoring = ScoringErrors.from_dict(data)  # type: ignore[arg-type]
        return cls(event, _extra(data, frozenset(("event",)), "event"),  # type: ignore
                   scoring)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, **self.detail}


BODIES = {"telemetry": Telemetry, "decision": Decision, "alert": Alert, "birth": Birth,
          "death": Death, "event": Event}


def parse_body(kind: str, body: object, clock: Clock | None = None,
               skew: Skew = DEFAULT_SKEW):
    """Return the typed body of one kind of message (raise ProtocolError)."""
    cls = BODIES.get(kind)
    if cls is None:
        raise _fail("unknown_kind", str(kind)[:40])
    return cls.from_dict(body, clock, skew)


# The hot path ---------------------------------------------------------------------------------

class _TsCache:
    """Timestamps already parsed, with their epoch seconds: a stream repeats them."""

    def __init__(self, size: int = 4096):
        self.size = size
        self.epochs: dict[str, float] = {}

    def epoch(self, text: str) -> float:
        e = self.epochs.get(text)
        if e is None:
            e = parse_ts(text).timestamp()
            if len(self.epochs) >= self.size:
                self.epochs.clear()
            self.epochs[text] = e
        return e


TS_CACHE = _TsCache()


def plausible_cached(text: object, name: str, clock: Clock | None, skew: Skew,
                     now: float | None = None) -> None:
    """check_ts for the hot path: a repeated timestamp costs one dict lookup."""
    if type(text) is not str:
        raise _fail("bad_body", f"{name}: expected an ISO 8601 string")
    try:
        epoch = TS_CACHE.epoch(text)  # type: ignore[arg-type]
    except ProtocolError as err:
        raise _ts_fail(err, name) from err
    except (OverflowError, OSError, ValueError) as err:
        raise _fail("bad_ts", f"{name}: out of range") from err
    if clock is not None:
        if now is None:
            now = clock()
        if epoch > now + skew.future_s:
            raise _fail("implausible_ts", f"{name}: {epoch - now:.0f} s ahead of the clock")
        if epoch < now - skew.past_s:
            raise _fail("implausible_ts", f"{name}: {now - epoch:.0f} s behind the clock")


_GOOD_IDS: set[str] = set()          # device and kind ids that passed _ID: a stream repeats them
_NAME_TYPE: dict[tuple[str, type], object] = {}  # (value name, value type) -> what to check
_ANY, _VALUE, _BAD = "any", "value", "bad"   # any value of the type / the value decides / never
_isfinite = math.isfinite
_NO_VALUES: dict = {}


def _learn(name: str, t: type) -> object:
    """What a value of type t under this name needs, from the name and the vocabulary."""
    if not _NAME.match(name) or t not in (str, int, float, bool, type(None)):
        return _BAD
    entry = vocabulary.lookup(name)
    if entry is None:
        return _ANY  # a name unknown here: a newer agent's word, its scalar still checked
    if t is type(None):
        return _ANY if entry.nullable else _BAD
    want = entry.type
    if want == "enum":
        return _VALUE
    ok = ((want == "bool" and t is bool) or (want == "int" and t is int)
          or (want == "float" and t in (int, float)) or (want == "str" and t is str))
    return _ANY if ok else _BAD


def _values_fast(values: dict) -> bool:
    """check_values(values, strict_names=False) == [] for the common case, or False."""
    if len(values) > MAX_MAP:
        return False
    cache = _NAME_TYPE
    for name, value in values.items():
        t = type(value)
        how = cache.get((name, t))
        if how is None:
            if len(cache) >= 8192:
                cache.clear()
            how = cache[(name, t)] = _learn(name, t)
        if how is _BAD:
            return False
        if how is _VALUE:
            if vocabulary.check_value(name, value):
                return False
        elif t is float:
            if not _isfinite(value):
                return False
        elif t is int:
            if not MIN_INT <= value <= MAX_INT:
                return False
        elif t is str:
            if len(value) > MAX_TEXT or _BAD_CHARS.search(value):
                return False
    return True


def _good_id(value: object) -> bool:
    if type(value) is not str:
        return False
    if value in _GOOD_IDS:
        return True
    if not _ID.match(value):
        return False
    if len(_GOOD_IDS) >= 65536:
        _GOOD_IDS.clear()
    _GOOD_IDS.add(value)
    return True


def _reading_fast(r: object, clock: Clock | None, skew: Skew, now: float | None) -> bool:
    """Reading.from_dict's checks without building a Reading; False sends it the slow way."""
    if type(r) is not dict or not _READING_KEYS.issuperset(r):
        return False
    get = r.get
    ts, device, kind = get("ts"), get("device"), get("kind")
    good = _GOOD_IDS
    if not ((type(device) is str and device in good) or _good_id(device)) \
            or not ((type(kind) is str and kind in good) or _good_id(kind)) \
            or type(ts) is not str:
        return False
    epoch = TS_CACHE.epochs.get(ts)
    if epoch is None or (clock is not None and not (now - skew.past_s <= epoch
                                                    <= now + skew.future_s)):
        try:
            plausible_cached(ts, "ts", clock, skew, now)
        except ProtocolError:
            return False
    values = get("values", _NO_VALUES)
    if type(values) is not dict or (values and not _values_fast(values)):
        return False
    stale, reason = get("stale", False), get("reason")
    if not (stale is True or stale is False):
        return False
    return reason is None or (type(reason) is str and len(reason) <= MAX_TEXT
                              and not _BAD_CHARS.search(reason))


def check_body(kind: str, body: Mapping[str, Any], clock: Clock | None = None,
               skew: Skew = DEFAULT_SKEW) -> None:
    """Validate the body of one kind of message; raise ProtocolError with a reason code."""
    if kind == "telemetry":
        readings = body.get("readings")
        if type(readings) is not list or len(readings) > MAX_READINGS:
            readings = _readings(body)  # raises its reason
        now = clock() if clock is not None else None
        fast = _reading_fast
        for r in readings:
            if not fast(r, clock, skew, now):
                break
        else:
            return
        for i, r in enumerate(readings):
            if not fast(r, clock, skew, now):
                Reading.from_dict(r, clock, skew, where=f"readings[{i}]")  # raises its reason
        return
    parse_body(kind, body, clock, skew)


__all__ = ["MIN_INT", "MAX_INT", "MAX_SESSION", "MAX_SEQ", "MAX_TEXT", "DECISIONS",
           "ALERT_STATES", "SEVERITIES", "ALERT_FAMILIES", "ALERT_AUDIENCES",
           "SCORING_ERROR_REASONS", "SCORING_ERRORS_EVENT", "MAX_REASONS", "check_counts",
           "Reading", "Telemetry", "Decision", "Alert", "Birth", "Death", "Event",
           "ScoringErrors", "BODIES",
           "parse_body", "check_body", "check_values", "check_text", "check_id", "check_int",
           "check_number", "check_scalar", "check_ts", "clean_text"]
