"""`edge-hub demo`: the chain on one machine (hub, embedded broker, two stores) runs and stops."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from conftest import ROOT, agent_env
from hub.domains import alerts as alert_domain, fleet
from hub.app import open_store

MARK = "EDGE_DEMO_CHAIN_TEST"


def processes_marked(token: str) -> list[int]:
    """Pids of processes whose environment carries the token (every child inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if f"{MARK}={token}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def test_the_chain_demo_shows_both_stores_online_routes_an_alert_and_leaves_no_process(
        tmp_path):
    token = uuid.uuid4().hex
    folder = tmp_path / "chain"
    # Run it as a person does and stop it with Ctrl-C (SIGINT) once the fleet view has shown
    # both stores online and an alert has come back on the regional feed; --seconds is only a
    # bound in case that never happens.
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "demo", "--seconds", "120", "--refresh", "5",
         "--dir", str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=agent_env(**{MARK: token}))
    lines: list[str] = []
    seen: set[str] = set()
    interrupted = False
    for line in proc.stdout:
        lines.append(line)
        if re.match(r"north\s+store-north\s+online\b", line):
            seen.add("north")
        if re.match(r"south\s+store-south\s+online\b", line):
            seen.add("south")
        if line.startswith("ALERT edge/v1/alerts/"):
            seen.add("alert")
        if not interrupted and seen == {"north", "south", "alert"}:
            proc.send_signal(signal.SIGINT)
            interrupted = True
    stderr = proc.stderr.read()
    proc.wait(timeout=60)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines), stderr)
    assert interrupted, "".join(lines)[-3000:] + stderr[-3000:]
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr

    # Both stores were seen online at the hub, each in its region (the fleet views).
    assert re.search(r"^north\s+store-north\s+online\b", out, re.M), out[-3000:]
    assert re.search(r"^south\s+store-south\s+online\b", out, re.M), out[-3000:]
    # At least one alert came back on the regional feed, on its region's topic.
    feed = re.findall(r"^ALERT edge/v1/alerts/(north|south)/(store-\w+): (store-\w+) ", out,
                      re.M)
    assert feed, out[-3000:]
    assert all(topic_store == body_store for _, topic_store, body_store in feed)
    # The hub's database agrees: both stores known in their regions, alerts recorded.
    db = open_store(str(folder / "hub.db"))
    try:
        regions = {s["store"]: s["region"] for s in fleet.stores(db)}
        assert regions == {"store-north": "north", "store-south": "south"}
        assert alert_domain.alerts(db, open_only=False)
    finally:
        db.close()

    # Every child it started (hub, stores, and their simulators) is gone.
    pids = [int(p) for p in re.findall(r"\(pid (\d+)", out)]
    assert len(set(pids)) >= 3
    assert processes_marked(token) == []


BAD_ARGUMENTS = {
    "a negative duration for the chain": ("hub", ["demo", "--seconds", "-1"], "--seconds"),
    "a zero refresh for the chain": ("hub", ["demo", "--refresh", "0"], "--refresh"),
    "a store's sync address without a port": ("edge_agent", ["demo", "--sync", "localhost"],
                                              "--sync"),
    "a store's sync address with a port out of range": (
        "edge_agent", ["demo", "--sync", "127.0.0.1:70000"], "--sync"),
    "a store's zero scoring interval": ("edge_agent", ["demo", "--scoring-interval", "0"],
                                        "--scoring-interval"),
}


def test_the_demos_refuse_bad_arguments_plainly_and_start_nothing(tmp_path):
    for case, (module, argv, named) in BAD_ARGUMENTS.items():
        result = subprocess.run([sys.executable, "-m", module, *argv, *(
            ["--state-dir", str(tmp_path / "s")] if module == "edge_agent" else
            ["--dir", str(tmp_path / "c")])], capture_output=True, text=True, timeout=60,
            cwd=ROOT, env=agent_env())
        assert result.returncode == 2, (case, result.stderr)
        assert named in result.stderr, (case, result.stderr)
        assert "Traceback" not in result.stderr, case
    assert not (tmp_path / "c").exists()
