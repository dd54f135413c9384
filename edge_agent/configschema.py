"""The agent's config loader: edge_common.configschema, raising the agent's ConfigError.

Config classes declare their keys with `setting()`; `load()` builds them from parsed TOML and
raises the agent's ConfigError with one Problem (key path and message) per mistake.
"""

from __future__ import annotations

from typing import Any

from edge_common.configschema import REQUIRED, Problem, describe, join, setting
from edge_common.configschema import load as _load
from edge_agent.errors import ConfigError


def load(cls: type, data: dict[str, Any], path: str = "",
         problems: list[Problem] | None = None, *, skip: tuple[str, ...] = ()) -> Any:
    """Build a `cls` instance from a dict (edge_common.configschema.load), raising the agent's ConfigError."""
    return _load(cls, data, path, problems, skip=skip, error=ConfigError)


__all__ = ["REQUIRED", "Problem", "ConfigError", "describe", "join", "load", "setting"]
