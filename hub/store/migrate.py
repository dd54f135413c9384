"""STAND-IN (helper K): the Migration dataclass of the domain contract, until helper P's
hub/store/migrate.py lands (P's version, with the runner, wins on merge; same field names)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    """One step of one domain's schema: statements run in order, in one transaction.

    A statement is SQL text, or a dict mapping a dialect ("sqlite", "postgresql") to SQL.
    """

    domain: str
    version: int
    statements: tuple[str | dict[str, str], ...]
