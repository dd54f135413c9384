"""The hub database's versioned migrations (hub/store/migrate.py) on SQLite and PostgreSQL:
a fresh database, an upgrade from the schema every hub had before (no schema_versions), a
schema newer than the code refused with a clear error, and the runner's own rules."""

from __future__ import annotations

import pytest

from hub.app import ALL_MIGRATIONS, open_store
from hub.cli import main as hub_main
from hub.domains import fleet
from hub.store import SchemaTooNew
from hub.store import open_store as open_bare
from hub.store.migrate import Migration, migrate, versions

# The hub schema before versioned migrations, verbatim from hub/store/base.py at 4f52689.
TODAY = (
    """CREATE TABLE IF NOT EXISTS messages (
        id TEXT PRIMARY KEY, store TEXT NOT NULL, region TEXT NOT NULL, seq BIGINT NOT NULL,
        kind TEXT NOT NULL, ts TEXT NOT NULL, received DOUBLE PRECISION NOT NULL,
        envelope TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS messages_store_seq ON messages (store, seq)",
    """CREATE TABLE IF NOT EXISTS stores (
        store TEXT PRIMARY KEY, region TEXT NOT NULL,
        birth_session BIGINT NOT NULL DEFAULT -1, death_session BIGINT NOT NULL DEFAULT -1,
        online INTEGER NOT NULL DEFAULT 0, changed DOUBLE PRECISION, last_seen DOUBLE PRECISION,
        agent TEXT, first_seq BIGINT, max_seq BIGINT, received BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS devices (
        store TEXT NOT NULL, device TEXT NOT NULL, kind TEXT, ts TEXT, vals TEXT,
        stale INTEGER, reason TEXT, decision TEXT, score DOUBLE PRECISION,
        threshold DOUBLE PRECISION, model TEXT, decision_ts TEXT, explanation TEXT,
        PRIMARY KEY (store, device))""",
    """CREATE TABLE IF NOT EXISTS alerts (
        id TEXT PRIMARY KEY, store TEXT NOT NULL, region TEXT NOT NULL, alert TEXT NOT NULL,
        device TEXT NOT NULL, what TEXT NOT NULL, severity TEXT NOT NULL, state TEXT NOT NULL,
        since TEXT NOT NULL, raised_ts TEXT, cleared_ts TEXT, seq BIGINT NOT NULL,
        explanation TEXT, decision TEXT, acked DOUBLE PRECISION, acked_by TEXT)""",
    "CREATE INDEX IF NOT EXISTS alerts_store_alert ON alerts (store, alert)",
    """CREATE TABLE IF NOT EXISTS feed (
        key TEXT PRIMARY KEY, store TEXT NOT NULL, region TEXT NOT NULL, alert TEXT NOT NULL,
        state TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, seq BIGINT NOT NULL,
        status TEXT NOT NULL,
        owner TEXT, claimed DOUBLE PRECISION, sent DOUBLE PRECISION, payload TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS feed_status ON feed (status)",
    "CREATE INDEX IF NOT EXISTS feed_store_alert ON feed (store, alert, at)",
    """CREATE TABLE IF NOT EXISTS rejects (
        reason TEXT PRIMARY KEY, count BIGINT NOT NULL, last_topic TEXT, last_detail TEXT,
        last_at DOUBLE PRECISION)""",
)


def _today_db(url: str) -> None:
    """A database as today's hub leaves it: its tables, some rows, no schema_versions."""
    db = open_bare(url, create=True, migrations=())
    try:
        with db.transaction() as tx:
            tx.execute("DROP TABLE IF EXISTS schema_versions")
            for statement in TODAY:
                tx.execute(statement)
            tx.execute("INSERT INTO stores (store, region, online, max_seq, first_seq, received)"
                       " VALUES ('s1', 'north', 1, 5, 1, 5)")
            tx.execute("INSERT INTO devices (store, device, kind) VALUES ('s1', 'p1', 'escpos')")
            tx.execute("INSERT INTO rejects (reason, count) VALUES ('bad_body', 7)")
    finally:
        db.close()


def _latest() -> dict[str, int]:
    latest: dict[str, int] = {}
    for m in ALL_MIGRATIONS:
        latest[m.domain] = max(latest.get(m.domain, 0), m.version)
    return latest


def test_a_fresh_database_records_every_domain_at_its_latest_version(hub_db):
    db = open_store(hub_db)
    try:
        latest = {}
        for m in ALL_MIGRATIONS:
            latest[m.domain] = max(latest.get(m.domain, 0), m.version)
        assert versions(db) == latest
        assert fleet.stores(db) == []
    finally:
        db.close()


def test_todays_database_upgrades_and_keeps_its_rows(hub_db):
    _today_db(hub_db)
    db = open_bare(hub_db, create=False)
    try:
        assert versions(db) == {}  # before: no versions table
    finally:
        db.close()
    db = open_store(hub_db)
    try:
        assert versions(db) == _latest()  # today's tables kept, every domain at its latest
        [store] = fleet.stores(db)
        assert store["store"] == "s1" and store["devices"] == 1
        assert fleet.rejects(db) == {"bad_body": 7}
    finally:
        db.close()
    db = open_store(hub_db)  # again: nothing left to apply
    try:
        assert versions(db) == _latest()
    finally:
        db.close()


def test_a_later_migration_applies_once_and_in_order(hub_db):
    n = _latest()["fleet"]
    extra = (Migration("fleet", n + 1, ("ALTER TABLE stores ADD COLUMN note TEXT",)),
             Migration("fleet", n + 2, ({
                 "sqlite": "CREATE INDEX stores_note ON stores (note)",
                 "postgresql": "CREATE INDEX stores_note ON stores (note)"},)))
    db = open_bare(hub_db, create=True, migrations=ALL_MIGRATIONS)
    try:
        assert migrate(db, (*ALL_MIGRATIONS, *extra))["fleet"] == n + 2
        assert migrate(db, (*ALL_MIGRATIONS, *extra))["fleet"] == n + 2  # idempotent
        with db.read() as tx:
            tx.execute("SELECT note FROM stores")
            assert tx.fetchall() == []
    finally:
        db.close()


def test_a_database_newer_than_the_code_is_refused_clearly(hub_db, capsys):
    db = open_store(hub_db)
    try:
        with db.transaction() as tx:
            tx.execute("UPDATE schema_versions SET version = 99 WHERE domain = 'fleet'")
    finally:
        db.close()
    with pytest.raises(SchemaTooNew, match=f"newer than this hub's {_latest()['fleet']}"):
        open_store(hub_db)
    with pytest.raises(SchemaTooNew, match="newer"):
        open_store(hub_db, create=False)
    # The command line says it in one line, exit 1, no traceback.
    assert hub_main(["fleet", "--db", hub_db, "--json"]) == 1
    err = capsys.readouterr().err
    assert "newer edge-hub" in err and "Traceback" not in err


def test_a_domain_unknown_to_the_code_is_refused(hub_db):
    db = open_store(hub_db)
    try:
        with db.transaction() as tx:
            tx.execute("INSERT INTO schema_versions (domain, version, applied)"
                       " VALUES ('tomorrow', 1, 0)")
    finally:
        db.close()
    with pytest.raises(SchemaTooNew, match="'tomorrow'"):
        open_store(hub_db)


@pytest.mark.parametrize("bad", [
    (Migration("x", 2, ()),),
    (Migration("x", 1, ()), Migration("x", 1, ())),
    (Migration("x", 1, ()), Migration("x", 3, ())),
], ids=["starts at 2", "a version twice", "a gap"])
def test_migrations_must_count_from_one_without_gaps(tmp_path, bad):
    db = open_bare(str(tmp_path / "h.db"), create=True)
    try:
        with pytest.raises(ValueError, match="versions start at 1"):
            migrate(db, bad)
    finally:
        db.close()


def test_serve_refuses_a_newer_database_with_exit_1(tmp_path, cli):
    url = str(tmp_path / "hub.db")
    db = open_store(url)
    try:
        with db.transaction() as tx:
            tx.execute("UPDATE schema_versions SET version = 5 WHERE domain = 'alerts'")
    finally:
        db.close()
    out = cli("serve", "--db", url, "--broker", "127.0.0.1:1", module="hub")
    assert out.returncode == 1 and "newer edge-hub" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
