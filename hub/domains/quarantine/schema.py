"""The quarantine domain's table: messages that decoded but could not be committed."""

from hub.store.migrate import Migration

MIGRATIONS = (
    Migration("quarantine", 1, (
        # One row a message (by its id): where it came from, why its commit failed, the payload
        # as received (NUL escaped, so PostgreSQL can hold it), how often it came back.
        """CREATE TABLE IF NOT EXISTS quarantine (
            id TEXT PRIMARY KEY, store TEXT NOT NULL, region TEXT NOT NULL,
            kind TEXT NOT NULL, seq BIGINT NOT NULL, topic TEXT NOT NULL,
            reason TEXT NOT NULL, payload TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
            times BIGINT NOT NULL DEFAULT 1)""",
        "CREATE INDEX IF NOT EXISTS quarantine_at ON quarantine (at)",
    )),
)
