"""The fleet domain's tables. Version 1 is the schema every hub had before versioned
migrations (it was hub/store/base.py's SCHEMA), so an old database upgrades by recording it."""

from hub.store.migrate import Migration

# TEXT, BIGINT, INTEGER and DOUBLE PRECISION mean the same on SQLite and PostgreSQL.
# Timestamps from agents are normalized ISO 8601 text (they sort); the hub's are epoch seconds.
MIGRATIONS = (
    Migration("fleet", 1, (
        # Every message from a store, once: the id is the idempotency key.
        """CREATE TABLE IF NOT EXISTS messages (
            id TEXT PRIMARY KEY, store TEXT NOT NULL, region TEXT NOT NULL, seq BIGINT NOT NULL,
            kind TEXT NOT NULL, ts TEXT NOT NULL, received DOUBLE PRECISION NOT NULL,
            envelope TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS messages_store_seq ON messages (store, seq)",
        # One row a store: sessions seen (birth and death), online since when, seq accounting.
        """CREATE TABLE IF NOT EXISTS stores (
            store TEXT PRIMARY KEY, region TEXT NOT NULL,
            birth_session BIGINT NOT NULL DEFAULT -1, death_session BIGINT NOT NULL DEFAULT -1,
            online INTEGER NOT NULL DEFAULT 0, changed DOUBLE PRECISION,
            last_seen DOUBLE PRECISION, agent TEXT, first_seq BIGINT, max_seq BIGINT,
            received BIGINT NOT NULL DEFAULT 0)""",
        # One row a device: its latest reading and its latest decision.
        """CREATE TABLE IF NOT EXISTS devices (
            store TEXT NOT NULL, device TEXT NOT NULL, kind TEXT, ts TEXT, vals TEXT,
            stale INTEGER, reason TEXT, decision TEXT, score DOUBLE PRECISION,
            threshold DOUBLE PRECISION, model TEXT, decision_ts TEXT, explanation TEXT,
            PRIMARY KEY (store, device))""",
        # Rejected messages, counted by reason.
        """CREATE TABLE IF NOT EXISTS rejects (
            reason TEXT PRIMARY KEY, count BIGINT NOT NULL, last_topic TEXT, last_detail TEXT,
            last_at DOUBLE PRECISION)""",
    )),
    # Issue 15. Stores: the agent instance (state database) whose sessions count, when its
    # last accepted birth was (its ts, never later than its arrival), since when seqs count
    # (a new instance restarts them), and when retention marked it unseen. Devices: the
    # newest-wins guards of reading and decision as epoch seconds, never later than the
    # message's arrival, so a clock running ahead cannot pin a device for the skew's length.
    Migration("fleet", 2, (
        "ALTER TABLE stores ADD COLUMN instance TEXT",
        "ALTER TABLE stores ADD COLUMN birth_at DOUBLE PRECISION",
        "ALTER TABLE stores ADD COLUMN seq_since DOUBLE PRECISION",
        "ALTER TABLE stores ADD COLUMN unseen DOUBLE PRECISION",
        "ALTER TABLE devices ADD COLUMN reading_at DOUBLE PRECISION",
        "ALTER TABLE devices ADD COLUMN decision_at DOUBLE PRECISION",
        "CREATE INDEX IF NOT EXISTS messages_received ON messages (received)",
    )),
    # Issue 14, the scoring_errors rollout gate: each store's scoring_errors events (devices
    # that went without a model score, by reason: docs/protocol.md), one row a message. `at`
    # is the event's own time clamped to its arrival; `total` the store's count since its
    # state database was made, `new` the count since its previous event, `reasons` and
    # `errors` the same two by reason (JSON). The gate sums what each store added in a window
    # (fleet.scoring_errors).
    Migration("fleet", 3, (
        """CREATE TABLE IF NOT EXISTS scoring_errors (
            id TEXT PRIMARY KEY, store TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
            total BIGINT NOT NULL, new BIGINT NOT NULL, reasons TEXT NOT NULL,
            errors TEXT NOT NULL, model TEXT)""",
        "CREATE INDEX IF NOT EXISTS scoring_errors_store_at ON scoring_errors (store, at)",
    )),
)
