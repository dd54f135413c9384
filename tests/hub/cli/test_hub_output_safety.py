"""Output that is safe (issue 15 item 4) and the CLI's smaller faults (item 9).

Strings a store sent are stored by a direct insert, bypassing the decoder (an old database
may hold them): ESC, BEL, CR/LF, NUL (SQLite only: PostgreSQL text cannot hold it), backspace
and U+202E in every column the hub's tables show. No raw control or bidi character reaches
the terminal from `edge-hub fleet`, `store`, `devices`, `alerts`, `ack`, `quarantine list`,
`stores prune`; `--json` keeps the strings as stored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, agent_env
from hub.app import open_store

RAW = ("\x1b", "\x07", "\r", "\x00", "\x08", "\u202e")


def hostile(dialect: str, tag: str) -> str:
    text = f"{tag}\x1b[2J\x07\r\nFORGED ROW\x08\u202e"
    return text + ("\x00z" if dialect == "sqlite" else "z")


def hub(*args: str) -> subprocess.CompletedProcess:
    # A wide terminal, so no cell is cut and every escaped string shows whole.
    return subprocess.run([sys.executable, "-m", "hub", *args], capture_output=True, text=True,
                          timeout=60, env=agent_env(COLUMNS="4000"), cwd=ROOT)


@pytest.fixture
def dirty_db(hub_db):
    db = open_store(hub_db)
    d = db.dialect
    h = lambda tag: hostile(d, tag)  # noqa: E731
    agent = json.dumps({"agent_version": h("av"), "model_version": h("mv"),
                        "config_hash": h("ch"), "session": 1})
    try:
        with db.transaction() as tx:
            for store, region in (("s1", h("region")), (h("store"), "r1")):
                tx.execute("INSERT INTO stores (store, region, birth_session, online, changed,"
                           " last_seen, agent, first_seq, max_seq, received) VALUES"
                           " (?, ?, 1, 1, 0, 0, ?, 1, 3, 2)", (store, region, agent))
                tx.execute("INSERT INTO devices (store, device, kind, ts, vals, stale, reason,"
                           " decision, score, model, decision_ts) VALUES"
                           " (?, ?, ?, ?, ?, 1, ?, ?, 0.95, ?, ?)",
                           (store, h("dev"), h("kind"), h("ts"),
                            json.dumps({"device.status": h("status")}), h("reason"),
                            "failed", h("model"), h("dts")))
                tx.execute("INSERT INTO alerts (id, store, region, alert, device, what, severity,"
                           " state, since, seq, acked_by) VALUES"
                           " (?, ?, ?, ?, ?, ?, ?, 'raised', ?, 1, ?)",
                           (f"a-{len(store)}", store, region, h("alert"), h("dev"), h("what"),
                            h("sev"), h("since"), h("by")))
            tx.execute("INSERT INTO rejects (reason, count) VALUES (?, 3)", (h("why"),))
            tx.execute("INSERT INTO quarantine (id, store, region, kind, seq, topic, reason,"
                       " payload, at) VALUES (?, ?, ?, ?, 1, ?, ?, ?, 0)",
                       (h("qid"), h("qs"), h("qr"), h("qk"), h("qt"), h("qwhy"), h("qp")))
    finally:
        db.close()
    return hub_db


def assert_safe(out: subprocess.CompletedProcess) -> None:
    assert out.returncode == 0, out.stderr
    for ch in RAW:
        assert ch not in out.stdout, (repr(ch), out.stdout)
    # CR/LF cannot forge a row: every "FORGED ROW" sits inside a line that starts otherwise.
    for line in out.stdout.splitlines():
        assert not line.startswith("FORGED"), out.stdout
    assert "\\e[2J\\a\\r\\nFORGED ROW\\b\\u202e" in out.stdout, out.stdout


COMMANDS = (("fleet",), ("store", "s1"), ("devices",), ("alerts",), ("quarantine", "list"),
            ("stores", "prune", "--unseen", "1s", "--dry-run"))


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_no_control_or_bidi_character_from_a_store_reaches_the_terminal(dirty_db, command):
    assert_safe(hub(*command, "--db", dirty_db))


def test_ack_shows_the_alert_escaped(dirty_db):
    assert_safe(hub("ack", "a-2", "--db", dirty_db))


def test_json_prints_the_strings_as_stored(dirty_db):
    dialect = "postgresql" if dirty_db.startswith("postgresql") else "sqlite"
    data = json.loads(hub("devices", "--json", "--db", dirty_db).stdout)
    assert {d["device"] for d in data} == {hostile(dialect, "dev")}
    store = json.loads(hub("store", "s1", "--json", "--db", dirty_db).stdout)
    assert store["region"] == hostile(dialect, "region")
    assert store["agent"]["model_version"] == hostile(dialect, "mv")


# Item 9 ----------------------------------------------------------------------------------------

def test_a_seq_of_2_63_minus_1_in_an_old_database_does_not_break_store(hub_db):
    db = open_store(hub_db)
    try:
        with db.transaction() as tx:
            tx.execute("INSERT INTO stores (store, region, first_seq, max_seq, received)"
                       " VALUES ('s1', 'r1', 1, ?, 3)", (2**63 - 1,))
            for i, seq in enumerate((1, 2**63 - 1, 2**63 - 1)):
                tx.execute("INSERT INTO messages (id, store, region, seq, kind, ts, received,"
                           " envelope) VALUES (?, 's1', 'r1', ?, 'telemetry', 't', 1, '{}')",
                           (f"m{i}", seq))
    finally:
        db.close()
    out = hub("store", "s1", "--db", hub_db, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["gaps"] == [[2, 2**63 - 2]]
    assert hub("store", "s1", "--db", hub_db).returncode == 0


def test_a_non_utf8_argument_is_one_line_and_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hub", "fleet", "--region", b"\xff",
                          "--db", str(tmp_path / "x.db")], capture_output=True, env=agent_env(),
                         cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.decode().strip().count("\n") == 0 and b"Traceback" not in out.stderr


def test_a_closed_pipe_is_a_quiet_exit(hub_db):
    open_store(hub_db).close()
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the hub writes a byte (`| head -0`)
    try:
        out = subprocess.run([sys.executable, "-m", "hub", "fleet", "--db", hub_db],
                             stdout=write, stderr=subprocess.PIPE, env=agent_env(), cwd=ROOT,
                             timeout=60)
    finally:
        os.close(write)
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
