"""The tickets domain's tables: problems, tickets and the delivery intents (an outbox).

    ticket_problems  one row a fingerprint (store, device, problem family): the lock every rule
                     takes first (an UPDATE of this row serializes workers on PostgreSQL; SQLite
                     writers are serialized already), the current ticket, the last seq seen
    tickets          one row a ticket the hub asked for; `generation` counts the problem's
                     tickets, `previous_id` links a later ticket to the one before
    ticket_intents   what must be said to the outside system, in order per problem; delivered
                     by a worker holding a lease (lease_owner, lease_until)
"""

from hub.store.migrate import Migration

_ID = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgresql": "BIGSERIAL PRIMARY KEY"}


def _both(sql: str) -> dict[str, str]:
    return {d: sql.replace("{ID}", ident) for d, ident in _ID.items()}


MIGRATIONS = (
    Migration("tickets", 1, (
        """CREATE TABLE IF NOT EXISTS ticket_problems (
            fingerprint TEXT PRIMARY KEY, store TEXT NOT NULL, region TEXT NOT NULL,
            device TEXT NOT NULL, family TEXT NOT NULL, current_ticket BIGINT,
            generations INTEGER NOT NULL DEFAULT 0, last_seq BIGINT NOT NULL DEFAULT -1,
            touched DOUBLE PRECISION NOT NULL)""",
        _both("""CREATE TABLE IF NOT EXISTS tickets (
            id {ID}, fingerprint TEXT NOT NULL, generation INTEGER NOT NULL,
            correlation TEXT NOT NULL UNIQUE, store TEXT NOT NULL, region TEXT NOT NULL,
            device TEXT NOT NULL, family TEXT NOT NULL, what TEXT NOT NULL,
            kind TEXT NOT NULL, priority TEXT NOT NULL, connector TEXT,
            route TEXT NOT NULL, state TEXT NOT NULL, previous_id BIGINT,
            opened DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL,
            cleared_at DOUBLE PRECISION, resolved_at DOUBLE PRECISION,
            last_comment DOUBLE PRECISION, untold INTEGER NOT NULL DEFAULT 0,
            events INTEGER NOT NULL DEFAULT 1, reopened INTEGER NOT NULL DEFAULT 0,
            external_key TEXT, external_url TEXT, external_state TEXT, external_ref TEXT,
            last_error TEXT)"""),
        "CREATE INDEX IF NOT EXISTS tickets_store ON tickets (store, state)",
        "CREATE INDEX IF NOT EXISTS tickets_state ON tickets (state, cleared_at)",
        _both("""CREATE TABLE IF NOT EXISTS ticket_intents (
            id {ID}, ticket_id BIGINT NOT NULL, fingerprint TEXT NOT NULL,
            action TEXT NOT NULL, connector TEXT, body TEXT NOT NULL,
            status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            created DOUBLE PRECISION NOT NULL, next_at DOUBLE PRECISION NOT NULL,
            lease_owner TEXT, lease_until DOUBLE PRECISION, done_at DOUBLE PRECISION,
            last_error TEXT, outcome TEXT)"""),
        "CREATE INDEX IF NOT EXISTS ticket_intents_due ON ticket_intents (status, next_at)",
        "CREATE INDEX IF NOT EXISTS ticket_intents_problem ON ticket_intents (fingerprint, id)",
        "CREATE INDEX IF NOT EXISTS ticket_intents_ticket ON ticket_intents (ticket_id, id)",
    )),
)
