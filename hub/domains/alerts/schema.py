"""The alerts domain's tables (version 1: as before versioned migrations)."""

from hub.store.migrate import Migration

MIGRATIONS = (
    Migration("alerts", 1, (
        # One row an alert instance (a raise and its clear); id = hash of store, key and since.
        """CREATE TABLE IF NOT EXISTS alerts (
            id TEXT PRIMARY KEY, store TEXT NOT NULL, region TEXT NOT NULL, alert TEXT NOT NULL,
            device TEXT NOT NULL, what TEXT NOT NULL, severity TEXT NOT NULL,
            state TEXT NOT NULL, since TEXT NOT NULL, raised_ts TEXT, cleared_ts TEXT,
            seq BIGINT NOT NULL, explanation TEXT, decision TEXT, acked DOUBLE PRECISION,
            acked_by TEXT)""",
        "CREATE INDEX IF NOT EXISTS alerts_store_alert ON alerts (store, alert)",
        # The alert feed's outbox and its dedupe memory: one row a state transition, ever.
        """CREATE TABLE IF NOT EXISTS feed (
            key TEXT PRIMARY KEY, store TEXT NOT NULL, region TEXT NOT NULL, alert TEXT NOT NULL,
            state TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, seq BIGINT NOT NULL,
            status TEXT NOT NULL, owner TEXT, claimed DOUBLE PRECISION, sent DOUBLE PRECISION,
            payload TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS feed_status ON feed (status)",
        "CREATE INDEX IF NOT EXISTS feed_store_alert ON feed (store, alert, at)",
    )),
    # Retention deletes sent feed rows by age (issue 15).
    Migration("alerts", 2, ("CREATE INDEX IF NOT EXISTS feed_at ON feed (at)",)),
)
