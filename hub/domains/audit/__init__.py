"""STAND-IN (helper K) for helper U's hub.domains.audit: record() with the contract's signature,
writing plain rows (no hash chain) so tickets and approvals can be tested before U's branch is
merged. U's module replaces this package on merge.
"""

from __future__ import annotations

import json
from typing import Any

from hub.domains.access import Actor


def record(tx, clock, actor: Actor, action: str, obj: str, detail: Any = None,
           source: str | None = None) -> int:
    """Append one audit entry in the caller's transaction; return its sequence number."""
    tx.execute("INSERT INTO audit_standin (ts, actor_kind, actor, role, action, obj, detail,"
               " source) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (clock(), actor.kind, actor.name, actor.role, action, obj,
                json.dumps(detail, sort_keys=True, default=str) if detail is not None else None,
                source))
    tx.execute("SELECT MAX(seq) FROM audit_standin")
    return int(tx.fetchone()[0])


def entries(tx, obj_prefix: str = "") -> list[dict[str, Any]]:
    """The entries (of objects starting with obj_prefix), oldest first (tests read them)."""
    tx.execute("SELECT seq, actor_kind, actor, role, action, obj, detail FROM audit_standin"
               " WHERE obj LIKE ? ORDER BY seq", (obj_prefix + "%",))
    keys = ("seq", "actor_kind", "actor", "role", "action", "obj", "detail")
    out = [dict(zip(keys, r)) for r in tx.fetchall()]
    for e in out:
        e["detail"] = json.loads(e["detail"]) if e["detail"] else None
    return out
