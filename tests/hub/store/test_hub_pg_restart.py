"""The hub's PostgreSQL server restarts under it (issue 15, "the hub down and its database
restarted mid-stream"): the hub reconnects and ingests on, nothing lost, nothing twice.

Before the fix the hub kept its one broken connection for good: every commit failed ("the
connection is lost"), nothing was ingested, the commander logged a traceback ten times a
second, and only the writer's give-up (120 s) ended the process. Each test runs a private
PostgreSQL server (tests/support/pgcluster.py: initdb in a temporary folder, pg_ctl on a free
port) that it stops, kills and starts; the machine's shared server is never touched.
"""

from __future__ import annotations

import psycopg
import pytest

from hub.app import open_store
from hub.store import DatabaseUnavailable
from hubkit import HubProcess, Publisher, envelope, telemetry
from pgcluster import private_pg  # noqa: F401  (the fixture)
from wait import wait_until


def _stored(url: str, store: str) -> list[int]:
    """The seqs of `store`'s telemetry in the messages table (one entry per row)."""
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return [r[0] for r in conn.execute(
                "SELECT seq FROM messages WHERE store = %s AND kind = 'telemetry'", (store,))]
    except psycopg.OperationalError:
        return []  # the server is restarting


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_the_store_reconnects_after_its_server_restarted(private_pg, mode):
    url = private_pg.create_database("hub")
    db = open_store(url)
    try:
        with db.transaction() as tx:
            tx.execute("SELECT 1")
        private_pg.stop(mode)
        # The server away: DatabaseUnavailable (no statement or message to blame), not a hang.
        with pytest.raises(DatabaseUnavailable):
            with db.transaction() as tx:
                tx.execute("SELECT 1")
        private_pg.start()

        def works() -> bool:
            try:
                with db.transaction() as tx:
                    tx.execute("SELECT count(*) FROM messages")
                    return tx.fetchone() == (0,)
            except DatabaseUnavailable:
                return False  # the attempts are paced (RECONNECT_EVERY_S)

        wait_until(works, what="a transaction on the restarted server")
        assert db.reconnects == 1
    finally:
        db.close()


def test_a_restart_while_idle_costs_no_failed_transaction(private_pg):
    """The server restarts between two transactions: the next BEGIN finds the connection
    broken, reconnects and runs at once (the caller sees nothing)."""
    url = private_pg.create_database("hub")
    db = open_store(url)
    try:
        private_pg.restart("fast")
        with db.transaction() as tx:
            tx.execute("SELECT count(*) FROM messages")
            assert tx.fetchone() == (0,)
        assert db.reconnects == 1
    finally:
        db.close()


def test_the_hub_ingests_on_after_its_database_restarted_twice(private_pg, mosquitto, tmp_path):
    """A real hub (`edge-hub serve`) on the private server: messages before, during (the
    server down: held unacknowledged by the hub, redelivered) and after two restarts (a clean
    one, then a crash) are all stored, each once; the same process throughout, which logged
    its reconnections and no traceback."""
    url = private_pg.create_database("hub")
    hub = HubProcess(mosquitto, url, "hub-pg-restart", log_path=tmp_path / "hub.log").start()
    hub.wait_connected()
    pub = Publisher(mosquitto)
    seq = 0

    def send(n: int) -> None:
        nonlocal seq
        for _ in range(n):
            seq += 1
            pub.send(envelope("telemetry", telemetry(2), store="pg-s1", seq=seq))

    try:
        send(20)
        wait_until(lambda: len(_stored(url, "pg-s1")) == 20, what="the first 20 stored")
        private_pg.restart("fast")
        send(20)
        wait_until(lambda: len(_stored(url, "pg-s1")) == 40, what="40 stored after a restart")
        private_pg.stop("immediate")
        send(20)  # acknowledged by the broker; the hub cannot commit them yet
        private_pg.start()
        send(20)
        wait_until(lambda: len(_stored(url, "pg-s1")) == 80, what="80 stored after a crash",
                   gone=hub._gone, detail=lambda: hub.log()[-3000:])
        assert hub.proc.poll() is None, "the hub exited"
        assert hub.terminate() == 0
    finally:
        pub.close()
        hub.kill()
    seqs = _stored(url, "pg-s1")
    assert sorted(seqs) == list(range(1, 81))  # each once
    log = hub.log()
    assert "reconnected to the hub database" in log
    assert "Traceback" not in log
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)
