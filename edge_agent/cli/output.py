"""Print for people (tables that fit the terminal) or for scripts (--json), and errors plainly.

Tables, JSON and escape() are edge_common.output's, shared with the hub's command line.
"""

from __future__ import annotations

import sys

from edge_agent.errors import ConfigError
from edge_common.output import age, escape, print_json, table

__all__ = ["age", "escape", "print_json", "table", "error", "config_error"]


def error(message: str) -> None:
    """Print an error for a person on stderr."""
    print(f"edge-agent: {message}", file=sys.stderr)


def config_error(err: ConfigError) -> int:
    """Print each config problem on its own line; return exit code 2."""
    where = f"{err.source}: " if err.source else ""
    for problem in err.problems:
        print(f"{where}{problem}", file=sys.stderr)
    return 2
