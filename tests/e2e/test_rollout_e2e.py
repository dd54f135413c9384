"""Rollouts with real agents: two stores on a real Mosquitto, a real hub worker running the
gates. A deliberately bad model (its card's threshold near zero: every scored device is
predicted to fail) is aborted at the pilot gate and rolled back by the hub alone; a good one
goes through every stage, and a pilot store that was offline catches up when it returns.

The test decides when a soak ends (it shortens the rollout's soak once the figures it needs
are at the hub), so no verdict depends on how fast the machine is."""

from __future__ import annotations

import json

import pytest

from brokers import Mosquitto
from controlkit import Agent, agent_toml, hub_cli, wait_for
from hub.keys import KeyRing
from hub.app import open_store
from hubkit import HubProcess
from test_bundles_e2e import model_files

STORES = ("store-0001", "store-0002")
HOSTS = '\n[[devices]]\nid = "till-1"\nkind = "host"\ninterval = 0.2\n'


@pytest.fixture
def rig(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_HUB_KEYS", str(tmp_path / "keys"))
    broker = Mosquitto(tmp_path / "broker").start()
    ring = KeyRing.init(tmp_path / "keys")
    db = str(tmp_path / "hub.db")
    hub = HubProcess(broker, db, "hub-rollout-test", log_path=tmp_path / "hub.log").start()
    agents = {}
    for store in STORES:
        config = tmp_path / f"{store}.toml"
        config.write_text(agent_toml(tmp_path / f"state-{store}", broker, ring, store=store,
                                     scoring="enabled = true\ninterval = 0.3",
                                     host_interval=0.2) + HOSTS)
        agents[store] = Agent(config, tmp_path / f"{store}.log").start()
    rig = type("Rig", (), dict(tmp=tmp_path, broker=broker, ring=ring, db=db, hub=hub,
                               agents=agents))()
    try:
        hub.wait_connected()
        wait_for(lambda: len(sql(db, "SELECT store FROM stores")) == 2, 60, "both stores")
        yield rig
    finally:
        for a in agents.values():
            a.stop()
        hub.terminate()
        broker.stop()


def sql(db_url: str, query: str, params: tuple = ()) -> list[tuple]:
    db = open_store(db_url)
    try:
        with db.read() as tx:
            try:
                tx.execute(query, params)
            except Exception:  # noqa: BLE001 - a table the hub worker has not created yet
                return []
            return tx.fetchall()
    finally:
        db.close()


def end_soak(db_url: str, rid: str) -> None:
    """The test ends the soak now (the hub worker evaluates the gates on its next round)."""
    db = open_store(db_url)
    try:
        with db.transaction() as tx:
            tx.execute("UPDATE rollouts SET soak_s = 0 WHERE id = ?", (rid,))
    finally:
        db.close()


def cli(rig, *args: str) -> dict:
    r = hub_cli(*args, "--db", rig.db, "--dir", str(rig.tmp / "keys"), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def applied(rig, store: str, version: int) -> bool:
    return bool(sql(rig.db, "SELECT 1 FROM bundle_reports WHERE store = ? AND kind = 'model'"
                            " AND status = 'applied' AND version = ?", (store, version)))


def state(rig, rid: str) -> dict:
    r = hub_cli("rollout", "status", rid, "--db", rig.db, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def baseline(rig) -> dict:
    v1 = cli(rig, "bundle", "create", "--model",
             str(model_files(rig.tmp / "m1", "rollout-model-1")))
    for store in STORES:
        r = hub_cli("bundle", "assign", store, v1["sha256"], "--db", rig.db, "--dir",
                    str(rig.tmp / "keys"))
        assert r.returncode == 0, r.stderr
    for store in STORES:
        wait_for(lambda: applied(rig, store, 1), 60, f"v1 on {store}")
    return v1


def test_a_bad_model_is_aborted_at_the_pilot_gate_and_rolled_back_by_itself(rig):
    v1 = baseline(rig)
    folder = rig.tmp / "bad"
    onnx = model_files(folder, "rollout-model-bad")
    card = folder / "device_health.card.json"
    doc = json.loads(card.read_text())
    doc.update(threshold=0.001, watch_threshold=0.0005)  # everything "predicted to fail"
    doc.pop("class_thresholds", None)  # the single threshold then holds for every kind
    card.write_text(json.dumps(doc))
    bad = cli(rig, "bundle", "create", "--model", str(onnx))
    r = cli(rig, "rollout", "start", bad["sha256"], "--stages",
            "pilot=store-0001; chain", "--soak", "1h", "--gate", "min_device_days=0",
            "--gate", "min_excess_alerts=2")
    wait_for(lambda: applied(rig, "store-0001", bad["version"]), 60, "the bad model on the pilot")
    wait_for(lambda: len(sql(rig.db, "SELECT 1 FROM alerts WHERE store = 'store-0001' AND"
                                     " what = 'predicted_failure'")) >= 2, 60,
             "the pilot's predicted_failure alerts at the hub")
    end_soak(rig.db, r["id"])
    final = wait_for(lambda: (s := state(rig, r["id"]))["state"] == "aborted" and s, 60,
                     "the automatic abort")
    assert "alert_rate" in final["reason"] and "pilot" in final["reason"]
    # Rolled back by the hub: the pilot runs v1 again; store-0002 never got the bad model.
    wait_for(lambda: sql(rig.db, "SELECT version FROM bundle_reports WHERE store = 'store-0001'"
                                 " AND kind = 'model' AND status = 'applied'") == [(1,)], 60,
             "the pilot back on v1")
    wait_for(lambda: rig.agents["store-0001"].status()["scoring"]["model"]
             == "rollout-model-1", 60, "the pilot scoring with v1 again")
    assert rig.agents["store-0001"].status()["control"]["bundles"]["model"]["rollback"] is True
    assert not applied(rig, "store-0002", bad["version"])
    assert v1["version"] == 1


def test_a_good_model_goes_through_every_stage_and_an_offline_pilot_catches_up(rig):
    baseline(rig)
    good = cli(rig, "bundle", "create", "--model",
               str(model_files(rig.tmp / "m2", "rollout-model-2")))
    assert rig.agents["store-0002"].stop() == 0  # offline for the whole pilot
    r = cli(rig, "rollout", "start", good["sha256"], "--stages",
            "pilot=store-0001,store-0002; chain", "--soak", "1h", "--gate",
            "min_device_days=0", "--gate", "max_restarts_per_store=10")
    wait_for(lambda: applied(rig, "store-0001", good["version"]), 60, "v2 on the online pilot")
    end_soak(rig.db, r["id"])
    final = wait_for(lambda: (s := state(rig, r["id"]))["state"] == "done" and s, 60,
                     "the rollout through every stage")
    assert final["reason"] is None
    rig.agents["store-0002"].start()
    wait_for(lambda: applied(rig, "store-0002", good["version"]), 60,
             "the offline pilot catching up")
    # Its status shows the model after its next scoring cycle has saved the engine's state.
    wait_for(lambda: rig.agents["store-0002"].status()["scoring"]["model"] == "rollout-model-2",
             60, "the offline pilot scoring with the new model")
