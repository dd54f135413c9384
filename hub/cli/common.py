"""What every `edge-hub` command shares: exit codes, the usage error, opening the database,
and the console helpers (edge_common.output: tables escape untrusted text, --json as is)."""

from __future__ import annotations

import argparse
import time

from edge_common.output import age, escape, print_json, table
from hub.errors import HubError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(HubError):
    """A mistake in the arguments (exit 2)."""


def open_db(url: str, create: bool = False):
    """Open the hub database for a command (through hub.app: every domain's migrations)."""
    from hub.app import open_store

    if "://" in url and not url.startswith(("sqlite://", "postgresql://", "postgres://")):
        raise UsageError(f"--db: unsupported database URL {url.split('://')[0]}:// "
                         "(use a SQLite path, sqlite:///PATH or postgresql://...)")
    return open_store(url, create=create)


def store_of(args: argparse.Namespace, create: bool = False):
    return open_db(args.db, create)


def parse_broker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--broker: expected HOST:PORT, got {text!r}")
    return host, int(port)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, option: str, *, zero: bool = False) -> float:
    """'90d', '12h', '30m', '45s' or plain seconds; '0' only when `zero` (keep forever)."""
    t = text.strip().lower()
    unit = _UNITS.get(t[-1:]) if t else None
    number = t[:-1] if unit else t
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise UsageError(f"{option}: expected a duration like 90d, 12h, 30m or 45s, "
                         f"got {text!r}") from None
    if not (value == value and 0 <= value <= 100 * 365 * 86400) or (value == 0 and not zero):
        raise UsageError(f"{option}: expected a duration between "
                         f"{'0' if zero else '1s'} and 100 years, got {text!r}")
    return value


def state_word(online: bool | None) -> str:
    return "unknown" if online is None else "online" if online else "OFFLINE"


def ago(ts: float | None) -> str:
    return "-" if ts is None else age(max(0.0, time.time() - ts)) + " ago"


__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "UsageError", "open_db", "store_of",
           "parse_broker", "parse_duration", "state_word", "ago", "escape", "print_json", "table"]
