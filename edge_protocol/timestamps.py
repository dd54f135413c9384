"""Timestamps on the wire: ISO 8601 UTC with a Z suffix, millisecond precision.

`format_ts` writes them, `parse_ts` reads any ISO 8601 spelling (a naive one is UTC), and
`check_plausible` says whether a time lies within a skew of a clock: a store's clock may be
off by a little, but a reading stamped 2099 must not pin a device's state at the hub.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from edge_protocol.errors import ProtocolError

Clock = Callable[[], float]  # epoch seconds

_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
MAX_TS_LEN = 40  # the longest ISO 8601 spelling fromisoformat takes is shorter


@dataclass(frozen=True)
class Skew:
    """How far from the receiver's clock a timestamp may lie: `future_s` ahead (clock drift),
    `past_s` behind (an outbox that held messages through a long outage)."""

    future_s: float = 3600.0
    past_s: float = 400 * 86400.0


DEFAULT_SKEW = Skew()


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def format_ts(ts: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with a Z suffix (millisecond precision)."""
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(text: str) -> datetime:
    """Parse an ISO 8601 timestamp; a naive one is taken as UTC. Raise ProtocolError('bad_ts')."""
    if not isinstance(text, str):
        raise ProtocolError("bad_ts", f"ts: expected an ISO 8601 string, got {type(text).__name__}")
    if len(text) > MAX_TS_LEN:
        raise ProtocolError("bad_ts", f"ts: longer than {MAX_TS_LEN} characters")
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise ProtocolError("bad_ts", f"ts: not an ISO 8601 timestamp: {text!r}") from err
    if ts.tzinfo is None:
        return ts.replace(tzinfo=timezone.utc)
    try:
        return ts.astimezone(timezone.utc)
    except OverflowError as err:  # Such as year 1 with a positive offset.
        raise ProtocolError("bad_ts", f"ts: out of range: {text!r}") from err


def normalize_ts(text: str) -> str:
    """Return the canonical spelling of a timestamp (the text itself when already canonical)."""
    return text if _CANONICAL.match(text) else format_ts(parse_ts(text))


def check_plausible(ts: datetime | str, clock: Clock, skew: Skew = DEFAULT_SKEW,
                    field: str = "ts") -> datetime:
    """Parse (if text) and check that a time lies within `skew` of `clock()`; return it.

    Raise ProtocolError('implausible_ts') for a time too far ahead or behind.
    """
    when = parse_ts(ts) if isinstance(ts, str) else ts
    now = clock()
    try:
        epoch = when.timestamp()
    except (OverflowError, OSError, ValueError) as err:
        raise ProtocolError("implausible_ts", f"{field}: out of range") from err
    if epoch > now + skew.future_s:
        raise ProtocolError("implausible_ts", f"{field}: {epoch - now:.0f} s ahead of the clock")
    if epoch < now - skew.past_s:
        raise ProtocolError("implausible_ts", f"{field}: {now - epoch:.0f} s behind the clock")
    return when


__all__ = ["Clock", "Skew", "DEFAULT_SKEW", "utcnow", "format_ts", "parse_ts", "normalize_ts",
           "check_plausible"]
