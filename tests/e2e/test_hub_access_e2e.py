"""Issue 12's "Must show", end to end: a real hub worker (edge-hub serve) and a separate API
server (edge-hub api) on one PostgreSQL database, a real Mosquitto, stores publishing in two
regions. Through the CLI and the API, a regional manager sees only its region's stores and
alerts, gets 403 on another region's store and on acknowledging there; an auditor reads the
audit log and cannot acknowledge; a disabled token gets 401; the audit log verifies."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from apiproc import ApiProcess, cli
from conftest import run_cli
from hubkit import (HubProcess, Publisher, alert_body, birth_body, create_pg_database,
                    drop_pg_database, envelope, pg_reachable)
from wait import PATIENCE_S, wait_until

STORES = {"n1": "north", "n2": "north", "s1": "south"}


def api(url: str, token: str, path: str, method: str = "GET") -> tuple[int, object]:
    req = urllib.request.Request(url + path, method=method,
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        assert err.headers["content-type"] == "application/problem+json"
        return err.code, json.loads(err.read())


@pytest.fixture
def pg():
    if not pg_reachable():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def test_roles_and_scopes_end_to_end(mosquitto, pg, tmp_path):
    hub = HubProcess(mosquitto, pg, "hub-e2e-access", log_path=tmp_path / "hub.log").start()
    server = None
    try:
        hub.wait_connected()
        pub = Publisher(mosquitto)
        for i, (store, region) in enumerate(STORES.items()):
            pub.send(envelope("birth", birth_body(1, ("p1",)), store=store, region=region,
                              seq=0))
            pub.send(envelope("alert", alert_body(device="p1"), store=store, region=region,
                              seq=1))
        pub.close()
        tokens = {}
        for name, role, scope in (("admin", "hq-admin", ()),
                                  ("rm", "regional-manager", ("--region", "north")),
                                  ("aud", "auditor", ())):
            out = run_cli("users", "add", name, "--role", role, *scope, "--json", "--db", pg,
                          module="hub")
            assert out.returncode == 0, out.stderr
            tokens[name] = json.loads(out.stdout)["token"]
        server = ApiProcess(pg, tmp_path / "api").start()
        url = server.url
        wait_until(lambda: len(api(url, tokens["admin"], "/v1/alerts")[1]) == 3, 30,
                   "the three alerts at the hub")

        # The regional manager, through the API and the CLI: its region only.
        status, view = api(url, tokens["rm"], "/v1/fleet?all=true")
        assert status == 200 and {s["store"] for s in view["stores"]} == {"n1", "n2"}
        status, alerts = api(url, tokens["rm"], "/v1/alerts")
        assert {a["store"] for a in alerts} == {"n1", "n2"}
        out = cli("fleet", "--all", "--json", url=url, token=tokens["rm"])
        assert out.returncode == 0, out.stderr
        assert {s["store"] for s in json.loads(out.stdout)["stores"]} == {"n1", "n2"}
        out = cli("alerts", "--json", url=url, token=tokens["rm"])
        assert {a["store"] for a in json.loads(out.stdout)} == {"n1", "n2"}
        assert api(url, tokens["rm"], "/v1/stores/s1")[0] == 403
        out = cli("store", "s1", url=url, token=tokens["rm"])
        assert out.returncode == 1 and out.stderr.startswith("edge-hub: forbidden (403)")
        south = next(a["id"] for a in api(url, tokens["admin"], "/v1/alerts")[1]
                     if a["store"] == "s1")
        north = next(a["id"] for a in alerts if a["store"] == "n1")
        assert api(url, tokens["rm"], f"/v1/alerts/{south}/ack", "POST")[0] == 403
        out = cli("ack", south, url=url, token=tokens["rm"])
        assert out.returncode == 1 and "forbidden (403)" in out.stderr
        out = cli("ack", north, url=url, token=tokens["rm"])
        assert out.returncode == 0, out.stderr

        # The auditor reads the audit log (the ack is in it) and cannot acknowledge.
        status, entries = api(url, tokens["aud"], "/v1/audit")
        acks = [e for e in entries if e["action"] == "alerts.ack"]
        assert [(e["actor"], e["store"]) for e in acks] == [("rm", "n1")]
        assert api(url, tokens["aud"], f"/v1/alerts/{north}/ack", "POST")[0] == 403
        out = cli("audit", "list", "--json", url=url, token=tokens["aud"])
        assert out.returncode == 0 and any(e["action"] == "alerts.ack"
                                           for e in json.loads(out.stdout))

        # A disabled token gets 401, through the API and the CLI.
        out = cli("users", "disable", "rm", url=url, token=tokens["admin"])
        assert out.returncode == 0, out.stderr
        assert api(url, tokens["rm"], "/v1/fleet")[0] == 401
        out = cli("fleet", url=url, token=tokens["rm"])
        assert out.returncode == 1 and out.stderr.startswith("edge-hub: not authorized (401)")
        assert out.stderr.count("\n") == 1

        status, verdict = api(url, tokens["aud"], "/v1/audit/verify")
        assert verdict["ok"] is True, verdict
        out = run_cli("audit", "verify", "--db", pg, module="hub")
        assert out.returncode == 0, out.stderr
    finally:
        if server:
            server.stop()
        hub.terminate()


def test_serve_with_api_and_signed_checkpoints_to_a_file_and_a_retained_topic(mosquitto, tmp_path):
    from conftest import free_port
    from hub.domains import audit
    from hub.keys import KeyRing
    from hubkit import Subscriber

    ring = KeyRing.init(tmp_path / "keys")
    db = str(tmp_path / "hub.db")
    out = run_cli("users", "add", "aud", "--role", "auditor", "--json", "--db", db, module="hub")
    token = json.loads(out.stdout)["token"]
    cp_file = tmp_path / "checkpoint.json"
    config = tmp_path / "hub.toml"
    config.write_text(f'[audit]\ncheckpoint_interval = 1\ncheckpoint_file = "{cp_file}"\n'
                      f'checkpoint_topic = "edge/v1/hub/audit"\n'
                      f'[keys]\ndirectory = "{tmp_path / "keys"}"\n')
    port = free_port()
    feed = Subscriber(mosquitto, "edge/v1/hub/audit")
    hub = HubProcess(mosquitto, db, "hub-e2e-api", "--api", f"127.0.0.1:{port}", "--config",
                     str(config), log_path=tmp_path / "hub.log").start()
    try:
        hub.wait_connected()
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: cp_file.exists(), 20, "the checkpoint file")
        status, me = wait_until(lambda: _try(api, url, token, "/v1/me"), 20, "the API")
        assert status == 200 and me["role"] == "auditor"
        got = wait_until(lambda: feed.messages, PATIENCE_S, "the checkpoint on its topic")
        topic, payload, _ = got[0]
        assert topic == "edge/v1/hub/audit" and payload["sig"]["kid"] == ring.sign(b"")["kid"]
        # The checkpoint is retained: a subscriber arriving later gets it at once.
        late = Subscriber(mosquitto, "edge/v1/hub/audit")
        assert wait_until(lambda: late.messages, PATIENCE_S, "the retained checkpoint")[0][2] is True
        late.close()
    finally:
        feed.close()
        assert hub.terminate() == 0, hub.log()
    out = run_cli("audit", "verify", "--checkpoint", str(cp_file), "--keys",
                  str(tmp_path / "keys"), "--db", db, module="hub")
    assert out.returncode == 0 and "matches checkpoint file" in out.stdout, out.stderr
    assert audit.load_checkpoint_file(str(cp_file))["seq"] >= 1


def _try(fn, *args):
    try:
        return fn(*args)
    except OSError:
        return None
