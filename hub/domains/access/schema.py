"""The access domain's tables: users and their API tokens (only a hash of each token)."""

from __future__ import annotations

from hub.store.migrate import Migration

MIGRATIONS: tuple[Migration, ...] = (
    Migration("access", 1, (
        # regions and stores: JSON arrays, sorted. disabled: when (epoch s), or NULL.
        # mqtt_hash: the user's broker password in Mosquitto's password-file format (PBKDF2),
        # made from the token when it is issued (edge-hub acl render writes it out).
        """CREATE TABLE IF NOT EXISTS users (
            name TEXT PRIMARY KEY, role TEXT NOT NULL, regions TEXT NOT NULL,
            stores TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, created_by TEXT NOT NULL,
            disabled DOUBLE PRECISION, mqtt_hash TEXT)""",
        # hash: SHA-256 of the token (hex). A token is 256 random bits: no slow hash needed.
        """CREATE TABLE IF NOT EXISTS api_tokens (
            hash TEXT PRIMARY KEY, name TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
            revoked DOUBLE PRECISION)""",
        "CREATE INDEX IF NOT EXISTS api_tokens_name ON api_tokens (name)",
    )),
)
