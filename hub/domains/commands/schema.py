"""The commands domain's tables: commands with their per-store seq and result, what each
store reports refusing."""

from __future__ import annotations

from hub.store.migrate import Migration

MIGRATIONS: tuple[Migration, ...] = (
    Migration("commands", 1, (
        # One row a command. status: awaiting_approval -> queued -> sending -> delivered ->
        # done | failed | rejected, or expired. seq is allocated when the command is signed
        # (queued); payload is the signed message exactly as published.
        """CREATE TABLE IF NOT EXISTS commands (
            id TEXT PRIMARY KEY, store TEXT NOT NULL, region TEXT NOT NULL, device TEXT,
            action TEXT NOT NULL, args TEXT NOT NULL, seq BIGINT, kid TEXT,
            created DOUBLE PRECISION NOT NULL, expires_s DOUBLE PRECISION NOT NULL,
            issued DOUBLE PRECISION, expires DOUBLE PRECISION,
            status TEXT NOT NULL, reason TEXT, detail TEXT, output TEXT, payload TEXT,
            actor TEXT NOT NULL, approved_by TEXT, owner TEXT,
            delivered DOUBLE PRECISION, finished DOUBLE PRECISION, result_at DOUBLE PRECISION)""",
        "CREATE UNIQUE INDEX IF NOT EXISTS commands_store_seq ON commands (store, seq)",
        "CREATE INDEX IF NOT EXISTS commands_status ON commands (status)",
        """CREATE TABLE IF NOT EXISTS command_seq (
            store TEXT PRIMARY KEY, seq BIGINT NOT NULL)""",
        # The refusal counts each store last reported (they travel with every result).
        """CREATE TABLE IF NOT EXISTS command_rejects (
            store TEXT NOT NULL, reason TEXT NOT NULL, count BIGINT NOT NULL,
            at DOUBLE PRECISION NOT NULL, PRIMARY KEY (store, reason))""",
    )),
)
