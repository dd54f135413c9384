"""Simulated store hardware for tests, demos and trying the agent without devices.

Each module here may expose `register(subparsers)`, which adds its device to
`edge-agent simulate` (the subcommand's `func` takes the parsed args and returns an exit code).
Modules import nothing heavy at import time: `edge-agent --help` imports every one of them.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def modules() -> list[ModuleType]:
    """Return every simulator module, sorted by name."""
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        found.append(importlib.import_module(f"{__name__}.{info.name}"))
    return found
