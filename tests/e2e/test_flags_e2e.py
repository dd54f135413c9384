"""Kill switches end to end: `edge-hub flags set scoring=off --chain` stops model scoring on a
real agent, and the switch holds through an agent restart during a broker outage. States are
asserted, never a duration (bench/commands.py measures how fast)."""

from __future__ import annotations

import json
import time

import pytest

from brokers import Mosquitto
from controlkit import REGION, Agent, Raw, agent_rejects, agent_toml, hub_cli, wait_for
from hub.keys import KeyRing
from hub.app import open_store
from hubkit import HubProcess

STORE = "store-0001"
SCORING = "enabled = true\ninterval = 0.3"


@pytest.fixture
def rig(tmp_path, hub_db):  # the hub on SQLite and on PostgreSQL
    broker = Mosquitto(tmp_path / "broker").start()
    ring = KeyRing.init(tmp_path / "keys")
    db = hub_db
    hub = HubProcess(broker, db, "hub-flags-test", log_path=tmp_path / "hub.log").start()
    config = tmp_path / "agent.toml"
    config.write_text(agent_toml(tmp_path / "state", broker, ring, scoring=SCORING,
                                 host_interval=0.2))
    agent = Agent(config, tmp_path / "agent.log").start()
    rig = type("Rig", (), dict(tmp=tmp_path, broker=broker, ring=ring, db=db, hub=hub,
                               agent=agent))()
    try:
        hub.wait_connected()
        wait_for(lambda: _known(db), 60, "the store at the hub")
        yield rig
    finally:
        agent.stop()
        hub.terminate()
        broker.stop()


def _known(db_url: str) -> bool:
    db = open_store(db_url)
    try:
        with db.read() as tx:
            tx.execute("SELECT 1 FROM stores WHERE store = ?", (STORE,))
            return tx.fetchone() is not None
    finally:
        db.close()


def flags(rig, *words: str) -> None:
    r = hub_cli("flags", "set", *words, "--db", rig.db, "--dir", str(rig.tmp / "keys"))
    assert r.returncode == 0, r.stderr


def scoring_state(agent: Agent) -> tuple[bool | None, bool | None]:
    """(flag scoring as the agent holds it, the engine switched off) from `edge-agent status`."""
    st = agent.status()
    doc = (st.get("control") or {}).get("flags") or {}
    flag = (doc.get("flags") or {}).get("scoring")
    return flag, (st.get("scoring") or {}).get("switched_off")


def test_a_chain_wide_kill_switch_stops_scoring_and_survives_a_restart_in_an_outage(rig):
    wait_for(lambda: scoring_state(rig.agent)[1] is False, 60, "the model scoring")
    flags(rig, "scoring=off", "--chain")
    wait_for(lambda: scoring_state(rig.agent) == (False, True), 60,
             "the agent to apply scoring=off")
    # The hub knows the store applied it.
    shown = json.loads(hub_cli("store", STORE, "--db", rig.db, "--json").stdout)
    wait_for(lambda: json.loads(hub_cli("store", STORE, "--db", rig.db, "--json").stdout)
             ["flags"]["applied_version"] == shown["flags"]["version"], 30, "applied at the hub")
    assert shown["flags"]["flags"]["scoring"] is False
    text = hub_cli("store", STORE, "--db", rig.db).stdout
    assert "scoring=OFF" in text
    # Outage: the broker goes; the agent restarts without it and still does not score.
    rig.broker.stop()
    assert rig.agent.stop() == 0
    restarted = time.time()
    rig.agent.start()
    wait_for(lambda: '"flags restored"' in rig.agent.log(), 30, "the flags restored at start")
    # A cycle of the new process (its own last_cycle), not the state the old one saved.
    wait_for(lambda: ((rig.agent.status()["scoring"] or {}).get("last_cycle") or 0) > restarted,
             30, "a scoring cycle after the restart")
    assert scoring_state(rig.agent) == (False, True)
    text = rig.agent.status_text()
    assert "SWITCHED OFF" in text and "scoring=OFF" in text
    # The broker returns: the retained document (same version) changes nothing; switching the
    # flag back on reaches the agent.
    rig.broker.start()
    flags(rig, "scoring=on", "--chain")
    wait_for(lambda: scoring_state(rig.agent) == (True, False), 60, "scoring back on")


def test_an_older_flags_document_is_refused_and_remote_actions_off_stops_commands(rig):
    flags(rig, "tickets=off", "--store", STORE)
    wait_for(lambda: (rig.agent.status()["control"]["flags"] or {}).get("version") == 1, 60,
             "flags v1 applied")
    db = open_store(rig.db)
    with db.read() as tx:
        tx.execute("SELECT payload FROM flag_docs WHERE store = ?", (STORE,))
        v1 = tx.fetchone()[0]
    db.close()
    flags(rig, "remote_actions=off", "--region", REGION)
    wait_for(lambda: rig.agent.status()["control"]["flags"]["version"] == 2, 60, "flags v2")
    raw = Raw(rig.broker, "replayer")
    raw.send(f"edge/v1/{REGION}/{STORE}/flags", v1.encode())  # an old document, validly signed
    wait_for(lambda: agent_rejects(rig.tmp / "state").get("stale_flags"), 30,
             "the old document refused")
    assert rig.agent.status()["control"]["flags"]["flags"]["remote_actions"] is False
    # With remote actions off, a valid command is refused by policy and not run.
    r = hub_cli("cmd", STORE, "register", "repoll", "--db", rig.db, "--dir",
                str(rig.tmp / "keys"), "--json", "--wait", "60")
    row = json.loads(r.stdout)
    assert row["status"] == "rejected" and row["reason"] == "remote_actions_off", row
    raw.close()
    # A flags document signed by an unknown key is refused too.
    other = KeyRing.init(rig.tmp / "other")
    forged = other.sign_document({"v": 1, "type": "flags", "store": STORE, "region": REGION,
                                  "version": 99, "issued": "2026-01-01T00:00:00.000Z",
                                  "flags": {"scoring": False}})
    raw = Raw(rig.broker, "forger")
    raw.send(f"edge/v1/{REGION}/{STORE}/flags", forged)
    raw.close()
    wait_for(lambda: agent_rejects(rig.tmp / "state").get("unknown_key"), 30, "forged refused")
    assert rig.agent.status()["control"]["flags"]["version"] == 2
