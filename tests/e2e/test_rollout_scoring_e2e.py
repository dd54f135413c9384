"""The scoring_errors gate with real agents: two stores on a real Mosquitto, a real hub worker
running the gates, a simulated ESC/POS printer at the pilot store.

The bad model loads, passes its card check and its shadow run (no printer had overheated when
it was applied: its scores were finite), and then returns NaN for any printer that overheated
in the last day. Once the pilot's printer overheats, the pilot's agent leaves that printer to
the rules every cycle, counts each miss as a scoring error and reports it in scoring_errors
events; the hub's gate stops the rollout at the pilot on that figure (not on apply failures,
which there are none of) and rolls the pilot back to v1 with no person involved.

The test decides when the soak ends (it shortens the rollout's soak once the pilot's errors are
at the hub), so no verdict depends on how fast the machine is."""

from __future__ import annotations

import json

import pytest

import badmodels
from brokers import Mosquitto
from controlkit import Agent, SimPrinter, agent_toml, wait_for
from hub.keys import KeyRing
from hubkit import HubProcess
from test_rollout_e2e import STORES, applied, baseline, cli, end_soak, sql, state

PILOT = "store-0001"


@pytest.fixture
def rig(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_HUB_KEYS", str(tmp_path / "keys"))
    broker = Mosquitto(tmp_path / "broker").start()
    ring = KeyRing.init(tmp_path / "keys")
    db = str(tmp_path / "hub.db")
    printer = SimPrinter()
    hub = HubProcess(broker, db, "hub-rollout-scoring-test",
                     log_path=tmp_path / "hub.log").start()
    agents = {}
    for store in STORES:
        config = tmp_path / f"{store}.toml"
        config.write_text(agent_toml(
            tmp_path / f"state-{store}", broker, ring, store=store,
            printer=printer if store == PILOT else None,
            scoring="enabled = true\ninterval = 0.3\nerror_report_every = 0",
            host_interval=0.2))
        agents[store] = Agent(config, tmp_path / f"{store}.log").start()
    rig = type("Rig", (), dict(tmp=tmp_path, broker=broker, ring=ring, db=db, hub=hub,
                               agents=agents, printer=printer))()
    try:
        hub.wait_connected()
        wait_for(lambda: len(sql(db, "SELECT store FROM stores")) == 2, 60, "both stores")
        yield rig
    finally:
        for a in agents.values():
            a.stop()
        hub.terminate()
        printer.close()
        broker.stop()


def pilot_nans(rig) -> int:
    """The pilot's NaN scores the hub has heard of (other reasons, such as a worker that a
    very busy machine made time out, are not this model's doing and not counted here)."""
    rows = sql(rig.db, "SELECT errors FROM scoring_errors WHERE store = ?", (PILOT,))
    return sum(json.loads(e).get("non_finite", 0) for (e,) in rows)


def test_a_model_that_loads_but_fails_at_scoring_is_stopped_by_the_scoring_errors_gate(rig):
    baseline(rig)
    wait_for(lambda: sql(rig.db, "SELECT 1 FROM devices WHERE store = ? AND device ="
                                 " 'receipt-1' AND decision IS NOT NULL", (PILOT,)), 60,
             "the pilot's printer scored by v1")
    bad = cli(rig, "bundle", "create", "--model",
              str(badmodels.nan_above(rig.tmp / "bad", "rollout-model-nan",
                                      "overheats_per_day", 0.0)))
    r = cli(rig, "rollout", "start", bad["sha256"], "--stages", f"pilot={PILOT}; chain",
            "--soak", "1h", "--gate", "min_excess_scoring_errors=3")
    # The shadow run passed (finite scores on every device): the bundle applied.
    wait_for(lambda: applied(rig, PILOT, bad["version"]), 60, "the bad model on the pilot")
    assert pilot_nans(rig) == 0
    rig.printer.sim.command("overheat on")  # an input the shadow run never saw
    wait_for(lambda: pilot_nans(rig) >= 3, 60, "the pilot's NaN scores at the hub")
    end_soak(rig.db, r["id"])
    final = wait_for(lambda: (s := state(rig, r["id"]))["state"] == "aborted" and s, 60,
                     "the automatic abort")
    assert final["reason"].startswith("gate scoring_errors failed at stage pilot")
    gate = final["last_gate"]
    assert gate["gate"] == "scoring_errors" and gate["apply_failures"] == 0
    assert gate["scoring_errors"]["reasons"]["non_finite"] >= 3
    assert gate["scoring_errors"]["updated"] >= 3 and gate["scoring_errors"]["limit"] == 5.0
    assert not any(s["failed"] for s in final["stores"])  # no store failed to apply it
    # Rolled back by the hub alone: the pilot scores with v1 again; store-0002 never had it.
    wait_for(lambda: sql(rig.db, "SELECT version FROM bundle_reports WHERE store = ? AND"
                                 " kind = 'model' AND status = 'applied'", (PILOT,)) == [(1,)],
             60, "the pilot back on v1")
    wait_for(lambda: rig.agents[PILOT].status()["scoring"]["model"] == "rollout-model-1", 60,
             "the pilot scoring with v1 again")
    assert not applied(rig, "store-0002", bad["version"])
    # The agent's own account: the printer's misses, by reason, in its status.
    assert rig.agents[PILOT].status()["scoring"]["errors"]["non_finite"] >= 3
