"""Signed checkpoints of the audit log's head, kept in the database and exported outside it.

A checkpoint signs {"v": 1, "log": "edge-hub audit", "seq", "hash", "ts"} (canonical JSON)
with the hub's Ed25519 key. Exported (a file, a retained MQTT topic) it is
{"checkpoint": body, "sig": {"kid", "sig"}}: whoever keeps a copy can later prove that the
log still holds entry `seq` with that hash, so cutting the tail, or rewriting the chain and
recomputing every hash, is detected.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hub.domains.audit.log import Clock, canonical, format_ts, head
from hub.domains.audit.verify import checkpoint_body
from hub.store.base import Tx

KEEP = 10000  # checkpoints kept in the database (the oldest are dropped beyond this)


def latest(tx: Tx) -> dict[str, Any] | None:
    """The newest checkpoint in the database, in its exported form."""
    tx.execute("SELECT seq, hash, ts, kid, sig FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
    row = tx.fetchone()
    return None if row is None else exported(*row)


def exported(seq: int, digest: str, ts: str, kid: str, sig: str) -> dict[str, Any]:
    return {"checkpoint": checkpoint_body(seq, digest, ts), "sig": {"kid": kid, "sig": sig}}


def stored(tx: Tx, limit: int = KEEP) -> list[dict[str, Any]]:
    """Checkpoints in the database, newest first, as verify reads them."""
    tx.execute("SELECT seq, hash, ts, kid, sig FROM audit_checkpoints ORDER BY seq DESC"
               " LIMIT ?", (limit,))
    return [{"seq": int(s), "hash": h, "ts": t, "sig": {"kid": k, "sig": g}}
            for s, h, t, k, g in tx.fetchall()]


def due(tx: Tx, clock: Clock, interval: float) -> bool:
    """Whether a checkpoint is due: the head moved past the last one and `interval` elapsed."""
    if interval <= 0:
        return False
    seq, _ = head(tx)
    last = latest(tx)
    if last is None:
        return seq > 0
    if seq <= last["checkpoint"]["seq"]:
        return False
    return format_ts(clock() - interval) >= last["checkpoint"]["ts"]


def make(tx: Tx, clock: Clock, ring: Any) -> dict[str, Any]:
    """Sign the current head, store the checkpoint, and return it in its exported form."""
    seq, digest = head(tx)
    ts = format_ts(clock())
    sig = ring.sign(canonical(checkpoint_body(seq, digest, ts)))
    tx.execute("SELECT 1 FROM audit_checkpoints WHERE seq = ?", (seq,))
    if tx.fetchone() is None:
        tx.execute("INSERT INTO audit_checkpoints (seq, hash, ts, kid, sig) VALUES (?, ?, ?, ?, ?)",
                   (seq, digest, ts, sig["kid"], sig["sig"]))
        tx.execute("DELETE FROM audit_checkpoints WHERE seq < (SELECT MIN(seq) FROM (SELECT seq"
                   " FROM audit_checkpoints ORDER BY seq DESC LIMIT ?) k)", (KEEP,))
    return exported(seq, digest, ts, sig["kid"], sig["sig"])


def write_file(path: str | Path, cp: dict[str, Any]) -> None:
    """Write a checkpoint to a file atomically (a reader never sees half of one)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", dir=str(path.parent or "."))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(cp, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
