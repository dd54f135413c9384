"""Issue 15 item 6 end to end: a real agent whose state database is lost (deleted while it is
stopped) comes back as a new instance at session 1; a real hub takes the store back online and
its seq accounting restarts (SQLite hub; the PostgreSQL rules are in test_hub_sessions.py)."""

from __future__ import annotations

import shutil

from agentproc import AgentProcess
from hub.app import open_store, store_detail
from hubkit import HubProcess
from wait import wait_until

STORE, REGION = "store-lost", "r1"


def toml(state_dir, port: int) -> str:
    return (f'[agent]\nstore = "{STORE}"\nregion = "{REGION}"\nstate_dir = "{state_dir}"\n\n'
            "[telemetry]\nflush_interval = 0.2\n\n[scoring]\nenabled = false\n\n"
            f'[sync]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\ntls = false\n'
            "connect_timeout = 5.0\nreconnect_min = 0.5\nreconnect_max = 2.0\n\n"
            '[[devices]]\nid = "register"\nkind = "host"\ninterval = 0.5\n')


def logs(hub, agent_log) -> str:
    """The hub's and the agent's last log lines, for a failure message."""
    agent = agent_log.read_text(errors="replace") if agent_log.exists() else ""
    return f"hub log:\n{hub.log()[-2500:]}\nagent log:\n{agent[-2500:]}"


def test_a_store_whose_state_database_was_lost_comes_back_online(mosquitto, tmp_path):
    db = str(tmp_path / "hub.db")
    hub = HubProcess(mosquitto, db, "hub-lost", log_path=tmp_path / "hub.log").start()
    state = tmp_path / "state"
    config = tmp_path / "agent.toml"
    config.write_text(toml(state, mosquitto.port))

    def detail():
        store = open_store(db, create=False)
        try:
            return store_detail(store, STORE)
        except Exception:  # not known yet
            return None
        finally:
            store.close()

    try:
        hub.wait_connected()
        agent = AgentProcess(config, tmp_path / "a1.log")
        try:
            first = wait_until(lambda: (d := detail()) and d["online"] and d["seq"]["received"]
                               >= 3 and d, what="the store online with messages")
            # More connections, so the lost state's session is above 1.
            mosquitto.restart()
            wait_until(lambda: (d := detail()) and d["session"] > first["session"] and d["online"],
                       what="a later session")
        finally:
            assert agent.stop() == 0
        old = wait_until(lambda: (d := detail()) and d["online"] is False and d,
                         what="the store offline after its agent stopped",
                         detail=lambda: logs(hub, tmp_path / "a1.log"))
        assert old["session"] >= 2
        shutil.rmtree(state)  # the state database is lost
        agent = AgentProcess(config, tmp_path / "a2.log")
        try:
            new = wait_until(lambda: (d := detail()) and d["online"] and d["session"] == 1
                             and d["seq"]["received"] >= 2 and d,
                             what="the store back online at session 1")
            assert new["instance"] != old["instance"] and new["instance"]
            assert new["seq"]["first"] == 1 and new["gaps"] == []
        finally:
            agent.stop()
    finally:
        hub.kill()
