"""What `--version` prints: the package, Python and the libraries.

Library versions come from installed metadata (importlib.metadata), never from importing the
libraries, which would cost tens of megabytes for a version string.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Sequence


def library_versions(names: Sequence[str]) -> list[str]:
    """`name version` for each distribution, or `name not installed`."""
    out = []
    for name in names:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} not installed")
    return out


def version_text(prog: str, version: str, libraries: Sequence[str],
                 extra: Sequence[str] = ()) -> str:
    """The lines `--version` prints; `extra` lines go after the first (e.g. the model)."""
    return "\n".join([
        f"{prog} {version}", *extra,
        f"Python {platform.python_version()} ({platform.python_implementation()}, "
        f"{platform.system()} {platform.machine()})",
        "libraries: " + ", ".join(library_versions(libraries)),
    ])


__all__ = ["library_versions", "version_text"]
