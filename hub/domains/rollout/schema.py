"""The rollout domain's tables: bundles, each store's desired state and what it reported, and
staged rollouts with the stores each stage updated."""

from __future__ import annotations

from hub.store.migrate import Migration

MIGRATIONS: tuple[Migration, ...] = (
    Migration("rollout", 1, (
        # Content-addressed: sha256 of the content; content is base64 text (both databases).
        """CREATE TABLE IF NOT EXISTS bundles (
            sha256 TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,
            version BIGINT NOT NULL, size BIGINT NOT NULL, manifest TEXT NOT NULL,
            content TEXT NOT NULL, actor TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
            published DOUBLE PRECISION)""",
        "CREATE UNIQUE INDEX IF NOT EXISTS bundles_kind_version ON bundles (kind, version)",
        # One signed desired-state document a store, retained on its config topic.
        """CREATE TABLE IF NOT EXISTS desired (
            store TEXT PRIMARY KEY, region TEXT NOT NULL, version BIGINT NOT NULL,
            model_sha TEXT, model_rollback INTEGER NOT NULL DEFAULT 0,
            config_sha TEXT, config_rollback INTEGER NOT NULL DEFAULT 0,
            urgent INTEGER NOT NULL DEFAULT 0, payload TEXT NOT NULL,
            changed DOUBLE PRECISION NOT NULL, published DOUBLE PRECISION)""",
        # The last bundle result a store reported, per kind.
        """CREATE TABLE IF NOT EXISTS bundle_reports (
            store TEXT NOT NULL, kind TEXT NOT NULL, version BIGINT, sha256 TEXT,
            status TEXT NOT NULL, reason TEXT, detail TEXT, output TEXT,
            at DOUBLE PRECISION NOT NULL, PRIMARY KEY (store, kind))""",
        """CREATE TABLE IF NOT EXISTS rollouts (
            id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, kind TEXT NOT NULL,
            version BIGINT NOT NULL, stages TEXT NOT NULL, stage INTEGER NOT NULL,
            state TEXT NOT NULL, stage_started DOUBLE PRECISION,
            soak_s DOUBLE PRECISION NOT NULL, urgent INTEGER NOT NULL, gates TEXT NOT NULL,
            reason TEXT, last_gate TEXT, actor TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL, finished DOUBLE PRECISION)""",
        "CREATE INDEX IF NOT EXISTS rollouts_state ON rollouts (state)",
        """CREATE TABLE IF NOT EXISTS rollout_stores (
            rollout TEXT NOT NULL, store TEXT NOT NULL, region TEXT NOT NULL,
            stage INTEGER NOT NULL, previous_sha TEXT, assigned DOUBLE PRECISION,
            applied DOUBLE PRECISION, failed TEXT, sessions_at_start BIGINT,
            rolled_back DOUBLE PRECISION, PRIMARY KEY (rollout, store))""",
    )),
)
