"""Print for people (tables that fit the terminal) or for scripts (--json), and errors plainly."""

from __future__ import annotations

import json
import shutil
import sys
from typing import Any, Sequence

from edge_agent.errors import ConfigError


def print_json(data: Any) -> None:
    """Print data as indented JSON on stdout."""
    print(json.dumps(data, indent=2, default=str, sort_keys=False))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None) -> str:
    """Render rows as aligned columns, shrinking the widest column to fit the terminal."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    while sum(widths) + 2 * (len(widths) - 1) > width and max(widths) > 8:
        widths[widths.index(max(widths))] -= 1

    def fit(text: str, w: int) -> str:
        return text if len(text) <= w else text[: max(1, w - 1)] + "…"

    lines = ["  ".join(fit(h, w).ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in cells:
        lines.append("  ".join(fit(c, w).ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def error(message: str) -> None:
    """Print an error for a person on stderr."""
    print(f"edge-agent: {message}", file=sys.stderr)


def config_error(err: ConfigError) -> int:
    """Print each config problem on its own line; return exit code 2."""
    where = f"{err.source}: " if err.source else ""
    for problem in err.problems:
        print(f"{where}{problem}", file=sys.stderr)
    return 2


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
