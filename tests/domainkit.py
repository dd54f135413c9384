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
