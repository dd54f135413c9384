"""`edge-hub api` served by uvicorn (plain and TLS) and the CLI over it: tokens from the
environment or a private credentials file, 401 and 403 as one line with exit 1."""

from __future__ import annotations

import json

import pytest

from apikit import hub_with_fleet
from apiproc import ApiProcess, cli


@pytest.fixture
def served(tmp_path):
    db_path = str(tmp_path / "hub.db")
    db, tokens = hub_with_fleet(db_path)
    db.close()
    api = ApiProcess(db_path, tmp_path / "api").start()
    yield api, tokens, db_path
    assert api.stop() == 0, api.log.read_text()


def test_users_and_audit_through_the_api(served):
    api, tokens, _ = served
    out = cli("users", "add", "kim", "--role", "regional-manager", "--region", "south",
              "--json", url=api.url, token=tokens["admin"])
    assert out.returncode == 0, out.stderr
    kim = json.loads(out.stdout)["token"]
    me = cli("users", "show", "kim", "--json", url=api.url, token=tokens["audit"])
    assert json.loads(me.stdout)["regions"] == ["south"]
    entries = json.loads(cli("audit", "list", "--json", "--actor", "admin", url=api.url,
                             token=tokens["audit"]).stdout)
    assert entries[-1]["action"] == "users.add" and entries[-1]["source"].startswith("api:")
    ok = cli("audit", "verify", url=api.url, token=tokens["audit"])
    assert ok.returncode == 0 and "audit log intact" in ok.stdout
    denied = cli("audit", "list", url=api.url, token=kim)
    assert denied.returncode == 1
    assert denied.stderr.count("\n") == 1 and denied.stderr.startswith("edge-hub: forbidden (403)")
    assert cli("users", "disable", "kim", url=api.url, token=tokens["admin"]).returncode == 0
    gone = cli("users", "show", "kim", url=api.url, token=kim)
    assert gone.returncode == 1 and gone.stderr.startswith("edge-hub: not authorized (401)")
    assert gone.stderr.count("\n") == 1 and "Traceback" not in gone.stderr


def test_no_token_or_no_hub_is_one_clear_line(served, tmp_path):
    api, _, _ = served
    out = cli("users", "list", url=api.url, home=tmp_path / "empty")
    assert out.returncode == 1 and "no API token" in out.stderr and out.stderr.count("\n") == 1
    out = cli("users", "list", "--hub", "ftp://x", token="eh_x")
    assert out.returncode == 2 and "--hub" in out.stderr


def test_a_credentials_file_must_be_private(served, tmp_path):
    api, tokens, _ = served
    home = tmp_path / "home"
    (home / "edge-hub").mkdir(parents=True)
    creds = home / "edge-hub" / "credentials"
    creds.write_text(f'url = "{api.url}"\ntoken = "{tokens["audit"]}"\n')
    creds.chmod(0o644)
    out = cli("users", "list", home=home)
    assert out.returncode == 1 and "readable by others" in out.stderr and "chmod 600" in out.stderr
    creds.chmod(0o600)
    out = cli("users", "list", home=home)
    assert out.returncode == 0 and "north-rm" in out.stdout, out.stderr


def test_an_unreachable_hub_is_one_line(tmp_path):
    from conftest import free_port

    out = cli("users", "list", url=f"http://127.0.0.1:{free_port()}", token="eh_" + "a" * 43)
    assert out.returncode == 1 and "cannot reach the hub" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_api_over_tls(tmp_path):
    from certs import Authority

    ca = Authority(tmp_path / "ca")
    server = ca.issue("127.0.0.1", server=True)
    db_path = str(tmp_path / "hub.db")
    db, tokens = hub_with_fleet(db_path)
    db.close()
    api = ApiProcess(db_path, tmp_path / "api",
                     f'[api]\ntls_cert = "{server.cert}"\ntls_key = "{server.key}"\n',
                     scheme="https", ca=str(ca.ca_path)).start()
    try:
        out = cli("users", "list", "--json", url=api.url, token=tokens["audit"],
                  EDGE_HUB_CA=str(ca.ca_path))
        assert out.returncode == 0, out.stderr
        assert {u["name"] for u in json.loads(out.stdout)} >= {"admin", "north-rm"}
        untrusted = cli("users", "list", url=api.url, token=tokens["audit"])
        assert untrusted.returncode == 1 and "cannot reach the hub" in untrusted.stderr
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        plain = cli("users", "list", url=api.url.replace("https", "http"),
                    token=tokens["audit"])
        assert plain.returncode == 1
    finally:
        api.stop()


def test_api_without_a_listener_is_exit_2(tmp_path):
    out = cli("api", "--db", str(tmp_path / "hub.db"))
    assert out.returncode == 2 and "no listener" in out.stderr
