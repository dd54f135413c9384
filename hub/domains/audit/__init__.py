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


def entries(tx, *, after: int = 0, limit: int = 1000, **_filters: Any) -> list[dict[str, Any]]:
    """Entries in seq order after `after` (U's signature; its other filters are ignored)."""
    tx.execute("SELECT seq, actor_kind, actor, role, action, obj, detail FROM audit_standin"
               " WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
    keys = ("seq", "actor_kind", "actor", "role", "action", "object", "detail")
    out = [dict(zip(keys, r)) for r in tx.fetchall()]
    for e in out:
        e["detail"] = json.loads(e["detail"]) if e["detail"] else None
    return out
