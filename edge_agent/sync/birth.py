"""The birth message: what the hub learns about a store each time its agent connects."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import edge_protocol as wire
from edge_agent import __version__, collectors
from edge_agent.config import AgentConfig


def config_hash(config: AgentConfig) -> str:
    """Return "sha256:<hex>" of the config file's bytes (of the parsed config without a file).

    The file's bytes, so the hub can compare it with the hash of a config it sent.
    """
    source = Path(config.source) if config.source else None
    if source is not None and source.is_file():
        try:
            return "sha256:" + hashlib.sha256(source.read_bytes()).hexdigest()
        except OSError:
            pass
    canonical = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def capabilities(config: AgentConfig) -> dict[str, Any]:
    """What this agent can do and report: wire version, and the names each collector reports."""
    kinds: dict[str, list[str]] = {}
    for kind in sorted({d.kind for d in config.devices}):
        try:
            module = collectors.get(kind)
        except Exception:  # noqa: BLE001 - a config that loaded names known kinds only
            continue
        kinds[kind] = sorted(getattr(module, "CAPABILITIES", ()))
    return {"wire": wire.VERSION, "collectors": kinds}


def birth_body(config: AgentConfig, session: int, *, model_version: str | None,
               config_digest: str, last_seq: int,
               instance: str | None = None) -> dict[str, Any]:
    """Build the body of a birth message (`instance`: the state database's id)."""
    body = {
        "session": session,
        "inventory": [{"id": d.id, "kind": d.kind} for d in config.devices],
        "capabilities": capabilities(config),
        "agent_version": __version__,
        "model_version": model_version,
        "config_hash": config_digest,
        "last_seq": last_seq,
    }
    if instance is not None:
        body["instance"] = instance
    return body
