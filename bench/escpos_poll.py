"""Benchmark: CPU time and memory of polling many ESC/POS printers (simulated, in another process).

Prints figures for docs/benchmarks.md. CPU-seconds and RSS rather than wall time, since the
machine is shared while it runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PRINTERS = int(os.environ.get("BENCH_PRINTERS", "50"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
INTERVAL = 1.0

SERVE = """
import asyncio, json, sys
from edge_agent.simulators.escpos_printer import PrinterSimulator
async def main(n):
    sims, where = [], []
    for i in range(n):
        sim = PrinterSimulator(seed=i)
        if i % 2:
            where.append(["serial", await sim.start_pty()])
        else:
            where.append(["tcp", (await sim.start_tcp())[1]])
        sims.append(sim)
    print(json.dumps(where), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main(int(sys.argv[1])))
"""


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def poll_all(where) -> tuple[int, int, float]:
    from edge_agent.collectors.escpos.config import EscposConfig
    from edge_agent.config import DeviceConfig
    from edge_agent.configschema import load
    from edge_agent.scheduler import Scheduler

    devices = []
    for i, (kind, addr) in enumerate(where):
        table = ({"transport": "tcp", "host": "127.0.0.1", "port": addr} if kind == "tcp"
                 else {"transport": "serial", "device": addr, "baudrate": 19200})
        devices.append(DeviceConfig(id=f"p{i}", kind="escpos", interval=INTERVAL,
                                    options=load(EscposConfig, table)))
    fresh = stale = 0

    def sink(reading, state):
        nonlocal fresh, stale
        if reading.stale:
            stale += 1
        else:
            fresh += 1

    scheduler = Scheduler(sink)
    scheduler.apply(tuple(devices))
    await asyncio.sleep(2.0)  # connections made, GS I asked: measure the steady state
    fresh = stale = 0
    start = cpu()
    await asyncio.sleep(SECONDS)
    used = cpu() - start
    await scheduler.stop()
    return fresh, stale, used


def main() -> None:
    base_rss = rss_mb()
    t0 = cpu()
    import edge_agent.collectors.escpos.collector  # noqa: F401
    import_cpu, import_rss = cpu() - t0, rss_mb() - base_rss
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(PRINTERS)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        where = json.loads(server.stdout.readline())
        fresh, stale, used = asyncio.run(poll_all(where))
    finally:
        server.stdin.close()
        server.wait(10)
    polls = fresh + stale
    print(f"escpos poll: {PRINTERS} simulated printers ({PRINTERS // 2} TCP, "
          f"{PRINTERS - PRINTERS // 2} pty), interval {INTERVAL:g} s, {SECONDS:g} s measured")
    print(f"  polls {polls} ({stale} stale), {used:.2f} CPU-s, "
          f"{used / max(polls, 1) * 1e6:.0f} us CPU per poll (4 DLE EOT exchanges)")
    print(f"  collector import: +{import_rss:.1f} MB RSS, {import_cpu * 1000:.0f} ms CPU; "
          f"agent process max RSS {rss_mb():.1f} MB")


if __name__ == "__main__":
    main()
