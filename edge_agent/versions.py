"""What `--version` prints: the package, the shipped model, Python and the libraries.

Library versions come from installed metadata (importlib.metadata), never from importing the
libraries, which would cost tens of megabytes for a version string.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge_common.versions import library_versions
from edge_common.versions import version_text as _text

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


def version_text(prog: str, version: str, libraries: tuple[str, ...] = AGENT_LIBRARIES,
                 card: Path = MODEL_CARD) -> str:
    """The lines `--version` prints."""
    return _text(prog, version, libraries, [f"model: {model_version(card)}"])


__all__ = ["AGENT_LIBRARIES", "HUB_LIBRARIES", "MODEL_CARD", "model_version",
           "library_versions", "version_text"]
