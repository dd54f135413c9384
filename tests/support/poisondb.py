"""A hub database that refuses one device id ('boom') with a trigger (SQLite and PostgreSQL):
the tests' stand-in for any constraint the decoder's checks do not know, so a message that
passes decoding still breaks its batch's commit (quarantine, issue 15)."""

from __future__ import annotations

from hub.app import open_store

SQLITE_TRIGGER = ("CREATE TRIGGER poison BEFORE INSERT ON devices WHEN NEW.device = 'boom'"
                  " BEGIN SELECT RAISE(ABORT, 'poisoned device'); END")
PG_TRIGGER = (
    "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN IF NEW.device = 'boom' THEN"
    " RAISE EXCEPTION 'poisoned device'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER poison BEFORE INSERT ON devices FOR EACH ROW EXECUTE FUNCTION poison()")


def poison_devices(url: str) -> None:
    db = open_store(url)
    try:
        with db.transaction() as tx:
            for sql in (PG_TRIGGER if db.dialect == "postgresql" else (SQLITE_TRIGGER,)):
                tx.execute(sql)
    finally:
        db.close()
