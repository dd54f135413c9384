"""The approvals domain's tables: requests bound to a payload hash, and one vote per approver."""

from hub.store.migrate import Migration

MIGRATIONS = (
    Migration("approvals", 1, (
        {d: f"""CREATE TABLE IF NOT EXISTS approval_requests (
            id {ident}, action TEXT NOT NULL, payload TEXT NOT NULL,
            payload_hash TEXT NOT NULL, store TEXT, region TEXT,
            chain_wide INTEGER NOT NULL DEFAULT 0, required INTEGER NOT NULL,
            requester TEXT NOT NULL, requester_kind TEXT NOT NULL, status TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION NOT NULL,
            decided DOUBLE PRECISION, outcome TEXT, published DOUBLE PRECISION)"""
         for d, ident in (("sqlite", "INTEGER PRIMARY KEY AUTOINCREMENT"),
                          ("postgresql", "BIGSERIAL PRIMARY KEY"))},
        "CREATE INDEX IF NOT EXISTS approval_requests_status ON approval_requests (status,"
        " expires)",
        """CREATE TABLE IF NOT EXISTS approval_votes (
            request_id BIGINT NOT NULL, approver TEXT NOT NULL, role TEXT NOT NULL,
            decision TEXT NOT NULL, reason TEXT, at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (request_id, approver))""",
    )),
)
