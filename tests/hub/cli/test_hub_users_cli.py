"""`edge-hub users` and `edge-hub audit` on the hub host (--db): tokens printed once, every
action recorded as a local actor, verify's exit codes, nothing raw on a terminal."""

from __future__ import annotations

import json

import pytest

from apiproc import hub_here

from hub.keys import KeyRing


def hub(*args: str):
    """`edge-hub ARGS` in this process (apiproc.hub_here: the same main(), without an
    interpreter start per call); the console script as a process is tested in tests/e2e."""
    return hub_here(*args)


def test_users_lifecycle_and_its_audit_trail(hub_db):
    out = hub("users", "add", "ann", "--role", "regional-manager", "--region", "north",
              "--json", "--db", hub_db)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    token = data["token"]
    assert token.startswith("eh_") and data["user"]["regions"] == ["north"]
    text = hub("users", "add", "bob", "--role", "auditor", "--db", hub_db)
    assert text.returncode == 0 and "shown once" in text.stdout
    listed = hub("users", "list", "--db", hub_db)
    assert listed.returncode == 0
    assert "ann" in listed.stdout and "regional-manager" in listed.stdout
    assert token not in listed.stdout + hub("users", "show", "ann", "--json", "--db",
                                            hub_db).stdout
    rotated = json.loads(hub("users", "rotate-token", "ann", "--json", "--db", hub_db).stdout)
    assert rotated["token"] != token
    assert hub("users", "disable", "ann", "--db", hub_db).returncode == 0
    shown = json.loads(hub("users", "show", "ann", "--json", "--db", hub_db).stdout)
    assert shown["disabled"] and shown["active_tokens"] == 0
    entries = json.loads(hub("audit", "list", "--json", "--db", hub_db).stdout)
    actions = [e["action"] for e in entries]
    assert actions[:2] == ["users.add", "users.add"]
    assert "users.rotate-token" in actions and "users.disable" in actions
    assert {e["actor_kind"] for e in entries} == {"local"}
    assert all(e["source"].startswith("cli:") for e in entries)
    assert token not in json.dumps(entries)
    ok = hub("audit", "verify", "--db", hub_db)
    assert ok.returncode == 0 and "audit log intact" in ok.stdout, ok.stderr


@pytest.mark.parametrize("args, message", [
    (("users", "add", "x", "--role", "root"), "invalid choice"),
    (("users", "add", "x\x1b]0;pwned\x07", "--role", "auditor"), "user name"),
    (("users", "add", "x", "--role", "store-manager"), "at least one"),
    (("users", "add", "x", "--role", "store-manager", "--store", "a b"), "store name"),
    (("audit", "list", "--since", "yesterday"), "--since"),
    # A valid ISO 8601 time before year 1 in UTC: was a traceback (OverflowError).
    (("audit", "list", "--since", "0001-01-01T00:00:00+01:00"), "--since"),
])
def test_mistakes_are_exit_2_in_one_line_and_never_raw(tmp_path, args, message):
    out = hub(*args, "--db", str(tmp_path / "hub.db"))
    assert out.returncode == 2, out
    assert message in out.stderr and "Traceback" not in out.stderr
    assert "\x1b" not in out.stderr and "\x07" not in out.stderr


def test_unknown_users_and_a_second_add_are_exit_1(tmp_path):
    db = str(tmp_path / "hub.db")
    assert hub("users", "add", "a", "--role", "auditor", "--db", db).returncode == 0
    again = hub("users", "add", "a", "--role", "auditor", "--db", db)
    assert again.returncode == 1 and "already exists" in again.stderr
    missing = hub("users", "show", "nobody", "--db", db)
    assert missing.returncode == 1 and "unknown user" in missing.stderr


def test_read_commands_do_not_create_a_database(tmp_path):
    out = hub("users", "list", "--db", str(tmp_path / "none.db"))
    assert out.returncode == 1 and "no hub database" in out.stderr
    assert not (tmp_path / "none.db").exists()


def test_verify_exits_1_naming_the_edited_entry(tmp_path):
    import sqlite3

    db = str(tmp_path / "hub.db")
    for name in ("a", "b", "c"):
        assert hub("users", "add", name, "--role", "auditor", "--db", db).returncode == 0
    con = sqlite3.connect(db)
    con.execute("UPDATE audit_log SET detail = '{\"role\":\"hq-admin\"}' WHERE seq = 2")
    con.commit()
    con.close()
    out = hub("audit", "verify", "--db", db)
    assert out.returncode == 1
    assert out.stderr.strip() == ("edge-hub: audit log NOT intact: audit entry 2 edited "
                                  "(its content does not match its hash)")


def test_checkpoint_file_catches_a_tail_cut(tmp_path):
    import sqlite3

    db, keys, cp = str(tmp_path / "hub.db"), tmp_path / "keys", tmp_path / "cp.json"
    KeyRing.init(keys)
    for name in ("a", "b", "c"):
        assert hub("users", "add", name, "--role", "auditor", "--db", db).returncode == 0
    out = hub("audit", "checkpoint", "--file", str(cp), "--keys", str(keys), "--db", db)
    assert out.returncode == 0 and "checkpoint at entry 3" in out.stdout, out.stderr
    good = hub("audit", "verify", "--checkpoint", str(cp), "--keys", str(keys), "--db", db)
    assert good.returncode == 0 and "matches checkpoint file" in good.stdout, good.stderr
    con = sqlite3.connect(db)  # cut entries 3 and on, the stored checkpoints, fix the head
    con.execute("DELETE FROM audit_log WHERE seq >= 3")
    con.execute("DELETE FROM audit_checkpoints")
    con.execute("UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM audit_log "
                "WHERE seq = 2)")
    con.commit()
    con.close()
    bad = hub("audit", "verify", "--checkpoint", str(cp), "--keys", str(keys), "--db", db)
    assert bad.returncode == 1
    assert "audit entry 3 deleted (tail cut behind checkpoint file" in bad.stderr
    # Without the checkpoint the cut is invisible (the failed verify appended entry 3 itself).
    assert hub("audit", "verify", "--db", db).returncode == 0
    again = hub("audit", "verify", "--checkpoint", str(cp), "--keys", str(keys), "--db", db)
    assert again.returncode == 1 and "entry 3 or an earlier one rewritten or deleted" \
        in again.stderr


def test_export_writes_every_entry_verifiably(tmp_path):
    from hub.domains.audit import walk

    db = str(tmp_path / "hub.db")
    assert hub("users", "add", "a", "--role", "auditor", "--db", db).returncode == 0
    out = hub("audit", "export", "--db", db)
    assert out.returncode == 0
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["action"] for r in rows] == ["users.add", "audit.export"]  # itself recorded first
    assert walk(rows).entries == 2


def test_names_with_control_characters_are_escaped_in_tables(tmp_path):
    import sqlite3

    db = str(tmp_path / "hub.db")
    assert hub("users", "add", "a", "--role", "auditor", "--db", db).returncode == 0
    con = sqlite3.connect(db)  # a hostile name that got in some other way
    con.execute("UPDATE users SET name = 'evil\x1b[2J\u202e' WHERE name = 'a'")
    con.commit()
    con.close()
    out = hub("users", "list", "--db", db)
    assert out.returncode == 0
    assert "\x1b" not in out.stdout and "\u202e" not in out.stdout
    assert "evil\\e[2J\\u202e" in out.stdout
