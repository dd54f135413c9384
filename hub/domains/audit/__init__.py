"""STAND-IN (helper C, until helper U's audit domain is merged; U's version replaces this
file whole): record() with the contract's signature, appending to a plain table."""

from __future__ import annotations

import json
from typing import Any, Callable

from hub.store.migrate import Migration

MIGRATIONS: tuple[Migration, ...] = (
    Migration("audit", 1, (
        """CREATE TABLE IF NOT EXISTS audit_standin (
            seq INTEGER PRIMARY KEY, at DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL,
            action TEXT NOT NULL, object TEXT NOT NULL, detail TEXT, source TEXT)""",
    )),
)


def record(tx: Any, clock: Callable[[], float], actor: Any, action: str, obj: str,
           detail: dict[str, Any] | None = None, source: str | None = None) -> int:
    tx.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_standin")
    seq = tx.fetchone()[0]
    tx.execute("INSERT INTO audit_standin (seq, at, actor, action, object, detail, source)"
               " VALUES (?, ?, ?, ?, ?, ?, ?)",
               (seq, clock(), json.dumps(actor.describe()), action, obj,
                json.dumps(detail, sort_keys=True, default=str) if detail else None, source))
    return seq


def entries(tx: Any) -> list[dict[str, Any]]:
    tx.execute("SELECT seq, actor, action, object, detail FROM audit_standin ORDER BY seq")
    return [{"seq": s, "actor": json.loads(a), "action": act, "object": o,
             "detail": json.loads(d) if d else None} for s, a, act, o, d in tx.fetchall()]
