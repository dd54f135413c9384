"""Helpers for domain tests: a fleet store with the given domains' migrations applied, a clock.

Until helper P's migrations runner is merged, `migrate()` applies MIGRATIONS itself (each
statement for the store's dialect, in version order); after the merge it may call P's runner.
"""

from __future__ import annotations

from hub.store import Store, open_store


def dialect(store: Store) -> str:
    return "postgresql" if store.least == "LEAST" else "sqlite"


def migrate(store: Store, *migration_sets) -> None:
    d = dialect(store)
    steps = sorted((m for ms in migration_sets for m in ms), key=lambda m: (m.domain, m.version))
    with store.transaction() as tx:
        for m in steps:
            for st in m.statements:
                tx.execute(st[d] if isinstance(st, dict) else st)


def domain_store(url: str, *migration_sets) -> Store:
    store = open_store(url)
    migrate(store, *migration_sets)
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
