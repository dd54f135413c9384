"""Helpers for the access and audit tests: a migrated hub database, actors, a clock."""

from __future__ import annotations

import itertools

from hub.domains.access import local_actor
from hub.domains.access.schema import MIGRATIONS as ACCESS
from hub.domains.audit.schema import MIGRATIONS as AUDIT
from hub.store import open_store
from hub.store.migrate import apply

ADMIN = local_actor("root")


def migrated(url: str):
    """Open (create) a hub database with the access and audit tables."""
    db = open_store(url)
    apply(db, ACCESS + AUDIT)
    return db


class Clock:
    """A clock that moves one second each time it is read."""

    def __init__(self, start: float = 1_764_900_000.0):
        self._n = itertools.count()
        self.start = start

    def __call__(self) -> float:
        return self.start + next(self._n)
