"""Signed, content-addressed config and model bundles, and each store's desired state.

Content (`{prefix}/bundles/{sha256}`, hub to agents, QoS 1, retained): the canonical JSON
`{"kind": "model"|"config", "files": {name: base64}}`; its SHA-256 is the bundle's id. A model
bundle holds `<name>.onnx` and `<name>.card.json`; a config bundle holds `agent.toml`.

Manifest (signed by the hub):

    {"v": 1, "type": "bundle", "kind": "model"|"config", "name": str, "version": int,
     "sha256": hex, "size": int, "issued": ts, "expires": ts, "min_agent": "x.y.z",
     "kid": str, "sig": str}

Desired state (`{prefix}/{region}/{store}/config`, QoS 1, retained, signed):

    {"v": 1, "type": "desired", "store": str, "region": str, "version": int, "issued": ts,
     "urgent": bool, "bundles": {"model": {"manifest": {...}, "rollback": bool} | null,
                                 "config": {...} | null}, "kid": str, "sig": str}

An agent applies a manifest whose version is above the one it runs; a lower one only when the
desired state says `rollback: true` for it (the whole document is signed, so the rollback is).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from edge_protocol import signing
from edge_protocol.commands import ID, CommandError, format_ts, parse_ts
from edge_protocol.errors import SignatureError

VERSION = 1
KINDS = ("model", "config")
MAX_CONTENT = 8 * 1024 * 1024
MAX_DESIRED = 64 * 1024
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}\Z")
SHA = re.compile(r"[0-9a-f]{64}\Z")
SEMVER = re.compile(r"(\d{1,4})\.(\d{1,4})\.(\d{1,4})")
FILES = {"model": (".onnx", ".card.json"), "config": ("agent.toml",)}


def content(kind: str, files: Mapping[str, bytes]) -> bytes:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    for name in files:
        if not NAME.match(name):
            raise ValueError(f"bad file name {name!r}")
    return signing.canonical({"kind": kind, "files": {n: base64.b64encode(b).decode("ascii")
                                                      for n, b in files.items()}})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(*, kind: str, name: str, version: int, data: bytes, issued: float, expires: float,
             min_agent: str = "0.0.0") -> dict[str, Any]:
    if kind not in KINDS or not NAME.match(name) or type(version) is not int or version < 1:
        raise ValueError("kind, name or version malformed")
    if not SEMVER.fullmatch(min_agent):
        raise ValueError("min_agent: expected x.y.z")
    return {"v": VERSION, "type": "bundle", "kind": kind, "name": name, "version": version,
            "sha256": sha256(data), "size": len(data), "issued": format_ts(issued),
            "expires": format_ts(expires), "min_agent": min_agent}


def desired_doc(*, store: str, region: str, version: int, issued: float, urgent: bool,
                bundles: Mapping[str, Any]) -> dict[str, Any]:
    return {"v": VERSION, "type": "desired", "store": store, "region": region,
            "version": version, "issued": format_ts(issued), "urgent": bool(urgent),
            "bundles": {k: bundles.get(k) for k in KINDS}}


def _semver(text: str) -> tuple[int, int, int]:
    m = SEMVER.match(text or "")
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)  # type: ignore[return-value]


@dataclass(frozen=True)
class Manifest:
    kind: str
    name: str
    version: int
    sha256: str
    size: int
    expires: float
    min_agent: str
    doc: dict


def check_manifest(doc: Any, trusted: Mapping[str, bytes], *, now: float,
                   agent_version: str) -> Manifest:
    if not isinstance(doc, dict) or doc.get("type") != "bundle" or doc.get("v") != VERSION:
        raise CommandError("bad_message", "not a bundle manifest")
    keys = signing.extend_trust(trusted, [e for e in doc.get("endorse") or []
                                          if isinstance(e, dict)])
    try:
        signing.verify_document(doc, keys)
    except SignatureError as err:
        raise CommandError(err.code, err.detail) from err
    kind, name, version = doc.get("kind"), doc.get("name"), doc.get("version")
    sha, size = doc.get("sha256"), doc.get("size")
    if (kind not in KINDS or not isinstance(name, str) or not NAME.match(name)
            or type(version) is not int or version < 1 or not isinstance(sha, str)
            or not SHA.match(sha) or type(size) is not int or not 0 < size <= MAX_CONTENT):
        raise CommandError("bad_message", "manifest fields")
    expires = parse_ts(doc.get("expires"), "expires")
    if expires <= now:
        raise CommandError("expired", f"bundle {name} v{version} expired")
    min_agent = doc.get("min_agent") if isinstance(doc.get("min_agent"), str) else "0.0.0"
    if _semver(agent_version) < _semver(min_agent):
        raise CommandError("agent_too_old", f"needs agent {min_agent}, this is {agent_version}")
    return Manifest(kind, name, version, sha, size, expires, min_agent, doc)


@dataclass(frozen=True)
class Desired:
    store: str
    version: int
    urgent: bool
    bundles: dict  # kind -> {"manifest": dict, "rollback": bool} | None
    kid: str


def check_desired(payload: bytes, *, store: str, trusted: Mapping[str, bytes]) -> Desired:
    if len(payload) > MAX_DESIRED:
        raise CommandError("oversized", f"{len(payload)} bytes")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise CommandError("not_json", str(err)[:120]) from err
    if not isinstance(data, dict) or data.get("v") != VERSION or data.get("type") != "desired":
        raise CommandError("bad_message", "not a desired-state document")
    keys = signing.extend_trust(trusted, [e for e in data.get("endorse") or []
                                          if isinstance(e, dict)])
    try:
        kid = signing.verify_document(data, keys)
    except SignatureError as err:
        raise CommandError(err.code, err.detail) from err
    if data.get("store") != store:
        raise CommandError("wrong_store", "desired state of another store")
    version, bundles = data.get("version"), data.get("bundles")
    if type(version) is not int or version < 1 or not isinstance(bundles, dict):
        raise CommandError("bad_message", "version or bundles")
    clean = {}
    for kind in KINDS:
        entry = bundles.get(kind)
        if entry is None:
            clean[kind] = None
            continue
        if (not isinstance(entry, dict) or not isinstance(entry.get("manifest"), dict)
                or not isinstance(entry.get("rollback", False), bool)):
            raise CommandError("bad_message", f"bundles.{kind}")
        clean[kind] = {"manifest": entry["manifest"], "rollback": entry.get("rollback", False)}
    return Desired(store, version, bool(data.get("urgent")), clean, kid)


def unpack(data: bytes, m: Manifest) -> dict[str, bytes]:
    """Check content against its manifest (size, SHA-256, kind, file names) and unpack it."""
    if len(data) != m.size:
        raise CommandError("bad_content", f"{len(data)} bytes, manifest says {m.size}")
    if sha256(data) != m.sha256:
        raise CommandError("bad_content", "SHA-256 does not match the manifest")
    try:
        doc = json.loads(data)
        files = {n: base64.b64decode(b, validate=True) for n, b in doc["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CommandError("bad_content", f"not a bundle: {err}"[:120]) from err
    if doc.get("kind") != m.kind or not all(isinstance(n, str) and NAME.match(n) for n in files):
        raise CommandError("bad_content", "kind or file names")
    want = FILES[m.kind]
    if m.kind == "config" and set(files) != {"agent.toml"}:
        raise CommandError("bad_content", "a config bundle holds agent.toml only")
    if m.kind == "model" and (len(files) != 2 or not any(n.endswith(want[0]) for n in files)
                              or not any(n.endswith(want[1]) for n in files)):
        raise CommandError("bad_content", "a model bundle holds NAME.onnx and NAME.card.json")
    return files


__all__ = ["content", "sha256", "manifest", "desired_doc", "check_manifest", "check_desired",
           "unpack", "Manifest", "Desired", "KINDS"]
