"""Shared fixtures. The helper modules live in tests/support/ (on pytest's pythonpath, see
pyproject.toml); ROOT, free_port, agent_env and run_cli are re-exported here for the tests that
import them from conftest."""

from __future__ import annotations

import sys

import pytest

from testenv import ROOT, agent_env, free_port, run_cli  # noqa: F401  (re-exported)

# Long scenarios that run in a background thread alongside the suite (tests/support/longrun.py).
pytest_plugins = ("longrun",)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def mosquitto(tmp_path):
    """A fresh Mosquitto broker on a free loopback port, stopped after the test."""
    from brokers import Mosquitto

    broker = Mosquitto(tmp_path / "broker").start()
    yield broker
    broker.kill()


@pytest.fixture(params=["sqlite", "postgresql"])
def hub_db(request, tmp_path):
    """A fresh, empty fleet database URL: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield str(tmp_path / "hub.db")
        return
    from hubkit import create_pg_database, drop_pg_database, pg_reachable

    if not pg_reachable():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (trust auth, user postgres)")
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture(autouse=True)
def _no_hub_left_behind():
    """Kill any hub process a test started and did not stop (a failed assertion, say)."""
    yield
    hubkit = sys.modules.get("hubkit")
    if hubkit is not None:
        while hubkit.RUNNING:
            hubkit.RUNNING.pop().kill()
