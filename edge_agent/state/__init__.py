"""The agent's state on disk: one SQLite file (WAL) holding the outbox, device state and windows."""
