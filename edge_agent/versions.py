"""What `--version` prints: the package, the shipped model, Python and the libraries.

Library versions come from installed metadata (importlib.metadata), never from importing the
libraries, which would cost tens of megabytes for a version string.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

AGENT_LIBRARIES = ("psutil", "pysnmp", "pyserial", "python-escpos", "paho-mqtt", "onnxruntime",
                   "cryptography")
HUB_LIBRARIES = ("paho-mqtt", "cryptography", "psycopg")
# The health model shipped inside the package, with its card beside it (branch `health`).
MODEL_CARD = Path(__file__).resolve().parent / "health" / "model" / "device_health.card.json"


def model_version(card: Path = MODEL_CARD) -> str:
    """The shipped model's version from its card, or "no model"."""
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no model"
    except (OSError, ValueError) as err:
        return f"unreadable model card {card.name}: {err}"
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        return f"model card {card.name} has no version"
    sha = data.get("sha256")
    return data["version"] + (f" (sha256 {sha[:12]})" if isinstance(sha, str) else "")


def library_versions(names: tuple[str, ...]) -> list[str]:
    """`name version` for each distribution, or `name not installed`."""
    out = []
    for name in names:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} not installed")
    return out


def version_text(prog: str, version: str, libraries: tuple[str, ...] = AGENT_LIBRARIES,
                 card: Path = MODEL_CARD) -> str:
    """The lines `--version` prints."""
    return "\n".join([
        f"{prog} {version}",
        f"model: {model_version(card)}",
        f"Python {platform.python_version()} ({platform.python_implementation()}, "
        f"{platform.system()} {platform.machine()})",
        "libraries: " + ", ".join(library_versions(libraries)),
    ])
