"""Schema migrations per domain (the domain contract in the session plan).

STAND-IN (helper U, until helper P's hub/store/migrate.py lands; P's version wins on merge, with
the same field names): the Migration dataclass, and a minimal runner so that the access and
audit domains' tables exist when their commands run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from hub.store.base import Store, Tx


@dataclass(frozen=True)
class Migration:
    """One step of one domain's schema: statements run in order, in one transaction.

    A statement is SQL, or a dict mapping a dialect ("sqlite", "postgresql") to its SQL.
    """

    domain: str
    version: int
    statements: tuple[str | dict[str, str], ...]


def dialect_of(db: Store | Tx) -> str:
    """"postgresql" or "sqlite" for a store or a transaction."""
    name = getattr(db, "dialect", None)
    if name:
        return name
    if isinstance(db, Tx):
        return "postgresql" if db.placeholder == "%s" else "sqlite"
    return "postgresql" if type(db).__name__.startswith("Postgres") else "sqlite"


def apply(db: Store, migrations: Iterable[Migration]) -> list[tuple[str, int]]:
    """Run the migrations not yet applied (each in its own transaction); return those run."""
    done: list[tuple[str, int]] = []
    dialect = dialect_of(db)
    with db.transaction() as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS schema_versions (domain TEXT NOT NULL,"
                   " version INTEGER NOT NULL, PRIMARY KEY (domain, version))")
    for m in migrations:
        with db.transaction() as tx:
            if dialect == "postgresql":  # two workers starting together migrate once
                tx.execute("SELECT pg_advisory_xact_lock(?)", (0x45444746,))
            tx.execute("SELECT 1 FROM schema_versions WHERE domain = ? AND version = ?",
                       (m.domain, m.version))
            if tx.fetchone():
                continue
            for statement in m.statements:
                sql = statement[dialect] if isinstance(statement, dict) else statement
                tx.execute(sql)
            tx.execute("INSERT INTO schema_versions (domain, version) VALUES (?, ?)",
                       (m.domain, m.version))
            done.append((m.domain, m.version))
    return done
