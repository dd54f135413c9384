"""Benchmark: the hub API's fleet summary over 10,000 stores, and `edge-hub fleet` end to end.

A hub database (SQLite, or PostgreSQL with --pg) is filled with S stores in R regions, D devices
a store; 3 % of stores offline, 2 % of devices predicted to fail, 1 % of stores with a raised
critical alert. The API (uvicorn, as `edge-hub api` serves it) runs in this process's
background thread; requests go over loopback HTTP with keep-alive, one at a time:

1. GET /v1/fleet as an hq-admin (the chain: every region, the stores needing attention)
2. GET /v1/fleet as a regional manager (one region of R)
3. GET /v1/fleet?all=true as an hq-admin (every store listed: the old view's size)
4. `edge-hub fleet --hub URL` (the CLI as a person runs it: interpreter start, imports, the
   request, the table) as a subprocess, several times; and `edge-hub fleet --db` (local) once.

Figures are printed (p50, p90, max); nothing is asserted. Run:
    python bench/api_fleet.py [--stores 10000] [--regions 20] [--devices 5] [--requests 200]
                              [--cli-runs 10] [--pg]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support")]


def seed(db, stores: int, regions: int, devices: int) -> None:
    """Fill the fleet tables directly (what ingest would have written)."""
    now = time.time()
    store_rows, device_rows, alert_rows = [], [], []
    for i in range(stores):
        store, region = f"store-{i:05d}", f"region-{i % regions:02d}"
        offline = i % 33 == 0
        store_rows.append((store, region, 1, 0 if offline else -1, 0 if offline else 1,
                           now - 3600, now - (900 if offline else 5), "{}", 1, 1000, 1000))
        for d in range(devices):
            risky = (i * devices + d) % 50 == 0
            device_rows.append((store, f"dev-{d}", "escpos", "2026-12-05T08:00:00.000Z",
                                '{"device.status": "ok"}', 0, None,
                                "predicted_failure" if risky else "ok", 0.9 if risky else 0.1))
        if i % 100 == 7:
            alert_rows.append((f"{i:012x}", store, region, "dev-0:paper_out", "dev-0",
                               "paper_out", "critical", "raised", "2026-12-05T08:00:00.000Z", 5))
    with db.transaction() as tx:
        tx.executemany("INSERT INTO stores (store, region, birth_session, death_session, online,"
                       " changed, last_seen, agent, first_seq, max_seq, received)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", store_rows)
        tx.executemany("INSERT INTO devices (store, device, kind, ts, vals, stale, reason,"
                       " decision, score) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", device_rows)
        tx.executemany("INSERT INTO alerts (id, store, region, alert, device, what, severity,"
                       " state, since, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", alert_rows)


def timed(conn: http.client.HTTPConnection, path: str, token: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        body = resp.read()
        out.append(time.perf_counter() - t0)
        if resp.status != 200:
            raise SystemExit(f"{path}: {resp.status} {body[:200]!r}")
    return out


def figures(name: str, times: list[float], size: int | None = None) -> None:
    ms = sorted(t * 1000 for t in times)
    p90 = ms[int(len(ms) * 0.9) - 1] if len(ms) >= 10 else ms[-1]
    print(f"  {name:<44} p50 {statistics.median(ms):7.1f} ms   p90 {p90:7.1f} ms   "
          f"max {ms[-1]:7.1f} ms" + (f"   {size:,} bytes" if size else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", type=int, default=10000)
    ap.add_argument("--regions", type=int, default=20)
    ap.add_argument("--devices", type=int, default=5)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--cli-runs", type=int, default=10)
    ap.add_argument("--pg", action="store_true", help="PostgreSQL on 127.0.0.1:5432")
    args = ap.parse_args()

    from accesskit import ADMIN, Clock, migrated
    from conftest import agent_env, free_port
    from hub.api.app import create_app
    from hub.api.server import Background
    from hub.config import parse_text
    from hub.domains.access.users import add_user

    work = Path(tempfile.mkdtemp(prefix="api-fleet-"))
    if args.pg:
        from hubkit import create_pg_database

        url = create_pg_database()
    else:
        url = str(work / "hub.db")
    db = migrated(url)
    t0 = time.perf_counter()
    seed(db, args.stores, args.regions, args.devices)
    with db.transaction() as tx:
        _, admin = add_user(tx, Clock(), ADMIN, "admin", "hq-admin")
        _, rm = add_user(tx, Clock(), ADMIN, "rm", "regional-manager", regions=["region-03"])
    print(f"{platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs (shared), {'PostgreSQL' if args.pg else 'SQLite'}; "
          f"{args.stores:,} stores in {args.regions} regions, {args.devices} devices a store "
          f"(seeded in {time.perf_counter() - t0:.1f} s)")
    # The bench measures latency, not the rate limit: a limit no run reaches.
    limits = "[limits]\nrate_per_s = 100000\nrate_burst = 100000\n"
    data = None
    servers = []
    for label, cache in (("every request reads the database (api.fleet_cache_s = 0)", 0.0),
                         ("shared fleet states, at most 1 s old (the default)", 1.0)):
        config = parse_text(limits + f"[api]\nfleet_cache_s = {cache}\n")
        port = free_port()
        server = Background(create_app(db, config), f"127.0.0.1:{port}", config)
        server.start()
        servers.append(server)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def body(path: str, token: str) -> bytes:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            return conn.getresponse().read()

        for path, token in (("/v1/fleet", admin), ("/v1/fleet", rm),
                            ("/v1/fleet?all=true&limit=100000", admin)):
            timed(conn, path, token, 3)  # warm up
        summary = body("/v1/fleet", admin)
        data = json.loads(summary)
        print(f"API, {label}; {args.requests} sequential requests each (keep-alive):")
        figures("GET /v1/fleet (hq-admin, chain summary)",
                timed(conn, "/v1/fleet", admin, args.requests), len(summary))
        size = len(body("/v1/fleet", rm))
        figures("GET /v1/fleet (regional manager)", timed(conn, "/v1/fleet", rm, args.requests),
                size)
        size = len(body("/v1/fleet?all=true&limit=100000", admin))
        figures("GET /v1/fleet?all=true (every store)",
                timed(conn, "/v1/fleet?all=true&limit=100000", admin,
                      max(10, args.requests // 10)), size)
        conn.close()
    try:
        print(f"  summary: {data['total']['stores']:,} stores, {data['total']['offline']} "
              f"offline, {data['total']['at_risk']} devices at risk, "
              f"{data['total']['attention']} stores needing attention "
              f"({len(data['stores'])} listed)")
        env = agent_env(EDGE_HUB_URL=f"http://127.0.0.1:{port}", EDGE_HUB_TOKEN=admin)  # cached
        env.pop("EDGE_HUB_DB", None)
        runs = []
        for i in range(args.cli_runs + 1):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "hub", "fleet"], env=env,
                                 capture_output=True, text=True, cwd=ROOT)
            if i:
                runs.append(time.perf_counter() - t0)
            if out.returncode != 0:
                raise SystemExit(f"edge-hub fleet: {out.stderr}")
        print(f"CLI end to end, {args.cli_runs} runs:")
        figures("edge-hub fleet --hub URL (text)", runs)
        base = subprocess.run([sys.executable, "-c", "pass"], capture_output=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True)
        print(f"  (a bare `python -c pass` takes {(time.perf_counter() - t0) * 1000:.0f} ms "
              f"here{'' if base.returncode == 0 else '?'})")
        local_env = dict(env)
        local_env.pop("EDGE_HUB_URL")
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "hub", "fleet", "--db", url, "--json"],
                             env=local_env, capture_output=True, text=True, cwd=ROOT)
        figures("edge-hub fleet --db --json (local, once)", [time.perf_counter() - t0],
                len(out.stdout))
    finally:
        for server in servers:
            server.stop()
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
