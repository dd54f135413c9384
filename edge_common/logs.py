"""Structured log lines on stderr: `text` for people, `json` for journald and log shippers.

Fields go in `extra=`: log.warning("device failing", extra={"device": d, "reason": r}).
"""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _ts(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + \
        f".{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """`2026-11-22T15:00:00.123Z WARNING scheduler device failing device=p1 reason="timeout"`."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_ts(record), record.levelname, record.name.removeprefix("edge_agent."),
                 record.getMessage()]
        for key, value in _fields(record).items():
            text = str(value)
            if not text or any(c in text for c in ' ="'):
                text = json.dumps(text)
            parts.append(f"{key}={text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg and the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        data = {"ts": _ts(record), "level": record.levelname.lower(), "logger": record.name,
                "msg": record.getMessage()}
        data.update(_fields(record))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def setup(fmt: str = "text", level: str = "info") -> None:
    """Send every log line to stderr in the given format, replacing other handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
