"""The control plane's golden messages (edge_protocol/golden/control/*.json), built here from
fixed fields and a fixed TEST-ONLY Ed25519 key (seed 0..31): Ed25519 is deterministic, so the
hub's builders must reproduce the files byte for byte, and the agent's checks must accept them.

    python tests/support/controlgolden.py    rewrites the files (after a deliberate protocol change)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edge_protocol import bundles, commands, signing  # noqa: E402

FOLDER = ROOT / "edge_protocol" / "golden" / "control"
SEED = bytes(range(32))  # TEST ONLY: never a real hub's key
ISSUED = 1796454000.0    # 2026-12-05T07:00:00Z
STORE, REGION = "store-0001", "eu-west"


class GoldenRing:
    """hub.keys.KeyRing's signing half, on the fixed test key."""

    def __init__(self):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.key = Ed25519PrivateKey.from_private_bytes(SEED)
        self.public = self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                         serialization.PublicFormat.Raw)
        self.current = signing.key_id(self.public)

    def sign(self, data: bytes) -> dict:
        return {"kid": self.current, "sig": signing.b64url(self.key.sign(data))}

    def sign_document(self, doc: dict) -> dict:
        return signing.sign_document(doc, self.sign, self.current)

    def trusted(self) -> dict:
        return {self.current: self.public}


def build() -> dict[str, dict]:
    ring = GoldenRing()
    command = ring.sign_document(commands.command_doc(
        cmd_id="0193a0e4-5c2e-7d41-9a6b-2f1e3d4c5b6a", store=STORE, region=REGION,
        device="receipt-1", action="test_print", args={"force": False, "text": "hello"},
        issued=ISSUED, expires=ISSUED + 600, seq=42))
    flags = ring.sign_document(commands.flags_doc(
        store=STORE, region=REGION, version=3, issued=ISSUED,
        flags={"scoring": False, "tickets": True, "remote_actions": True}))
    content = bundles.content("config", {"agent.toml": b'[agent]\nstore = "store-0001"\n'})
    manifest = ring.sign_document(bundles.manifest(
        kind="config", name="agent", version=2, data=content, issued=ISSUED,
        expires=ISSUED + 365 * 86400, min_agent="0.1.0"))
    desired = ring.sign_document(bundles.desired_doc(
        store=STORE, region=REGION, version=7, issued=ISSUED, urgent=False,
        bundles={"model": None, "config": {"manifest": manifest, "rollback": False}}))
    result = {"v": 1, "id": "0193a0e4-6000-7000-8000-000000000001", "seq": 1047,
              "store": STORE, "region": REGION, "ts": "2026-12-05T06:20:00.412Z",
              "kind": "cmd_result",
              "body": {"type": "command", "command": command["id"], "seq": 42,
                       "action": "test_print", "status": "done", "reason": None,
                       "detail": "", "output": {"bytes": 98}, "verified": True,
                       "rejects": {"bad_signature": 1}, "flags_version": 3,
                       "ts": "2026-12-05T06:20:00.412Z"}}
    return {"command": command, "flags": flags, "desired": desired, "cmd_result": result,
            "bundle_content": {"sha256": bundles.sha256(content),
                               "content": content.decode("utf-8")}}


def write() -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    for name, doc in build().items():
        (FOLDER / f"{name}.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    write()
