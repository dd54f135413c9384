"""`edge-hub cmd|flags|bundle list|rollout` through a real API server (`edge-hub api`, uvicorn
on a free port) on SQLite and PostgreSQL: the token's user is the actor and the API decides
what its role and scope allow (403 is one line and exit 1); `--json` prints the same through
the API as on `--db`; a mistake in the arguments is one line and exit 2.

The CLI runs in this process (apiproc.hub_here: hub.cli.main, the same code as the
`edge-hub` command, without an interpreter start per call); one call goes through a real
`python -m hub` process to show the command itself. One API server per database serves the
whole module, so each test works on its own stores or ids."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from apikit import hub_with_fleet
from apiproc import ApiProcess, as_user, audit_trail, cli, hub_here, ok_json, refused
from hub.domains.access import local_actor
from hub.domains.rollout import rules as rollout
from hub.keys import KeyRing


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request, tmp_path_factory):
    """The apikit fleet (s1, s2 north; s3 south; one user per role), a key ring the API server
    signs with, one model bundle, and `edge-hub api` over them."""
    from hubkit import create_pg_database, drop_pg_database, pg_reachable

    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "sqlite":
        url = str(tmp / "hub.db")
    elif not pg_reachable():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (trust auth, user postgres)")
    else:
        url = create_pg_database()
    db, tokens = hub_with_fleet(url)
    ring = KeyRing.init(tmp / "keys")
    with db.transaction() as tx:
        bundle = rollout.create_bundle(tx, lambda: 1000.0, local_actor("ann"), kind="model",
                                       name="device_health", ring=ring,
                                       files={"device_health.onnx": b"m",
                                              "device_health.card.json": b'{"version": "x"}'})
    db.close()
    api = ApiProcess(url, tmp / "api", f'[keys]\ndirectory = "{tmp / "keys"}"\n').start()
    try:
        yield SimpleNamespace(db=url, url=api.url, tokens=tokens, keys=str(tmp / "keys"),
                              bundle=bundle["sha256"])
    finally:
        code = api.stop()
        if request.param == "postgresql":
            drop_pg_database(url)
    assert code == 0, api.log.read_text()


def on_db(served, *args: str):
    """`edge-hub ARGS --db` on the hub host, as a local actor."""
    return hub_here(*args, "--db", served.db, EDGE_HUB_ACTOR="hostadmin")


def test_an_operator_commands_a_store_through_the_api_and_reads_the_command_back(served):
    row = ok_json(as_user(served, "ops", "cmd", "s1", "p1", "repoll", "--json"))
    assert row["status"] == "queued" and row["actor"] == "ops" and row["seq"] >= 1
    assert row["store"] == "s1" and row["region"] == "north" and row["device"] == "p1"
    # Audited as the API user, from the API.
    assert [(a, who) for a, who, _ in audit_trail(served.db, f"command:{row['id']}")] == \
        [("commands.issue", "ops")]
    assert audit_trail(served.db, f"command:{row['id']}")[0][2].startswith("api:")
    # For people: one line with the status, who issued it; `edge-hub --hub URL cmd ...` too.
    text = hub_here("--hub", served.url, "cmd", "status", row["id"],
                    EDGE_HUB_TOKEN=served.tokens["north-rm"])
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"command {row['id']}: repoll on s1/p1 (seq {row['seq']}): "
                                  "queued")
    assert "issued by ops" in text.stdout and "expires in" in text.stdout
    # --json is the same through the API (a regional manager of s1's region) as on --db.
    shown = ok_json(as_user(served, "north-rm", "cmd", "status", row["id"], "--json"))
    assert shown == ok_json(on_db(served, "cmd", "status", row["id"], "--json"))
    assert shown["id"] == row["id"] and shown["status"] == "queued"
    # Outside its scope a store manager gets 403, one line, exit 1; through the real command
    # (a `python -m hub` process) as well.
    refused(as_user(served, "s3-sm", "cmd", "status", row["id"]), 1, "forbidden (403)")
    r = cli("cmd", "status", row["id"], url=served.url, token=served.tokens["s3-sm"])
    refused(r, 1, "forbidden (403)")
    # --wait asks the API until the wait is over: with no hub worker here it stays queued.
    waited = ok_json(as_user(served, "ops", "cmd", "s1", "p1", "repoll", "--wait", "0.3",
                             "--json"))
    assert waited["status"] == "queued" and waited["seq"] > row["seq"]


def test_who_may_not_command_a_store_gets_403_in_one_line_and_nothing_is_stored(served):
    before = len(ok_json(on_db(served, "cmd", "list", "--json", "--limit", "1000")))
    for who, store, device in (("audit", "s1", "p1"),       # an auditor reads, never acts
                               ("north-rm", "s3", "x1"),    # another region's store
                               ("north-rm", "s1", "p1"),    # its own region: no devices.act
                               ("s3-sm", "s3", "x1")):      # its own store: no devices.act
        r = as_user(served, who, "cmd", store, device, "repoll")
        refused(r, 1, "forbidden (403)")
        assert f"{who} (" in r.stderr and "may not devices.act" in r.stderr
    assert len(ok_json(on_db(served, "cmd", "list", "--json", "--limit", "1000"))) == before


def test_cmd_list_through_the_api_is_scoped_and_the_same_as_on_the_database(served):
    south = ok_json(as_user(served, "admin", "cmd", "s3", "x1", "diagnostics", "--json"))
    north = ok_json(as_user(served, "ops", "cmd", "s2", "diagnostics", "--json"))
    everything = ok_json(as_user(served, "admin", "cmd", "list", "--json", "--limit", "1000"))
    assert everything == ok_json(on_db(served, "cmd", "list", "--json", "--limit", "1000"))
    assert {south["id"], north["id"]} <= {c["id"] for c in everything}
    mine = ok_json(as_user(served, "north-rm", "cmd", "list", "--json", "--limit", "1000"))
    assert north["id"] in {c["id"] for c in mine} and {c["region"] for c in mine} == {"north"}
    assert ok_json(as_user(served, "north-rm", "cmd", "list", "--store", "s3", "--json")) == []
    only = ok_json(as_user(served, "s3-sm", "cmd", "list", "--json"))
    assert south["id"] in {c["id"] for c in only} and {c["store"] for c in only} == {"s3"}
    table = as_user(served, "ops", "cmd", "list", "--store", "s2", "--limit", "5")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:4] == \
        ["ID", "STORE", "DEVICE", "ACTION"]
    assert north["id"] in table.stdout


def test_a_high_impact_command_over_the_api_waits_for_someone_else(served):
    held = ok_json(as_user(served, "ops", "cmd", "s1", "restart_agent", "--json"))
    assert held["status"] == "awaiting_approval" and isinstance(held["approval"], int)
    text = as_user(served, "ops", "cmd", "status", held["id"])
    assert "awaiting_approval" in text.stdout and "someone else" in text.stdout
    refused(as_user(served, "ops", "cmd", "approve", held["id"]), 1, "cannot approve")
    done = ok_json(as_user(served, "admin", "cmd", "approve", held["id"], "--json"))
    assert done["status"] == "queued" and done["approved_by"] == "admin" and done["seq"] >= 1


def test_command_mistakes_over_the_api_are_one_line(served):
    ops = ("ops",)
    refused(as_user(served, *ops, "cmd", "s1", "p1", "format_disk"), 2, "unknown_action")
    refused(as_user(served, *ops, "cmd", "s1", "p1", "test_print", "--arg", "text=$(reboot)"),
            2, "bad_args")
    refused(as_user(served, *ops, "cmd", "s1", "diagnostics", "--region", "south"), 2,
            "is in region north")
    refused(as_user(served, *ops, "cmd", "s9", "diagnostics"), 1, "has not reported")
    refused(as_user(served, *ops, "cmd", "status", "nope"), 2, "expected a UUID")
    refused(as_user(served, *ops, "cmd", "status", "0190c0de-7a1b-4c2d-9e3f-a1b2c3d4e5f6"), 1,
            "no command")
    refused(as_user(served, *ops, "cmd", "s1", "p1", "repoll", "--expires", "soon"), 2,
            "--expires")
    refused(as_user(served, *ops, "cmd", "list", "--limit", "5000"), 2, "--limit")
    # A store the hub has not seen yet: its region given, the command waits for it.
    early = ok_json(as_user(served, *ops, "cmd", "s9", "diagnostics", "--region", "north",
                            "--json"))
    assert early["status"] == "queued" and early["region"] == "north"


def test_flags_through_the_api_are_audited_as_the_api_user(served):
    out = ok_json(as_user(served, "ops", "flags", "set", "scoring=off", "--chain", "--json"))
    assert out["name"] == "scoring" and out["value"] is False and out["scope"] == "chain"
    assert {"s1", "s2", "s3"} <= set(out["changed"])
    (action, who, source), = audit_trail(served.db, "flag:scoring")
    assert (action, who) == ("flags.set", "ops") and source.startswith("api:")
    shown = ok_json(as_user(served, "audit", "flags", "show", "--json"))
    assert shown == ok_json(on_db(served, "flags", "show", "--json"))
    assert [(s["scope"], s["name"], s["value"], s["actor"]) for s in shown["settings"]] == \
        [("chain", "scoring", False, "ops")]
    text = as_user(served, "admin", "flags", "show")
    assert text.returncode == 0 and "OFF" in text.stdout and "ops" in text.stdout
    line = as_user(served, "ops", "flags", "set", "scoring=on", "--chain")
    assert line.returncode == 0 and line.stdout.startswith("scoring on for chain: ")
    refused(as_user(served, "audit", "flags", "set", "scoring=off", "--chain"), 1,
            "forbidden (403)")
    refused(as_user(served, "north-rm", "flags", "set", "tickets=off", "--region", "north"), 1,
            "forbidden (403)")
    refused(as_user(served, "ops", "flags", "set", "self_destruct=off", "--chain"), 2,
            "unknown flag")
    refused(as_user(served, "ops", "flags", "set", "scoring=maybe", "--chain"), 2,
            "NAME=on|off")
    refused(as_user(served, "ops", "flags", "set", "scoring=off", "--store", "s404"), 1,
            "has not reported")
    # On the database the same change is the local actor's, from this host.
    local = ok_json(on_db(served, "flags", "set", "tickets=off", "--store", "s3", "--json",
                          "--dir", served.keys))
    assert local["changed"] == ["s3"]
    assert [(a, who) for a, who, _ in audit_trail(served.db, "flag:tickets")] == \
        [("flags.set", "hostadmin")]


def test_rollouts_through_the_api(served):
    bundles = ok_json(as_user(served, "ops", "bundle", "list", "--json"))
    assert bundles == ok_json(on_db(served, "bundle", "list", "--json"))
    assert [b["sha256"] for b in bundles] == [served.bundle]
    refused(as_user(served, "audit", "bundle", "list"), 1, "forbidden (403)")
    started = ok_json(as_user(served, "ops", "rollout", "start", served.bundle[:12], "--stages",
                              "pilot=s1; rest=chain", "--soak", "1h", "--gate",
                              "max_alert_ratio=2", "--json"))
    rid = started["id"]
    assert started["state"] == "running" and started["actor"] == "ops"
    assert started["gates"]["max_alert_ratio"] == 2 and started["soak_s"] == 3600
    assert [s["store"] for s in started["stores"]] == ["s1"]
    # For people: the state, the stages and a row per store.
    text = as_user(served, "ops", "rollout", "status", rid)
    assert text.stdout.startswith(f"rollout {rid}: model v1 running at stage pilot (1/2)")
    assert "pilot (1 store(s)) -> rest" in text.stdout and "started by ops" in text.stdout
    assert "STORE" in text.stdout and "s1" in text.stdout
    listed = as_user(served, "admin", "rollout", "status")
    assert listed.returncode == 0 and rid in listed.stdout and "running" in listed.stdout
    assert ok_json(as_user(served, "admin", "rollout", "status", rid, "--json")) == \
        ok_json(on_db(served, "rollout", "status", rid, "--json"))
    assert ok_json(as_user(served, "admin", "rollout", "status", "--json")) == \
        ok_json(on_db(served, "rollout", "status", "--json"))
    # Another user's role decides: an auditor and a regional manager may not drive it.
    refused(as_user(served, "audit", "rollout", "pause", rid), 1, "forbidden (403)")
    refused(as_user(served, "north-rm", "rollout", "abort", rid), 1, "forbidden (403)")
    refused(as_user(served, "admin", "rollout", "start", served.bundle, "--stages", "chain"), 1,
            "still going")
    for action, state in (("pause", "paused"), ("resume", "running"), ("abort", "aborted")):
        r = ok_json(as_user(served, "ops", "rollout", action, rid, "--json"))
        assert r["state"] == state, (action, r)
    refused(as_user(served, "ops", "rollout", "pause", rid), 1, "cannot pause")
    assert {("rollouts.start", "ops"), ("rollouts.pause", "ops"), ("rollouts.resume", "ops"),
            ("rollouts.abort", "ops")} <= {(a, w) for a, w, _ in audit_trail(served.db,
                                                                           f"rollout:{rid}")}
    refused(as_user(served, "ops", "rollout", "start", "dead", "--stages", "chain"), 2,
            "8 to 64 hexadecimal")
    refused(as_user(served, "ops", "rollout", "start", served.bundle, "--stages", "pilot=s99"),
            2, "unknown store")
    refused(as_user(served, "ops", "rollout", "start", served.bundle, "--stages", "chain",
                    "--gate", "max_alert_ratio=-1"), 2, "--gate")
    refused(as_user(served, "ops", "rollout", "resume", "x"), 2, "rollout id")
