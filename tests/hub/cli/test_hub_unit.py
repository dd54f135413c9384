"""The shipped hub unit can start (issue 15 item 8) and a newer schema stops `serve` in one
line (item 7).

The unit's ExecStart is parsed and run (`python -m hub` for the installed entry point) with
`--check`, which validates every option as `serve` would and exits without connecting, so the
unit's command line cannot rot again. The unit is Type=notify with a watchdog: a real hub run
under a NOTIFY_SOCKET this test listens on must say READY=1 and then ping WATCHDOG=1.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys


from conftest import ROOT, agent_env
from hub.app import open_store

UNIT = ROOT / "packaging/systemd/edge-hub.service"
ENTRY = "/opt/retail-edge/venv/bin/edge-hub"


def exec_start() -> list[str]:
    lines = [line for line in UNIT.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1, lines
    argv = shlex.split(lines[0][len("ExecStart="):])
    assert argv[0] == ENTRY, argv
    return argv[1:]


def local(argv: list[str], tmp_path) -> list[str]:
    """The unit's arguments with its files pointed at this checkout (a config file, if the
    unit names one, becomes the example config shipped beside the code)."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--config":
            example = next((p for p in (ROOT / "hub.example.toml",
                                        ROOT / "hub/defaults/hub.example.toml") if p.exists()),
                           None)
            assert example is not None, "the unit names a config file but none is shipped"
            out[i + 1] = str(example)
    return out


def test_the_units_command_line_is_one_serve_accepts(tmp_path):
    argv = local(exec_start(), tmp_path)
    assert argv[0] == "serve"
    out = subprocess.run([sys.executable, "-m", "hub", *argv, "--check"], capture_output=True,
                         text=True, env=agent_env(), cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "edge-hub serve: ok" in out.stdout


def test_check_reports_a_bad_option_in_one_line_exit_2():
    out = subprocess.run([sys.executable, "-m", "hub", "serve", "--broker", "nope", "--check"],
                         capture_output=True, text=True, env=agent_env(), cwd=ROOT, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--broker" in out.stderr


def test_serve_under_systemd_says_ready_then_pings_the_watchdog(mosquitto, tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(30)
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve", "--broker",
             f"{mosquitto.host}:{mosquitto.port}", "--db", str(tmp_path / "hub.db"),
             "--client-id", "hub-notify"], env=agent_env(NOTIFY_SOCKET=path,
                                                         WATCHDOG_USEC="60000000"),
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            got = []
            while "WATCHDOG=1" not in got:
                got += sock.recv(4096).decode().split("\n")
            assert got.index("READY=1") < got.index("WATCHDOG=1"), got
        finally:
            proc.terminate()
            proc.wait(20)
        assert proc.returncode == 0


def test_serve_on_a_schema_newer_than_the_code_exits_1_in_one_line(hub_db, mosquitto):
    db = open_store(hub_db)
    try:
        with db.transaction() as tx:
            tx.execute("UPDATE schema_versions SET version = 99 WHERE domain = 'fleet'")
    finally:
        db.close()
    out = subprocess.run([sys.executable, "-m", "hub", "serve", "--db", hub_db, "--broker",
                          f"{mosquitto.host}:{mosquitto.port}"], capture_output=True, text=True,
                         env=agent_env(), cwd=ROOT, timeout=60)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "newer edge-hub" in out.stderr, out.stderr


def test_the_unit_restarts_the_hub_for_as_long_as_an_outage_lasts_but_not_a_config_mistake():
    """A hub exits 1 when its database stays down past the writer's give-up, and refuses to
    start while it is down: with a start limit systemd would stop restarting it after a few
    refusals (bench/chaos.py hub-db). A config mistake is exit 2 (the test above): no retry."""
    lines = UNIT.read_text().splitlines()
    assert "StartLimitIntervalSec=0" in lines
    assert not any(line.startswith("StartLimitBurst=") for line in lines)
    assert "Restart=on-failure" in lines and "RestartPreventExitStatus=2" in lines


def test_serve_tunes_the_cycle_collector_of_its_own_process_before_serving(
        monkeypatch, tmp_path):
    """`edge-hub serve` (and only it: not hub.app.serve, which tests run in their process)
    freezes what is loaded and raises the collector's thresholds (docs/benchmarks.md, 1c)."""
    import gc

    import hub.app
    from hub.cli import main

    calls = []
    monkeypatch.setattr(hub.app, "tune_gc", lambda: calls.append(("tune_gc",)))
    monkeypatch.setattr(hub.app, "serve",
                        lambda db, settings, **kw: calls.append(("serve", settings.port)) or 0)
    assert main(["serve", "--db", str(tmp_path / "h.db"), "--broker", "127.0.0.1:1"]) == 0
    assert calls == [("tune_gc",), ("serve", 1)]
    before = gc.get_threshold()
    code = ("import gc; from hub.app import tune_gc, GC_THRESHOLDS; tune_gc(); "
            "print(gc.get_threshold() == GC_THRESHOLDS, gc.get_freeze_count() > 1000)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=agent_env(), cwd=ROOT, timeout=120)
    assert out.stdout.split() == ["True", "True"], out.stderr
    assert gc.get_threshold() == before  # this process untouched
