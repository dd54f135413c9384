"""`edge-hub demo`: embedded broker, hub and two real agents on one machine."""

from __future__ import annotations

import json

from conftest import run_cli


def test_the_demo_chain_brings_two_stores_online_and_sees_them_leave(tmp_path):
    out = run_cli("demo", "--dir", str(tmp_path / "demo"), "--seconds", "6", "--json",
                  module="hub", timeout=90)
    assert out.returncode == 0, out.stderr
    ticks = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    online = [{s["store"] for s in t["stores"] if s["online"]} for t in ticks]
    assert {"store-0001", "store-0002"} in online, out.stdout
    last = ticks[-1]["stores"]
    assert [s["online"] for s in last] == [False, False]  # a clean stop sends each death
    assert all(d["ts"] for d in ticks[-1]["devices"])  # each register's readings arrived
