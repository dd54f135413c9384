"""Helpers for the access and audit tests: a migrated hub database, actors, a clock."""

from __future__ import annotations

import itertools

from hub.app import open_store
from hub.domains.access import local_actor

ADMIN = local_actor("root")


def migrated(url: str):
    """Open (create) a hub database with every domain's tables (hub.app's migrations)."""
    return open_store(url)


class Clock:
    """A clock that moves one second each time it is read."""

    def __init__(self, start: float = 1_764_900_000.0):
        self._n = itertools.count()
        self.start = start

    def __call__(self) -> float:
        return self.start + next(self._n)
