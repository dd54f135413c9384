"""Print for people (tables that fit the terminal) or for scripts (--json).

Every string that came from a store (device ids, reasons, versions...) is untrusted: a table
shows it through `escape()`, so a CR/LF cannot forge a row, ESC cannot drive the terminal and a
bidi override cannot reorder what the operator reads. `--json` prints data unchanged (JSON
escapes control characters itself).
"""

from __future__ import annotations

import json
import re
import shutil
from typing import Any, Sequence

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text
# (bidi embeddings, overrides and isolates, marks, zero-width characters, the BOM), plus
# lone surrogates (not printable as UTF-8).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069"
                     "\ufeff\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e", "\x07": "\\a", "\x08": "\\b",
          "\x00": "\\0"}


def _visible(match: re.Match) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: Any) -> str:
    """Return text safe to print on a terminal: control and bidi characters made visible
    (\\n, \\r, \\e, \\a, \\b, \\0, \\x7f, \\u202e...); backslashes are left as they are."""
    s = text if isinstance(text, str) else str(text)
    return _UNSAFE.sub(_visible, s) if _UNSAFE.search(s) else s


def print_json(data: Any) -> None:
    """Print data as indented JSON on stdout."""
    print(json.dumps(data, indent=2, default=str, sort_keys=False))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None) -> str:
    """Render rows as aligned columns, shrinking the widest column to fit the terminal.

    Every cell goes through escape(): a table never prints a control character.
    """
    width = width or shutil.get_terminal_size((120, 24)).columns
    cells = [[("-" if v is None else escape(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    while sum(widths) + 2 * (len(widths) - 1) > width and max(widths) > 8:
        widths[widths.index(max(widths))] -= 1

    def fit(text: str, w: int) -> str:
        return text if len(text) <= w else text[: max(1, w - 1)] + "…"

    lines = ["  ".join(fit(h, w).ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in cells:
        lines.append("  ".join(fit(c, w).ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def age(seconds: float | None) -> str:
    """Say an age shortly: 4s, 3m, 2h, 5d."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    if seconds < 10:
        return f"{seconds:.2g}s"  # Sub-second intervals are real: 0.15s, not 0s.
    return f"{seconds:.0f}s"


__all__ = ["escape", "print_json", "table", "age"]
