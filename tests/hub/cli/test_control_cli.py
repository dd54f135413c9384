"""`edge-hub keys|cmd|flags|bundle|rollout` on a user's mistakes: exit 2 (or 1 for what does
not exist), one line, never a traceback; and their read commands on an empty hub."""

from __future__ import annotations

import json

import pytest

from apiproc import hub_here
from controlkit import hub_cli
from hub.app import open_store
from hub.keys import KeyRing


@pytest.fixture
def hub(tmp_path):
    KeyRing.init(tmp_path / "keys")
    db = str(tmp_path / "hub.db")
    store = open_store(db)
    with store.transaction() as tx:
        tx.execute("INSERT INTO stores (store, region) VALUES ('store-0001', 'north')")
    store.close()
    return ("--db", db), ("--dir", str(tmp_path / "keys")), tmp_path


@pytest.mark.parametrize("args, code, words", [
    (("flags", "set", "self_destruct=off", "--chain"), 2, "unknown flag"),
    (("flags", "set", "scoring=maybe", "--chain"), 2, "NAME=on|off"),
    (("flags", "set", "scoring=off", "--store", "store-9999"), 1, "has not reported"),
    (("bundle", "create"), 2, "--model FILE.onnx or --config"),
    (("bundle", "create", "--config", "/nonexistent.toml"), 2, "cannot read"),
    (("rollout", "start", "deadbeefdeadbeef", "--stages", "pilot=store-0001"), 1, "no bundle"),
    # A malformed id or bundle is a mistake in the arguments (2), as the API's 400 is; an
    # unknown one is work that cannot be done (1), as the API's 404 is.
    (("rollout", "start", "dead", "--stages", "pilot=store-0001"), 2, "8 to 64 hexadecimal"),
    (("rollout", "pause", "not-a-rollout"), 2, "rollout id: expected a UUID"),
    (("rollout", "pause", "0190c0de-7a1b-4c2d-9e3f-a1b2c3d4e5f6"), 1, "no rollout"),
    (("rollout", "status", "x"), 2, "expected a UUID"),
    (("cmd", "store-0001", "receipt-1", "test_print", "--arg", "text=$(reboot)"), 2, "bad_args"),
    (("cmd", "store-0001", "receipt-1", "test_print", "--arg", "noequals"), 2, "K=V"),
    (("cmd", "store-0404", "diagnostics"), 1, "has not reported"),
    (("cmd", "store-0001", "diagnostics", "--region", "south"), 2, "is in region north"),
    (("cmd", "store-0001", "diagnostics", "--wait", "nan"), 2, "--wait"),
    (("cmd", "store-0001", "diagnostics", "--wait", "-1"), 2, "--wait"),
    (("cmd", "list", "--limit", "0"), 2, "--limit"),
    (("cmd", "list", "--store", "../s1"), 2, "--store '../s1': must be"),
    (("cmd", "../s1", "diagnostics"), 2, "STORE '../s1': must be"),
    (("cmd", "store-0001", "a b", "repoll"), 2, "DEVICE 'a b': must be"),
    (("cmd", "list", "extra"), 2, "usage: edge-hub cmd list"),
    (("cmd", "status", "no-such-id"), 2, "command id: expected a UUID"),
    (("cmd", "status", "0190c0de-7a1b-4c2d-9e3f-a1b2c3d4e5f6"), 1, "no command"),
    (("cmd", "approve", "no-such-id"), 2, "command id: expected a UUID"),
    (("cmd", "approve", "0190c0de-7a1b-4c2d-9e3f-a1b2c3d4e5f6"), 1, "no command"),
    (("cmd", "store-0001", "diagnostics", "--hub", "http://127.0.0.1:9"), 2, "not both"),
])
def test_mistakes_are_one_line_without_a_traceback(hub, args, code, words):
    db, keys, _ = hub
    needs_keys = args[0] in ("flags", "bundle", "rollout", "cmd") and \
        args[:2] not in (("flags", "show"), ("rollout", "status"))
    r = hub_here(*args, *db, *(keys if needs_keys else ()))   # in this process: quicker
    assert r.returncode == code, (r.stdout, r.stderr)
    assert words in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1, r.stderr


def test_bad_toml_and_a_bad_gate_are_usage_errors(hub):
    db, keys, tmp = hub
    bad = tmp / "bad.toml"
    bad.write_text("[agent\n")
    r = hub_cli("bundle", "create", "--config", str(bad), *db, *keys)
    assert r.returncode == 2 and "not valid TOML" in r.stderr
    good = tmp / "good.toml"
    good.write_text('[agent]\nstore = "store-0001"\n')
    sha = json.loads(hub_cli("bundle", "create", "--config", str(good), *db, *keys,
                             "--json").stdout)["sha256"]
    r = hub_cli("rollout", "start", sha, "--stages", "pilot=store-0001", "--gate", "x=1",
                *db, *keys)
    assert r.returncode == 2 and "--gate" in r.stderr
    r = hub_cli("rollout", "start", sha, "--stages", "pilot=store-0001", "--soak", "soon",
                *db, *keys)
    assert r.returncode == 2 and "--soak" in r.stderr


def test_read_commands_on_an_empty_hub(hub):
    db, _, _ = hub
    assert "no flags set" in hub_cli("flags", "show", *db).stdout
    assert "no bundles" in hub_cli("bundle", "list", *db).stdout
    assert "no rollouts" in hub_cli("rollout", "status", *db).stdout
    assert json.loads(hub_cli("cmd", "list", *db, "--json").stdout) == []
    text = hub_cli("store", "store-0001", *db).stdout
    assert "flags: defaults (all on)" in text
