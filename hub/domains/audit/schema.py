"""STAND-IN (helper K): a plain audit table until helper U's hash-chained log is merged.

Its domain name is "audit_standin" so that U's own "audit" migrations, once merged, are not
mistaken for applied in a database this stand-in migrated."""

from hub.store.migrate import Migration

MIGRATIONS = (
    Migration("audit_standin", 1, (
        {"sqlite": "CREATE TABLE IF NOT EXISTS audit_standin (seq INTEGER PRIMARY KEY"
                   " AUTOINCREMENT, ts DOUBLE PRECISION NOT NULL, actor_kind TEXT NOT NULL,"
                   " actor TEXT NOT NULL, role TEXT, action TEXT NOT NULL, obj TEXT NOT NULL,"
                   " detail TEXT, source TEXT)",
         "postgresql": "CREATE TABLE IF NOT EXISTS audit_standin (seq BIGSERIAL PRIMARY KEY,"
                       " ts DOUBLE PRECISION NOT NULL, actor_kind TEXT NOT NULL,"
                       " actor TEXT NOT NULL, role TEXT, action TEXT NOT NULL, obj TEXT NOT NULL,"
                       " detail TEXT, source TEXT)"},
    )),
)
