"""The audit domain's tables: the hash-chained log, its head, and signed checkpoints."""

from __future__ import annotations

from hub.store.migrate import Migration

GENESIS = "0" * 64  # the prev_hash of entry 1

MIGRATIONS: tuple[Migration, ...] = (
    Migration("audit", 1, (
        # One row an action, seq gap-free from 1. hash = SHA-256(prev_hash "\n" canonical(row))
        # over the stored text of every column but hash itself (hub/domains/audit/log.py).
        """CREATE TABLE IF NOT EXISTS audit_log (
            seq BIGINT PRIMARY KEY, ts TEXT NOT NULL, actor_kind TEXT NOT NULL,
            actor TEXT NOT NULL, role TEXT NOT NULL, scope TEXT NOT NULL,
            action TEXT NOT NULL, object TEXT NOT NULL, store TEXT, region TEXT,
            detail TEXT, source TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts)",
        "CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (actor, seq)",
        "CREATE INDEX IF NOT EXISTS audit_log_store ON audit_log (store, seq)",
        # The chain's head, one row: every append locks it (FOR UPDATE on PostgreSQL, the
        # write lock on SQLite), so concurrent writers take turns and never fork the chain.
        """CREATE TABLE IF NOT EXISTS audit_head (
            id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)""",
        {"sqlite": f"INSERT OR IGNORE INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS}')",
         "postgresql": f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS}')"
                       " ON CONFLICT (id) DO NOTHING"},
        # Signed checkpoints of the head (also exported to a file and an MQTT topic).
        """CREATE TABLE IF NOT EXISTS audit_checkpoints (
            seq BIGINT PRIMARY KEY, hash TEXT NOT NULL, ts TEXT NOT NULL, kid TEXT NOT NULL,
            sig TEXT NOT NULL)""",
    )),
)
