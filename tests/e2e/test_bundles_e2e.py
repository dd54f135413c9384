"""Model and config bundles end to end: a real Mosquitto, a real hub and a real agent process.
A model bundle is verified, shadow-scored and swapped in; a lower version is refused unless a
signed rollback names it; a config bundle replaces the file and reloads; an invalid one is
refused and the old file kept; an agent offline when its desired state changed catches up."""

from __future__ import annotations

import json
import shutil

import pytest

from brokers import Mosquitto
from controlkit import Agent, agent_toml, hub_cli, wait_for
from edge_agent.health.scorer import packaged_model
from hub.keys import KeyRing
from hub.app import open_store
from hubkit import HubProcess

STORE = "store-0001"


@pytest.fixture
def rig(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_HUB_KEYS", str(tmp_path / "keys"))  # the hub worker signs too
    broker = Mosquitto(tmp_path / "broker").start()
    ring = KeyRing.init(tmp_path / "keys")
    db = str(tmp_path / "hub.db")
    hub = HubProcess(broker, db, "hub-bundle-test", log_path=tmp_path / "hub.log").start()
    config = tmp_path / "agent.toml"
    config.write_text(agent_toml(tmp_path / "state", broker, ring,
                                 scoring="enabled = true\ninterval = 0.5", host_interval=0.2))
    agent = Agent(config, tmp_path / "agent.log").start()
    rig = type("Rig", (), dict(tmp=tmp_path, broker=broker, ring=ring, db=db, hub=hub,
                               agent=agent, config=config))()
    try:
        hub.wait_connected()
        wait_for(lambda: _report_table(db) is not None and _known(db), 60, "the store")
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


def _report_table(db_url: str):
    db = open_store(db_url)
    try:
        with db.read() as tx:
            tx.execute("SELECT COUNT(*) FROM bundle_reports")
            return tx.fetchone()
    except Exception:  # noqa: BLE001 - the hub worker has not created it yet
        return None
    finally:
        db.close()


def report(db_url: str, kind: str) -> dict | None:
    db = open_store(db_url)
    try:
        with db.read() as tx:
            tx.execute("SELECT version, status, reason, at FROM bundle_reports WHERE store = ?"
                       " AND kind = ?", (STORE, kind))
            row = tx.fetchone()
            return dict(zip(("version", "status", "reason", "at"), row)) if row else None
    finally:
        db.close()


def model_files(folder, version: str):
    """A copy of the packaged model whose card names another version (same weights)."""
    folder.mkdir(parents=True, exist_ok=True)
    src = packaged_model()
    onnx = folder / "device_health.onnx"
    shutil.copy(src, onnx)
    card = json.loads(src.with_name("device_health.card.json").read_text())
    card["version"] = version
    (folder / "device_health.card.json").write_text(json.dumps(card))
    return onnx


def keys(rig) -> list[str]:
    return ["--db", rig.db, "--dir", str(rig.tmp / "keys")]


def create(rig, *args: str) -> dict:
    r = hub_cli("bundle", "create", *args, *keys(rig), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def assign(rig, sha: str, *extra: str) -> None:
    r = hub_cli("bundle", "assign", STORE, sha[:16], *extra, *keys(rig))
    assert r.returncode == 0, r.stderr


def scoring_model(agent) -> str | None:
    return (agent.status().get("scoring") or {}).get("model")


def until_report(rig, kind, status, version=None, after=0.0):
    def check():
        r = report(rig.db, kind)
        return r and r["at"] > after and r["status"] == status and \
            (version is None or r["version"] == version) and r
    return wait_for(check, 60, f"{kind} bundle {status}")


def test_model_bundles_swap_refuse_a_downgrade_and_roll_back_when_signed(rig):
    wait_for(lambda: scoring_model(rig.agent), 60, "the packaged model scoring")
    v1 = create(rig, "--model", str(model_files(rig.tmp / "m1", "test-model-1")))
    v2 = create(rig, "--model", str(model_files(rig.tmp / "m2", "test-model-2")))
    assert (v1["version"], v2["version"]) == (1, 2)
    assign(rig, v1["sha256"])
    until_report(rig, "model", "applied", 1)
    wait_for(lambda: scoring_model(rig.agent) == "test-model-1", 60, "model 1 scoring")
    assign(rig, v2["sha256"])
    r2 = until_report(rig, "model", "applied", 2)
    wait_for(lambda: scoring_model(rig.agent) == "test-model-2", 60, "model 2 scoring")
    # Back to v1 without a signed rollback: refused, v2 keeps scoring.
    assign(rig, v1["sha256"])
    refused = until_report(rig, "model", "rejected", after=r2["at"])
    assert refused["reason"] == "downgrade"
    assert scoring_model(rig.agent) == "test-model-2"
    # With one: applied.
    assign(rig, v1["sha256"], "--rollback")
    until_report(rig, "model", "applied", 1, after=refused["at"])
    wait_for(lambda: scoring_model(rig.agent) == "test-model-1", 60, "rolled back to model 1")
    control = rig.agent.status()["control"]
    assert control["bundles"]["model"]["version"] == 1
    assert control["bundles"]["model"]["last_good"]["version"] == 2
    # The model survives a restart: the agent scores the applied bundle, not the packaged one.
    rig.agent.stop()
    rig.agent.start()
    wait_for(lambda: '"agent started"' in rig.agent.log().rsplit('"agent stopped"', 1)[-1],
             30, "the restart")
    wait_for(lambda: rig.agent.status()["agent"]["running"], 30, "running")
    assert scoring_model(rig.agent) == "test-model-1"


def test_config_bundles_apply_refuse_a_bad_one_and_catch_up_after_an_outage(rig):
    base = rig.config.read_text()
    good = rig.tmp / "good.toml"
    good.write_text(base + '\n[[devices]]\nid = "till-2"\nkind = "host"\ninterval = 0.5\n')
    b1 = create(rig, "--config", str(good))
    assign(rig, b1["sha256"])
    r1 = until_report(rig, "config", "applied", 1)
    assert "till-2" in rig.config.read_text()
    wait_for(lambda: any(d["id"] == "till-2" for d in rig.agent.status()["devices"]), 30,
             "the new device")
    # A config that would move the store elsewhere is refused; the file stays.
    bad = rig.tmp / "bad.toml"
    bad.write_text(base.replace('store = "store-0001"', 'store = "store-9999"'))
    b2 = create(rig, "--config", str(bad))
    assign(rig, b2["sha256"])
    failed = until_report(rig, "config", "failed", 2, after=r1["at"])
    assert failed["reason"] == "invalid_config"
    assert "till-2" in rig.config.read_text() and "store-9999" not in rig.config.read_text()
    # Offline when its desired state changes: it catches up when it returns.
    assert rig.agent.stop() == 0
    third = rig.tmp / "third.toml"
    third.write_text(good.read_text() + '\n[[devices]]\nid = "till-3"\nkind = "host"\n')
    b3 = create(rig, "--config", str(third))
    assign(rig, b3["sha256"])
    rig.agent.start()
    until_report(rig, "config", "applied", 3, after=failed["at"])
    assert "till-3" in rig.config.read_text()
    assert (rig.tmp / "agent.toml.last-good").read_text() == good.read_text()


def _hub_desired_version(db_url: str) -> int | None:
    db = open_store(db_url)
    try:
        with db.read() as tx:
            tx.execute("SELECT version FROM desired WHERE store = ?", (STORE,))
            row = tx.fetchone()
            return row[0] if row else None
    finally:
        db.close()


def test_an_agent_killed_between_the_desired_state_and_the_bundle_applies_it_after_restart(rig):
    """The agent SIGKILLs itself (EDGE_AGENT_TEST_KILL=bundle-wanted) once it has recorded the
    desired state naming a config bundle, before acknowledging it or asking for the content.
    Its status shows the bundle wanted and not applied. Restarted, with no new desired state
    (the retained one is the same version), it fetches the content and applies it."""
    import signal

    assert rig.agent.stop() == 0
    rig.agent.start(EDGE_AGENT_TEST_KILL="bundle-wanted")
    wait_for(lambda: '"sync connected"' in rig.agent.log().rsplit('"agent started"', 1)[-1],
             60, "the agent (with the fault armed) to connect")
    good = rig.tmp / "good.toml"
    good.write_text(rig.config.read_text()
                    + '\n[[devices]]\nid = "till-2"\nkind = "host"\ninterval = 0.5\n')
    b1 = create(rig, "--config", str(good))
    assign(rig, b1["sha256"])
    assert rig.agent.proc.wait(60) == -signal.SIGKILL
    assert "test fault: killing the agent" in rig.agent.log().rsplit('"agent started"', 1)[-1]
    control = rig.agent.status()["control"]
    assert control["bundles"]["config"] is None
    wanted = control["wanted"]["config"]
    assert (wanted["sha256"], wanted["version"]) == (b1["sha256"], 1)
    desired_version = control["desired_version"]
    assert desired_version == wanted["desired_version"] == _hub_desired_version(rig.db)
    assert "waiting for its content" in rig.agent.status_text()
    assert "till-2" not in rig.config.read_text()
    assert report(rig.db, "config") is None
    rig.agent.start()
    until_report(rig, "config", "applied", 1)
    assert "till-2" in rig.config.read_text()
    control = rig.agent.status()["control"]
    assert control["wanted"] == {} and control["bundles"]["config"]["sha256"] == b1["sha256"]
    # Applied without a new desired state: the hub's and the agent's versions are the same.
    assert control["desired_version"] == desired_version == _hub_desired_version(rig.db)
    since = rig.agent.log().rsplit('"agent started"', 1)[-1]
    assert "fetching it again" in since
