"""Helpers for domain tests: a hub database with the given domains' migrations, a clock."""

from __future__ import annotations

from hub.store import Store, open_store
from hub.store.migrate import migrate


def domain_store(url: str, *migration_sets) -> Store:
    """Open `url` with only these domains' migrations applied (hub.store.migrate)."""
    store = open_store(url)
    migrate(store, [m for ms in migration_sets for m in ms])
    return store


class Clock:
    """A settable clock: epoch seconds, advanced by the test."""

    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> float:
        self.t += s
        return self.t


def trail(tx, prefix: str) -> list[dict]:
    """Audit entries whose object starts with prefix, oldest first, detail as a dict (works on
    the audit stand-in and on helper U's hash-chained log alike)."""
    import json

    from hub.domains import audit

    out = []
    for e in audit.entries(tx, limit=100_000):
        if str(e.get("object", "")).startswith(prefix):
            e = dict(e)
            if isinstance(e.get("detail"), str):
                e["detail"] = json.loads(e["detail"])
            out.append(e)
    return out
