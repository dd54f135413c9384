"""Printing for people: untrusted text escaped before it reaches a terminal, tables, JSON."""

from __future__ import annotations

import json
import re
import shutil
import sys
from typing import Any, Sequence

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text
# (bidirectional overrides and isolates, zero-width joiners): never sent raw to a terminal.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _hex(m: re.Match) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def escape(value: Any) -> str:
    """Return text safe to print: control and reordering characters written as \\xNN/\\uNNNN."""
    text = "-" if value is None else str(value)
    return _UNSAFE.sub(_hex, text)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None) -> str:
    """Aligned columns, every cell escaped, the widest column shrunk to fit the terminal."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    cells = [[escape(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    while sum(widths) + 2 * (len(widths) - 1) > width and max(widths) > 8:
        widths[widths.index(max(widths))] -= 1

    def fit(text: str, w: int) -> str:
        return text if len(text) <= w else text[: max(1, w - 1)] + "…"

    lines = ["  ".join(fit(h, w).ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in cells:
        lines.append("  ".join(fit(c, w).ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def print_json(data: Any) -> None:
    """Indented JSON on stdout; ensure_ascii keeps every control character escaped."""
    print(json.dumps(data, indent=2, default=str, ensure_ascii=True))


def error(message: str) -> None:
    print(f"edge-hub: {escape(message)}", file=sys.stderr)
