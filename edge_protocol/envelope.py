"""The envelope every store message travels in: VERSION, Envelope, uuid7, encode, strict decode.

Every payload from the network is untrusted: `decode()` checks size, JSON, schema version (an
int, not a bool or a float), field types, that the envelope's store, region and kind match its
topic, and the body of each kind (edge_protocol.bodies: every field range-checked), and raises
ProtocolError with a short reason code the consumer counts. Given a clock, timestamps must also
lie within a skew of it. Topics are built and parsed in edge_protocol.topics.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from typing import Any, Mapping, NamedTuple

from edge_protocol.bodies import MAX_SEQ, check_body, plausible_cached
from edge_protocol.errors import ProtocolError, WireError
from edge_protocol.timestamps import DEFAULT_SKEW, Clock, Skew
from edge_protocol.topics import DEFAULT_PREFIX, ID as _ID, UP_KINDS, parse_topic

try:  # the hub's extra: a C parser, 4x faster than json on an envelope, and strict by itself
    import orjson as _orjson
except ImportError:  # a store's agent: the standard library, made as strict below
    _orjson = None

VERSION = 1
MAX_PAYLOAD = 256 * 1024  # bytes; a larger message is rejected unread
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def uuid7() -> str:
    """Return a new RFC 9562 version-7 UUID (time-ordered) as a string."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
           prefix: str = DEFAULT_PREFIX, clock: Clock | None = None,
           skew: Skew = DEFAULT_SKEW) -> Envelope:
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
    if type(v) is not int or v != VERSION:  # type(): true and 1.0 are not version 1
        raise WireError("unknown_version", repr(v)[:40])
    id_, store, region, ts, kind, body = (get("id"), get("store"), get("region"), get("ts"),
                                          get("kind"), get("body"))
    if not (type(id_) is str and type(store) is str and type(region) is str
            and type(ts) is str and type(kind) is str and type(body) is dict):
        for key, want in _ENVELOPE_TYPES:
            if not isinstance(get(key), want):
                raise WireError("bad_envelope", f"{key}: missing or of the wrong type")
    seq = get("seq")
    # type(): a bool is not a seq; above MAX_SEQ (2^53) a counter is absurd (issue 15)
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise WireError("bad_envelope", "seq: expected an integer from 0 to 2^53")
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
        plausible_cached(ts, "ts", clock, skew)
    except ProtocolError as err:
        raise WireError("bad_envelope" if err.code == "bad_ts" else err.code,
                        err.detail) from err
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
    check_body(kind, body, clock, skew)
    return Envelope(VERSION, id_, seq, store, region, ts, kind, body)


# Why a hub worker that runs says it is not accepting (`reason` of an `online: false` state).
# "database": it cannot commit (its database unreachable, every commit failing), so what stores
# sent would only wait in the broker's bounded queue for it; they keep their rows instead.
HUB_STATE_REASONS = ("database",)


def encode_hub_state(online: bool, ts: str, worker: str = "hub",
                     reason: str | None = None) -> bytes:
    """The hub's retained state on {prefix}/hub/state: {"v": 1, "online": bool, "ts", "worker"}
    and, on an `online: false` of a worker that runs but cannot take messages, `reason`.

    A hub worker publishes it retained with online true when it starts consuming, and registers
    the same message with online false (also retained) as its MQTT Will, so stores see it go.
    A worker that cannot commit publishes online false with reason "database" (the hold), and
    online true again once it commits (docs/sync.md, "Hub state gate").
    """
    data: dict[str, Any] = {"v": VERSION, "online": online, "ts": ts, "worker": worker}
    if reason is not None:
        if online or reason not in HUB_STATE_REASONS:
            raise ValueError(f"hub state reason {reason!r} with online={online}")
        data["reason"] = reason
    return encode(data)


def decode_hub_state(payload: bytes) -> dict[str, Any]:
    """Decode the hub's state; an empty payload (retained state cleared) means offline.

    Extra keys are allowed; `online` must be a boolean and `v`, when present, this VERSION;
    `reason`, when present, text of at most 64 characters (an agent holds on any `online:
    false`, whatever its reason: one it does not know is kept as it came, for the log).
    """
    if not payload:
        return {"online": False}
    if len(payload) > 4096:
        raise WireError("oversized", f"hub state of {len(payload)} bytes")
    data = loads(payload)
    if not isinstance(data, dict):
        raise WireError("bad_hub_state", "not a JSON object")
    v = data.get("v", VERSION)
    if type(v) is not int or v != VERSION:
        raise WireError("unknown_version", repr(data.get("v"))[:40])
    if not isinstance(data.get("online"), bool):
        raise WireError("bad_hub_state", "online: expected true or false")
    reason = data.get("reason")
    if reason is not None and (not isinstance(reason, str) or not 0 < len(reason) <= 64
                               or not reason.isprintable()):
        raise WireError("bad_hub_state", "reason: expected text of 1-64 printable characters")
    return data


__all__ = ["VERSION", "MAX_PAYLOAD", "Envelope", "uuid7", "encode", "loads", "decode",
           "encode_hub_state", "decode_hub_state", "HUB_STATE_REASONS", "ProtocolError",
           "WireError"]
