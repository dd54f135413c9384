"""A Reading: one poll of one device, in the shared vocabulary, and its serialized form.

Timestamps (format_ts, parse_ts, utcnow) live in edge_protocol.timestamps and the value checks
in edge_protocol.bodies; they are imported here for the agent's modules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Union

from edge_agent.errors import ReadingError
from edge_protocol import bodies
from edge_protocol.errors import ProtocolError
from edge_protocol.timestamps import format_ts, parse_ts, utcnow

Value = Union[str, int, float, bool, None]


@dataclass(frozen=True, slots=True)
class Reading:
    """One poll of one device: its values in the shared vocabulary, or stale with a reason."""

    device: str
    kind: str
    ts: datetime
    values: Mapping[str, Value] = field(default_factory=dict)
    stale: bool = False
    reason: str | None = None

    @classmethod
    def failed(cls, device: str, kind: str, reason: str, ts: datetime | None = None,
               values: Mapping[str, Value] | None = None) -> "Reading":
        """Build a stale reading for a device that did not answer."""
        return cls(device, kind, ts or utcnow(), dict(values or {}), True, reason)

    def to_dict(self) -> dict[str, Any]:
        """Return the serialized form of DESIGN.md."""
        return {
            "device": self.device,
            "kind": self.kind,
            "ts": format_ts(self.ts),
            # Device-reported text (a sysDescr ending in CR LF) is sent clean: the protocol
            # refuses control characters, and one value must not cost the whole message.
            "values": {k: (bodies.clean_text(v) if type(v) is str else v)
                       for k, v in self.values.items()},
            "stale": self.stale,
            "reason": None if self.reason is None else bodies.clean_text(self.reason),
        }

    def to_json(self) -> str:
        """Return the serialized form as compact JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: object, *, strict_names: bool = True) -> "Reading":
        """Parse the serialized form, checking every field; raise ReadingError naming the field."""
        if not isinstance(data, dict):
            raise ReadingError("a reading must be a JSON object")
        unknown = set(data) - {"device", "kind", "ts", "values", "stale", "reason"}
        if unknown:
            raise ReadingError(f"unknown field(s): {', '.join(sorted(unknown))}")
        device, kind = data.get("device"), data.get("kind")
        if not isinstance(device, str) or not device:
            raise ReadingError("device: required, a non-empty string")
        if not isinstance(kind, str) or not kind:
            raise ReadingError("kind: required, a non-empty string")
        try:
            ts = parse_ts(data.get("ts"))
        except ProtocolError as err:
            raise ReadingError(err.detail) from err
        values = data.get("values", {})
        if not isinstance(values, dict):
            raise ReadingError("values: expected an object")
        problems = validate_values(values, strict_names=strict_names)
        if problems:
            raise ReadingError("; ".join(problems))
        stale = data.get("stale", False)
        if not isinstance(stale, bool):
            raise ReadingError("stale: expected true or false")
        reason = data.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ReadingError("reason: expected a string or null")
        return cls(device, kind, ts, values, stale, reason)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Reading":
        """Parse one serialized reading from JSON text."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as err:
            raise ReadingError(f"not JSON: {err}") from err
        except RecursionError as err:
            raise ReadingError("not JSON this agent accepts: nested too deeply") from err
        return cls.from_dict(data)


def validate_values(values: Mapping[str, object], *, strict_names: bool = True) -> list[str]:
    """Return one problem per value that is not valid in the vocabulary (empty if all are)."""
    return bodies.check_values(values, strict_names=strict_names)


def validate(reading: Reading) -> list[str]:
    """Return every problem with a reading (empty if it is valid); used by tests and replay."""
    problems = validate_values(reading.values)
    if not reading.device:
        problems.append("device: empty")
    if reading.ts.tzinfo is None:
        problems.append("ts: naive datetime")
    if reading.stale and not reading.reason:
        problems.append("reason: a stale reading must say why")
    return problems
