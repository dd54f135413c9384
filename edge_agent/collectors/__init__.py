"""The collector registry: one sub-package per protocol; its folder name is its kind.

Each collector package exposes, from an `__init__.py` that imports nothing heavy:
    Config        frozen dataclass of its `[devices.<kind>]` table
    SCHEMES       URL schemes `edge-agent probe` accepts for it
    MATURITY      "stable", "beta" or "experimental"
    CAPABILITIES  vocabulary names it can report
    create(device) -> Collector       imports the protocol library only when called
    config_from_url(parts) -> Config  builds its table from a probe URL (raises ConfigError)
So validating a config never imports pysnmp, python-escpos or onnxruntime, and the agent imports
only what its configured devices need. The registry sits below the config (config.py reads each
collector's table through it), so it never imports edge_agent.config; building a DeviceConfig
from a probe URL is config.device_from_url.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from types import ModuleType
from urllib.parse import parse_qsl

from edge_agent.errors import ConfigError, Problem


@lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)
                        if m.ispkg and not m.name.startswith("_")))


def names() -> list[str]:
    """Return the kinds of every collector."""
    return list(_names())


def get(kind: str) -> ModuleType:
    """Return a collector package by kind."""
    if kind not in _names():
        raise ConfigError(Problem("kind", f"unknown collector {kind!r}"))
    return importlib.import_module(f"{__name__}.{kind}")


def preload(kind: str) -> None:
    """Import a collector's poller module (and so its protocol library) ahead of create().

    Meant to run on a thread: the import is the slow part of creating a collector. An import
    error is left for create() to raise, where the scheduler reports it.
    """
    if kind in _names():
        try:
            importlib.import_module(f"{__name__}.{kind}.collector")
        except Exception:
            pass


def for_scheme(scheme: str) -> ModuleType:
    """Return the collector package that handles a probe URL scheme."""
    for kind in _names():
        module = get(kind)
        if scheme in getattr(module, "SCHEMES", ()):
            return module
    known = sorted(s for k in _names() for s in getattr(get(k), "SCHEMES", ()))
    raise ConfigError(Problem("url", f"unknown scheme {scheme!r}; known: {', '.join(known)}"))


def query(parts) -> dict[str, str]:
    """Return a URL's query parameters as a dict; repeated keys keep the last value."""
    return dict(parse_qsl(parts.query, keep_blank_values=True))
