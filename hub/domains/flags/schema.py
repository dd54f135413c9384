"""The flags domain's tables: settings by scope, and each store's signed flags document."""

from __future__ import annotations

from hub.store.migrate import Migration

MIGRATIONS: tuple[Migration, ...] = (
    Migration("flags", 1, (
        # scope: "chain", "region:NAME" or "store:NAME"; value 1 on, 0 off.
        """CREATE TABLE IF NOT EXISTS flag_settings (
            scope TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,
            actor TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, PRIMARY KEY (scope, name))""",
        # One signed document a store (retained on its flags topic); published is NULL until
        # the hub worker has published this version.
        """CREATE TABLE IF NOT EXISTS flag_docs (
            store TEXT PRIMARY KEY, region TEXT NOT NULL, version BIGINT NOT NULL,
            flags TEXT NOT NULL, payload TEXT NOT NULL, changed DOUBLE PRECISION NOT NULL,
            published DOUBLE PRECISION, applied_version BIGINT, applied_at DOUBLE PRECISION)""",
        "CREATE INDEX IF NOT EXISTS flag_docs_published ON flag_docs (published)",
    )),
)
