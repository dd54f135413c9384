"""The wire protocol between agent and hub: topics, the envelope, message bodies, validation.

Both sides import this module (the hub through `from edge_agent import wire`); it imports no
MQTT library. Every payload from the network is untrusted: `decode()` checks size, JSON, schema
version, field types, that the envelope's store, region and kind match its topic, and the body
of each kind, and raises WireError with a short reason code the consumer counts.

Topics (prefix configurable, default `edge/v1`):
    {prefix}/{region}/{store}/{kind}     kind in birth, death, telemetry, decision, alert, event
    {prefix}/{region}/{store}/cmd        hub to agent (signed); results on .../cmd/result
    {prefix}/{region}/{store}/config     hub to agent (signed, retained)
    {prefix}/hub/state                   hub online/offline (retained)
    {prefix}/alerts/{region}/{store}     the hub's feed for regional managers
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any, Mapping, NamedTuple

from edge_agent.reading import Reading, parse_ts, validate_values
from edge_agent.errors import EdgeError, ReadingError

try:  # the hub's extra: a C parser, 4x faster than json on an envelope, and strict by itself
    import orjson as _orjson
except ImportError:  # a store's agent: the standard library, made as strict below
    _orjson = None

VERSION = 1
DEFAULT_PREFIX = "edge/v1"
MAX_PAYLOAD = 256 * 1024  # bytes; a larger message is rejected unread
MAX_INT = 2**63 - 1  # seq and session: what a database's BIGINT holds
UP_KINDS = ("birth", "death", "telemetry", "decision", "alert", "event")
DECISIONS = ("ok", "watch", "predicted_failure", "failed")
ALERT_STATES = ("raised", "cleared")
SEVERITIES = ("info", "warning", "critical")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}\Z")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


class WireError(EdgeError):
    """A message that does not follow the protocol; `code` is a short reason to count by."""

    def __init__(self, code: str, detail: str = ""):
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}" if detail else code)


def topic(region: str, store: str, kind: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Return the topic a store publishes one kind of message on."""
    return f"{prefix}/{region}/{store}/{kind}"


def cmd_topic(region: str, store: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/{region}/{store}/cmd"


def config_topic(region: str, store: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/{region}/{store}/config"


def hub_state_topic(prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/hub/state"


def alert_feed_topic(region: str, store: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/alerts/{region}/{store}"


def shared_subscription(prefix: str = DEFAULT_PREFIX, group: str = "hub") -> str:
    """The MQTT v5 shared subscription hub workers use to split the stores' stream."""
    return f"$share/{group}/{prefix}/+/+/#"


@functools.lru_cache(maxsize=65536)  # a consumer sees the same topics again and again
def parse_topic(name: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, str, str]:
    """Split a store's topic into (region, store, kind); raise WireError if it is not one."""
    if not name.startswith(prefix + "/"):
        raise WireError("bad_topic", name)
    parts = name[len(prefix) + 1:].split("/")
    if len(parts) != 3 or parts[0] in ("hub", "alerts"):
        raise WireError("bad_topic", name)
    region, store, kind = parts
    if not _ID.match(region) or not _ID.match(store):
        raise WireError("bad_topic", name)
    if kind not in UP_KINDS:
        raise WireError("unknown_kind", kind)
    return region, store, kind


class Envelope(NamedTuple):
    """A decoded, validated message from a store (a named tuple: the hub makes one per message,
    three times faster than a frozen dataclass)."""

    v: int
    id: str
    seq: int
    store: str
    region: str
    ts: str
    kind: str
    body: Mapping[str, Any]


def encode(envelope: Mapping[str, Any]) -> bytes:
    """Serialize an envelope (a dict with the fields of Envelope) as compact JSON."""
    return json.dumps(envelope, separators=(",", ":"), allow_nan=False).encode()


# An escape of a UTF-16 surrogate in a JSON string: legal only as a high-low pair.
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")


def _loads_stdlib(payload: bytes) -> Any:
    """json.loads as strict as orjson: UTF-8 only, no lone surrogate, no NaN, bounded depth."""
    try:
        text = payload.decode("utf-8")  # json.loads would also take UTF-16 and UTF-32
    except UnicodeDecodeError as err:
        raise WireError("not_json", f"not UTF-8: {err}"[:120]) from err
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError as err:  # nesting deeper than the interpreter's stack
        raise WireError("not_json", "nested too deep") from err
    except ValueError as err:
        raise WireError("not_json", str(err)[:120]) from err
    if _SURROGATE_ESCAPE.search(payload):
        try:  # paired escapes made one character; a lone one cannot be written as UTF-8
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as err:
            raise WireError("not_json", "a lone surrogate in a string") from err
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: orjson refuses it too
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _loads_orjson(payload: bytes) -> Any:
    try:
        return _orjson.loads(payload)
    except _orjson.JSONDecodeError as err:
        raise WireError("not_json", str(err)[:120]) from err


def loads(payload: bytes) -> Any:
    """Parse JSON from the network: RFC 8259 and UTF-8 only, else WireError('not_json').

    orjson when installed (`pip install retail-edge[hub]`), else the standard library held to
    the same rules: no UTF-16/32, no lone surrogate escape, no NaN or Infinity, and nesting
    too deep is an error, not a RecursionError. Both reject the same inputs (tested).
    """
    return _loads_orjson(payload) if _orjson is not None else _loads_stdlib(payload)


_ENVELOPE_TYPES = (("id", str), ("store", str), ("region", str), ("ts", str), ("kind", str),
                   ("body", dict))


def decode(payload: bytes, topic_name: str | None = None,
           prefix: str = DEFAULT_PREFIX) -> Envelope:
    """Decode and validate one message; with its topic, check the envelope matches it.

    The hub calls this for every message it receives, so the common case is written for speed
    (exact type tests, which JSON's types allow; the topic's ids validated once per topic);
    every failure raises the same WireError, in the same order of checks, as the plain
    version would.
    """
    if len(payload) > MAX_PAYLOAD:
        raise WireError("oversized", f"{len(payload)} bytes > {MAX_PAYLOAD}")
    data = loads(payload)
    if type(data) is not dict:
        raise WireError("bad_envelope", "not a JSON object")
    get = data.get
    v = get("v")
    if v != VERSION:
        raise WireError("unknown_version", repr(v)[:40])
    id_, store, region, ts, kind, body = (get("id"), get("store"), get("region"), get("ts"),
                                          get("kind"), get("body"))
    if not (type(id_) is str and type(store) is str and type(region) is str
            and type(ts) is str and type(kind) is str and type(body) is dict):
        for key, want in _ENVELOPE_TYPES:
            if not isinstance(get(key), want):
                raise WireError("bad_envelope", f"{key}: missing or of the wrong type")
    seq = get("seq")
    if type(seq) is not int or not 0 <= seq <= MAX_INT:  # type(): a bool is not a seq
        raise WireError("bad_envelope", "seq: expected a non-negative 64-bit integer")
    if not _UUID.match(id_):
        raise WireError("bad_envelope", "id: not a UUID")
    parsed = topic_error = None
    if topic_name is not None:
        try:
            parsed = parse_topic(topic_name, prefix)  # cached per topic, ids checked there
        except WireError as err:
            topic_error = err
    if parsed is None or store != parsed[1] or region != parsed[0]:
        if not _ID.match(store) or not _ID.match(region):
            raise WireError("bad_envelope", "store or region: not a valid id")
    try:
        _check_ts(ts)
    except ReadingError as err:
        raise WireError("bad_envelope", str(err)) from err
    if kind not in UP_KINDS:
        raise WireError("unknown_kind", kind[:40])
    if topic_name is not None:
        if topic_error is not None:
            raise topic_error
        t_region, t_store, t_kind = parsed
        if t_region != region or t_store != store:
            raise WireError("topic_mismatch", f"envelope of {region}/{store} on {topic_name}")
        if t_kind != kind:
            raise WireError("topic_mismatch", f"kind {kind} on {topic_name}")
    check_body(kind, body)
    return Envelope(VERSION, id_, seq, store, region, ts, kind, body)


_GOOD_TS: dict[str, None] = {}  # timestamps parse_ts accepted: a stream repeats them
_READING_KEYS = frozenset(("device", "kind", "ts", "values", "stale", "reason"))


def _check_ts(text: object) -> None:
    """parse_ts's check, remembered for the strings that passed it (raises ReadingError)."""
    if type(text) is str and text in _GOOD_TS:
        return
    parse_ts(text)  # type: ignore[arg-type]
    if len(_GOOD_TS) >= 4096:
        _GOOD_TS.clear()
    _GOOD_TS[text] = None  # type: ignore[index]


def _reading_ok(r: object) -> bool:
    """Reading.from_dict's checks without building a Reading; False sends it the slow way."""
    if type(r) is not dict or not _READING_KEYS.issuperset(r):
        return False
    device, kind, ts = r.get("device"), r.get("kind"), r.get("ts")
    if type(device) is not str or not device or type(kind) is not str or not kind:
        return False
    if type(ts) is not str or ts not in _GOOD_TS:
        return False
    values = r.get("values", {})
    if type(values) is not dict or (values and validate_values(values, strict_names=False)):
        return False
    stale, reason = r.get("stale", False), r.get("reason")
    return (stale is True or stale is False) and (reason is None or type(reason) is str)


def _need(body: Mapping[str, Any], key: str, kinds: type | tuple[type, ...],
          optional: bool = False) -> Any:
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in
                                        (kinds if isinstance(kinds, tuple) else (kinds,))):
        raise WireError("bad_body", f"{key}: missing or of the wrong type")
    if isinstance(value, float) and not math.isfinite(value):
        raise WireError("bad_body", f"{key}: not a finite number")
    return value


def check_body(kind: str, body: Mapping[str, Any]) -> None:
    """Validate the body of one kind of message; raise WireError('bad_body', ...)."""
    if kind == "telemetry":
        readings = body.get("readings")
        if type(readings) is not list:
            readings = _need(body, "readings", list)  # raises its error
        for i, r in enumerate(readings):
            if _reading_ok(r):
                continue
            try:
                # Names unknown to this side are accepted: a newer agent may know more words.
                Reading.from_dict(r, strict_names=False)
                _check_ts(r["ts"])  # remembered: the next reading of this poll takes the fast way
            except ReadingError as err:
                raise WireError("bad_body", f"readings[{i}]: {err}") from err
    elif kind == "decision":
        check_decision(body)
    elif kind == "alert":
        check_alert(body)
    elif kind in ("birth", "death"):
        session = _need(body, "session", int)
        if not 0 <= session <= MAX_INT:
            raise WireError("bad_body", "session: must be a non-negative 64-bit integer")
        if kind == "birth":
            inventory = _need(body, "inventory", list)
            for i, item in enumerate(inventory):
                if not (isinstance(item, dict) and isinstance(item.get("id"), str)
                        and isinstance(item.get("kind"), str)):
                    raise WireError("bad_body", f"inventory[{i}]: needs id and kind")
    elif kind == "event":
        _need(body, "event", str)


def check_decision(body: Mapping[str, Any]) -> None:
    """A decision: what the policy concluded for one device, with its provenance.

    {"device": str, "decision": ok|watch|predicted_failure|failed, "previous": str|null,
     "score": float|null, "threshold": float|null, "model": str|null (model version),
     "features": {name: number|null}, "explanation": [str], "ts": ISO 8601}
    """
    _need(body, "device", str)
    decision = _need(body, "decision", str)
    if decision not in DECISIONS:
        raise WireError("bad_body", f"decision: {decision[:40]!r} is not one of the decisions")
    _need(body, "score", (int, float), optional=True)
    _need(body, "threshold", (int, float), optional=True)
    _need(body, "model", str, optional=True)
    _need(body, "features", dict)
    explanation = _need(body, "explanation", list)
    if not all(isinstance(e, str) for e in explanation):
        raise WireError("bad_body", "explanation: expected a list of strings")
    _need(body, "ts", str)


def check_alert(body: Mapping[str, Any]) -> None:
    """An alert raised or cleared on a device.

    {"alert": str (stable key: "<device>:<what>"), "device": str, "what": str (paper_out,
     cover_open, offline, predicted_failure, ...), "state": raised|cleared,
     "severity": info|warning|critical, "since": ISO 8601, "ts": ISO 8601,
     "explanation": [str], "decision": {...} | null}
    """
    _need(body, "alert", str)
    _need(body, "device", str)
    _need(body, "what", str)
    state = _need(body, "state", str)
    if state not in ALERT_STATES:
        raise WireError("bad_body", f"state: {state[:40]!r} is not raised or cleared")
    severity = _need(body, "severity", str)
    if severity not in SEVERITIES:
        raise WireError("bad_body", f"severity: {severity[:40]!r} is not a severity")
    _need(body, "since", str)
    _need(body, "ts", str)
    explanation = _need(body, "explanation", list)
    if not all(isinstance(e, str) for e in explanation):
        raise WireError("bad_body", "explanation: expected a list of strings")
    check_alert_extras(body)


# Optional alert fields (docs/alerts.md); an older agent sends none of them.
ALERT_FAMILIES = ("attention", "failed", "predicted_failure")
ALERT_AUDIENCES = ("store", "region", "central_it")


def check_alert_extras(body: Mapping[str, Any]) -> None:
    """Check the optional alert fields family, audience, escalated, escalated_after_s and
    supersedes ({"alert": str, "since": str, "lead_s": number >= 0}) when present."""
    family = _need(body, "family", str, optional=True)
    if family is not None and family not in ALERT_FAMILIES:
        raise WireError("bad_body", f"family: {family[:40]!r} is not a family")
    audience = _need(body, "audience", str, optional=True)
    if audience is not None and audience not in ALERT_AUDIENCES:
        raise WireError("bad_body", f"audience: {audience[:40]!r} is not an audience")
    _need(body, "escalated", bool, optional=True)
    after = _need(body, "escalated_after_s", (int, float), optional=True)
    if after is not None and after < 0:
        raise WireError("bad_body", "escalated_after_s: must be >= 0")
    sup = _need(body, "supersedes", dict, optional=True)
    if sup is not None:
        _need(sup, "alert", str)
        _need(sup, "since", str)
        lead = _need(sup, "lead_s", (int, float))
        if lead < 0:
            raise WireError("bad_body", "supersedes.lead_s: must be >= 0")


def encode_hub_state(online: bool, ts: str, worker: str = "hub") -> bytes:
    """The hub's retained state on {prefix}/hub/state: {"v": 1, "online": bool, "ts", "worker"}.

    A hub worker publishes it retained with online true when it starts consuming, and registers
    the same message with online false (also retained) as its MQTT Will, so stores see it go.
    """
    return encode({"v": VERSION, "online": online, "ts": ts, "worker": worker})


def decode_hub_state(payload: bytes) -> dict[str, Any]:
    """Decode the hub's state; an empty payload (retained state cleared) means offline.

    Extra keys are allowed; `online` must be a boolean and `v`, when present, this VERSION.
    """
    if not payload:
        return {"online": False}
    if len(payload) > 4096:
        raise WireError("oversized", f"hub state of {len(payload)} bytes")
    data = loads(payload)
    if not isinstance(data, dict):
        raise WireError("bad_hub_state", "not a JSON object")
    if data.get("v", VERSION) != VERSION:
        raise WireError("unknown_version", repr(data.get("v"))[:40])
    if not isinstance(data.get("online"), bool):
        raise WireError("bad_hub_state", "online: expected true or false")
    return data
