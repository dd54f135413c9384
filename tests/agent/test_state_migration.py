"""Upgrades keep state: an older state database migrates forward with its rows; newer is refused."""

from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import run_cli
from edge_agent.errors import StateError
from edge_agent.outbox import Outbox
from edge_agent.state import db as statedb

CONFIG = """
[agent]
store = "store-0007"
region = "eu-west"
state_dir = "{state}"

[[devices]]
id = "register"
kind = "host"
"""


def build_v1(path, monkeypatch) -> list[str]:
    """Create a state database as release 1 left it: outbox rows and device state."""
    with monkeypatch.context() as m:
        m.setattr(statedb, "MIGRATIONS", statedb.MIGRATIONS[:1])
        m.setattr(statedb, "SCHEMA_VERSION", 1)
        db = statedb.connect(path)
        outbox = Outbox(db, "store-0007", "eu-west")
        rows = [outbox.enqueue("alert", {"device": "receipt-1", "n": i}) for i in range(5)]
        db.execute("INSERT INTO device_state (device, kind, reading, failures, updated) "
                   "VALUES ('receipt-1', 'escpos', '{\"values\": {}}', 2, 1.0)")
        db.close()
    return [r.id for r in rows]


def contents(db: sqlite3.Connection):
    return (db.execute("SELECT id FROM outbox ORDER BY seq").fetchall(),
            db.execute("SELECT device, failures FROM device_state").fetchall(),
            db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0])


def future_step(db: sqlite3.Connection) -> None:
    """A release's new step, as the health branch's windows table will be."""
    statedb._script(db, "CREATE TABLE windows_test (device TEXT PRIMARY KEY, data BLOB)")


def failing_step(db: sqlite3.Connection) -> None:
    """A step that dies halfway, after changing the schema."""
    db.execute("CREATE TABLE half_done (x INTEGER)")
    db.execute("ALTER TABLE outbox ADD COLUMN half INTEGER")
    raise RuntimeError("power cut")


def test_a_version_1_database_opens_with_the_current_code_and_keeps_its_rows(tmp_path,
                                                                             monkeypatch):
    path = tmp_path / "agent.db"
    ids = build_v1(path, monkeypatch)
    db = statedb.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == statedb.SCHEMA_VERSION
        outbox_ids, states, last_seq = contents(db)
        assert [r[0] for r in outbox_ids] == ids
        assert states == [("receipt-1", 2)]
        # The per-store seq goes on from where release 1 stopped: it never repeats.
        assert Outbox(db, "store-0007", "eu-west").enqueue("alert", {}).seq == int(last_seq) + 1
    finally:
        db.close()


def test_a_new_release_step_migrates_forward_and_keeps_every_row(tmp_path, monkeypatch):
    path = tmp_path / "agent.db"
    build_v1(path, monkeypatch)
    before = contents(sqlite3.connect(path))
    steps = statedb.MIGRATIONS + [future_step]
    monkeypatch.setattr(statedb, "MIGRATIONS", steps)
    monkeypatch.setattr(statedb, "SCHEMA_VERSION", len(steps))
    db = statedb.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(steps)
        assert db.execute("SELECT COUNT(*) FROM windows_test").fetchone()[0] == 0
        assert contents(db) == before
    finally:
        db.close()


def test_a_crash_in_a_migration_leaves_the_previous_version_intact(tmp_path, monkeypatch):
    path = tmp_path / "agent.db"
    build_v1(path, monkeypatch)
    current = statedb.SCHEMA_VERSION
    before = contents(sqlite3.connect(path))
    steps = statedb.MIGRATIONS + [failing_step]
    monkeypatch.setattr(statedb, "MIGRATIONS", steps)
    monkeypatch.setattr(statedb, "SCHEMA_VERSION", len(steps))
    with pytest.raises(StateError, match=f"stays at version {current}"):
        statedb.connect(path)
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == current
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchall() == []
        columns = [r[1] for r in db.execute("PRAGMA table_info(outbox)")]
        assert "half" not in columns
        assert contents(db) == before
    finally:
        db.close()
    # Once the step is fixed, the same file migrates.
    monkeypatch.setattr(statedb, "MIGRATIONS", statedb.MIGRATIONS[:current] + [future_step])
    statedb.connect(path).close()


def test_a_database_newer_than_the_code_is_refused_with_a_clear_error(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    db = statedb.connect(state / "agent.db")
    db.execute(f"PRAGMA user_version={statedb.SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateError, match="newer than this agent"):
        statedb.connect(state / "agent.db")
    config = tmp_path / "agent.toml"
    config.write_text(CONFIG.format(state=state))
    result = run_cli("outbox", "--config", str(config))
    assert result.returncode == 1
    assert "downgrade is not supported" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_reads_the_default_config_named_by_edge_agent_config(tmp_path, monkeypatch):
    config = tmp_path / "agent.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    monkeypatch.setenv("EDGE_AGENT_CONFIG", str(config))
    result = run_cli("status", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["store"] == "store-0007"
