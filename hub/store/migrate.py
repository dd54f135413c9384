"""Versioned migrations of the hub database, per domain.

Each domain lists `MIGRATIONS: tuple[Migration, ...]` in its schema.py; versions start at 1 and
only ever append. `migrate()` applies, in one transaction, each migration whose version is above
the one recorded for its domain in `schema_versions`, and records it. A database from before
versioned migrations (the tables of the old hub/store/base.py, no schema_versions) upgrades by
running the version-1 migrations, written `IF NOT EXISTS` to match it, and recording them.

A database whose schema is newer than this code (a domain at a version above the code's, or a
domain the code does not know) is refused with SchemaTooNew: a hub must not run against tables
it does not understand (and ingest nothing while logging "cannot commit" forever).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

from hub.errors import StoreError

Statement = Union[str, "dict[str, str]"]

VERSIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_versions (
    domain TEXT PRIMARY KEY, version INTEGER NOT NULL, applied DOUBLE PRECISION NOT NULL)"""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer hub than this one."""


@dataclass(frozen=True)
class Migration:
    """One step of one domain's schema: statements run in order, in one transaction.

    A statement is SQL text, or a dict mapping a dialect ("sqlite", "postgresql") to SQL when
    they differ.
    """

    domain: str
    version: int
    statements: tuple[Statement, ...]


def _check_order(migrations: Sequence[Migration]) -> dict[str, int]:
    latest: dict[str, int] = {}
    for m in sorted(migrations, key=lambda m: (m.domain, m.version)):
        want = latest.get(m.domain, 0) + 1
        if m.version != want:
            raise ValueError(f"migrations of {m.domain}: version {m.version} where {want} "
                             "was expected (versions start at 1 and only append)")
        latest[m.domain] = m.version
    return latest


def _sql(statement: Statement, dialect: str) -> str:
    if isinstance(statement, str):
        return statement
    try:
        return statement[dialect]
    except KeyError:
        raise ValueError(f"a migration statement has no {dialect} form") from None


def _refuse_newer(recorded: dict[str, int], latest: dict[str, int], url: str) -> None:
    for domain, version in sorted(recorded.items()):
        if domain not in latest:
            raise SchemaTooNew(
                f"the hub database {url} has tables of domain {domain!r} (version {version}) "
                "that this hub does not know: it was migrated by a newer edge-hub; "
                "upgrade this hub (or use a database of its own)")
        if version > latest[domain]:
            raise SchemaTooNew(
                f"the hub database {url} is at {domain} schema version {version}, newer than "
                f"this hub's {latest[domain]}: it was migrated by a newer edge-hub; "
                "upgrade this hub (or use a database of its own)")


def versions(store) -> dict[str, int]:
    """The versions recorded in a database, per domain (empty before any migration)."""
    with store.read() as tx:
        if not store.has_table(tx, "schema_versions"):
            return {}
        tx.execute("SELECT domain, version FROM schema_versions")
        return {d: int(v) for d, v in tx.fetchall()}


def migrate(store, migrations: Iterable[Migration]) -> dict[str, int]:
    """Bring the database up to `migrations`; return the versions now recorded per domain."""
    migrations = list(migrations)
    latest = _check_order(migrations)
    with store.transaction() as tx:
        store.schema_lock(tx)
        tx.execute(VERSIONS_TABLE)
        tx.execute("SELECT domain, version FROM schema_versions")
        recorded = {d: int(v) for d, v in tx.fetchall()}
        _refuse_newer(recorded, latest, store.url)
        for m in sorted(migrations, key=lambda m: (m.domain, m.version)):
            if m.version <= recorded.get(m.domain, 0):
                continue
            for statement in m.statements:
                tx.execute(_sql(statement, store.dialect))
            tx.execute("INSERT INTO schema_versions (domain, version, applied) VALUES (?, ?, ?)"
                       " ON CONFLICT (domain) DO UPDATE SET version = excluded.version,"
                       " applied = excluded.applied", (m.domain, m.version, time.time()))
            recorded[m.domain] = m.version
    return recorded


def check(store, migrations: Iterable[Migration]) -> dict[str, int]:
    """For read-only use: refuse a database newer than the code; return its versions."""
    latest = _check_order(list(migrations))
    recorded = versions(store)
    _refuse_newer(recorded, latest, store.url)
    return recorded


__all__ = ["Migration", "SchemaTooNew", "migrate", "check", "versions", "VERSIONS_TABLE"]
