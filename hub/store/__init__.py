"""The fleet store: one SQL schema on SQLite (WAL, the default) or PostgreSQL (psycopg 3).

    open_store("sqlite:///var/lib/edge-hub/hub.db")   or a plain path
    open_store("postgresql://user@host:5432/fleet")

Both adapters expose the same Store (store/base.py); SQL is written once with `?` placeholders
and the few dialect differences (LEAST/MIN, insert-returning-new) live in the adapters.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from hub.errors import StoreError

from hub.store.base import DatabaseUnavailable, Store, Tx
from hub.store.migrate import Migration, SchemaTooNew, check, migrate

ENV_DB = "EDGE_HUB_DB"


def default_db() -> str:
    """Return the default database URL: $EDGE_HUB_DB, else a SQLite file under XDG state."""
    if os.environ.get(ENV_DB):
        return os.environ[ENV_DB]
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "edge-hub" / "hub.db")


def open_store(url: str, *, create: bool = True, migrations: Iterable[Migration] = ()) -> Store:
    """Open the fleet store at a URL or SQLite path; with create, make it and apply
    `migrations` (hub.app passes every domain's), else only refuse a schema newer than them."""
    db = _open(url, create)
    try:
        if create:
            migrate(db, migrations)
        else:
            check(db, migrations)
    except BaseException:
        db.close()
        raise
    return db


def _open(url: str, create: bool) -> Store:
    if url.startswith(("postgresql://", "postgres://")):
        from hub.store.postgres import PostgresStore

        return PostgresStore(url, create=create)
    if "://" in url and not url.startswith("sqlite://"):
        raise StoreError(f"--db: unsupported database URL {url.split('://')[0]}:// "
                         "(use a SQLite path, sqlite:///PATH or postgresql://...)")
    from hub.store.sqlite import SqliteStore

    path = url[len("sqlite://"):] if url.startswith("sqlite://") else url
    return SqliteStore(path, create=create)


__all__ = ["DatabaseUnavailable", "Store", "Tx", "open_store", "default_db", "ENV_DB", "Migration", "SchemaTooNew"]
