"""Benchmark: the agent polling 40 SNMP printers (and 10 ESC/POS) beside prometheus-snmp-exporter.

Both pollers run in the same run against the same snmpsim serving the LibreNMS corpus: the agent
(`edge-agent run`, a real state database, the SNMP collector) polls every printer every
`--interval` seconds; the exporter (Debian's prometheus-snmp-exporter, one module per printer in
its generated format, GETting the same OIDs) is scraped for the same 40 printers at the same
pace. Prints CPU-seconds and RSS of both processes and their ratios; `--record` writes them to
docs/benchmarks.md. Run from the repository root: `python bench/snmp_poll.py [--seconds 120]`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_agent.collectors.snmp import oids, protocol  # noqa: E402
from edge_agent.simulators.snmp import SnmpSimulator, stop_process  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "snmp" / "snmpsim"
DOC = ROOT / "docs" / "benchmarks.md"
EXPORTER = "prometheus-snmp-exporter"
ESCPOS_DEVICES = 10
WARMUP_S = 20.0  # start-up (imports, first walks) is reported apart from the steady state
MARK = "<!-- snmp_poll:{mode}:{edge} -->"


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_exporter() -> str:
    """Return the exporter's path, installing Debian's package when it is missing."""
    found = shutil.which(EXPORTER)
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit(f"{EXPORTER} is missing: apt-get install prometheus-snmp-exporter (as root)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                    "prometheus-snmp-exporter"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    # The package may start a system exporter on :9116; this benchmark runs its own.
    subprocess.run(["systemctl", "stop", "prometheus-snmp-exporter"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return shutil.which(EXPORTER) or sys.exit(f"{EXPORTER} did not install")


def parse_snmprec(path: Path) -> dict:
    raw: dict = {}
    for line in path.read_bytes().splitlines():
        parts = line.split(b"|", 2)
        if len(parts) == 3:
            raw[parts[0].decode().lstrip(".")] = parts[2]
    return raw


def polled_oids(name: str) -> list[str]:
    """The OIDs the agent reads from this printer after its first poll (status and supplies)."""
    layout = protocol.learn(parse_snmprec(CORPUS / f"{name}.snmprec"))
    return layout.status_oids() + layout.supply_oids()


METRICS = (  # (name, column OID, type, index labels) in the generator's output format
    ("sysUpTime", "1.3.6.1.2.1.1.3", "gauge", ()),
    ("hrDeviceStatus", oids.HR_DEVICE_STATUS, "gauge", ("hrDeviceIndex",)),
    ("hrPrinterStatus", oids.HR_PRINTER_STATUS, "gauge", ("hrDeviceIndex",)),
    ("hrPrinterDetectedErrorState", oids.HR_PRINTER_ERROR_STATE, "OctetString",
     ("hrDeviceIndex",)),
    ("prtCoverStatus", oids.PRT_COVER_STATUS, "gauge", ("hrDeviceIndex", "prtCoverIndex")),
    ("prtMarkerSuppliesLevel", oids.PRT_SUPPLY_LEVEL, "gauge",
     ("hrDeviceIndex", "prtMarkerSuppliesIndex")),
    ("prtInputCurrentLevel", oids.PRT_INPUT_CURRENT_LEVEL, "gauge",
     ("hrDeviceIndex", "prtInputIndex")),
    ("prtInputStatus", oids.PRT_INPUT_STATUS, "gauge", ("hrDeviceIndex", "prtInputIndex")),
    ("prtMarkerLifeCount", oids.PRT_MARKER_LIFE_COUNT, "counter",
     ("hrDeviceIndex", "prtMarkerIndex")),
)


def exporter_config(names: list[str], mode: str) -> str:
    """One module per printer (snmp_exporter 0.21 keeps the community in the module).

    mode "walk" is what prometheus-snmp-generator writes for these objects: it walks each
    table column every scrape, since it keeps no memory of a printer's rows. mode "get" is a
    hand-tuned module that GETs exactly the rows the agent reads, which the agent learned and
    the exporter could only know from outside (here: from the recordings).
    """
    lines = ["# Written by bench/snmp_poll.py in snmp_exporter's generated format."]
    for name in names:
        lines.append(f"{json.dumps(name)}:")
        if mode == "get":
            lines.append("  get:")
            lines += [f"  - {oid}" for oid in polled_oids(name)]
        else:
            lines += ["  get:", "  - 1.3.6.1.2.1.1.3.0", "  walk:"]
            lines += [f"  - {oid}" for _, oid, _, indexes in METRICS if indexes]
        lines.append("  metrics:")
        for metric, oid, kind, indexes in METRICS:
            lines += [f"  - name: {metric}", f"    oid: {oid}", f"    type: {kind}",
                      f"    help: {metric}"]
            if indexes:
                lines.append("    indexes:")
                for label in indexes:
                    lines += [f"    - labelname: {label}", "      type: gauge"]
        lines += ["  version: 2", "  max_repetitions: 25", "  retries: 1", "  timeout: 5s",
                  "  auth:", f"    community: {json.dumps(name)}"]
    return "\n".join(lines) + "\n"


def agent_config(state_dir: Path, sim: SnmpSimulator, interval: float,
                 escpos: list[tuple[str, int]]) -> str:
    lines = ["[agent]", 'store = "bench"', f'state_dir = "{state_dir}"', 'log_level = "warning"']
    for i, name in enumerate(sim.names):
        lines += ["", "[[devices]]", f'id = "printer-{i:02d}"', 'kind = "snmp"',
                  f"interval = {interval}", "", "[devices.snmp]", f'host = "{sim.host}"',
                  f"port = {sim.port}", f"community = {json.dumps(sim.community(name))}"]
    for i, (host, port) in enumerate(escpos):
        lines += ["", "[[devices]]", f'id = "receipt-{i:02d}"', 'kind = "escpos"',
                  f"interval = {interval}", "", "[devices.escpos]", f'host = "{host}"',
                  f"port = {port}"]
    return "\n".join(lines) + "\n"


class EscposPrinters:
    """Ten simulated ESC/POS printers on a background loop, when the tree has their simulator."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.sims: list = []

    @staticmethod
    def available() -> bool:
        from edge_agent import collectors

        return (importlib.util.find_spec("edge_agent.simulators.escpos_printer") is not None
                and "escpos" in collectors.names())

    def start(self, count: int) -> list[tuple[str, int]]:
        from edge_agent.simulators.escpos_printer import PrinterSimulator

        self.thread.start()

        async def start_all():
            out = []
            for i in range(count):
                sim = PrinterSimulator(seed=i)
                self.sims.append(sim)
                out.append(await sim.start_tcp("127.0.0.1", 0))
            return out

        return asyncio.run_coroutine_threadsafe(start_all(), self.loop).result(30)

    def stop(self) -> None:
        async def stop_all():
            for sim in self.sims:
                with_stop = getattr(sim, "stop", None)
                if with_stop:
                    await with_stop()

        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(stop_all(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


class Meter:
    """CPU-seconds and RSS of one process, sampled once a second."""

    def __init__(self, name: str, pid: int):
        self.name, self.proc = name, psutil.Process(pid)
        self.rss_max = 0
        self.cpu_at_warmup: float | None = None

    def cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def sample(self) -> None:
        self.rss_max = max(self.rss_max, self.proc.memory_info().rss)


def scrape_loop(port: int, sim: SnmpSimulator, interval: float, stop: threading.Event,
                counts: dict) -> None:
    """Scrape the exporter for every printer every `interval` seconds, as Prometheus would."""
    target = f"{sim.host}:{sim.port}"

    def scrape(name: str) -> None:
        url = f"http://127.0.0.1:{port}/snmp?target={target}&module={name}"
        try:
            with urllib.request.urlopen(url, timeout=interval) as r:
                body = r.read()
            counts["ok"] += 1
            counts["samples"] += body.count(b"\nprt") + body.count(b"\nhr")
        except OSError as err:
            counts["failed"] += 1
            counts.setdefault("first_error", f"{name}: {err}")

    with ThreadPoolExecutor(8) as pool:
        next_at = time.monotonic()
        while not stop.is_set():
            list(pool.map(scrape, sim.names))
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))


def wait_http(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{EXPORTER} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{EXPORTER} did not listen within {timeout:g} s")


def agent_freshness(config: Path) -> tuple[int, int]:
    """(devices with a fresh last reading, devices) from `edge-agent status --json`."""
    done = subprocess.run([sys.executable, "-m", "edge_agent", "status", "--config",
                           str(config), "--json"], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        data = json.loads(done.stdout)
    except ValueError:
        return 0, 0
    devices = data.get("devices", data) if isinstance(data, dict) else data
    fresh = sum(1 for d in devices if isinstance(d, dict) and d.get("stale") is False)
    return fresh, len(devices)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="measured run (default 120)")
    parser.add_argument("--interval", type=float, default=10.0, help="poll interval (default 10)")
    parser.add_argument("--exporter-mode", choices=("walk", "get"), default="walk",
                        help="walk: the generator's module, walking each column every scrape "
                             "(default); get: GET exactly the rows the agent reads")
    parser.add_argument("--record", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args()
    exporter = ensure_exporter()
    work = Path(tempfile.mkdtemp(prefix="bench-snmp-"))
    escpos = EscposPrinters() if EscposPrinters.available() else None
    procs: list[subprocess.Popen] = []
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0, "samples": 0}
    try:
        with SnmpSimulator(CORPUS) as sim:
            names = sim.names
            (work / "snmp.yml").write_text(exporter_config(names, args.exporter_mode))
            web = free_tcp_port()
            log = open(work / "exporter.log", "wb")
            procs.append(subprocess.Popen(
                [exporter, f"--config.file={work / 'snmp.yml'}",
                 f"--web.listen-address=127.0.0.1:{web}", "--log.level=warn"],
                stdout=log, stderr=log))
            wait_http(web, procs[-1])
            escpos_addrs = escpos.start(ESCPOS_DEVICES) if escpos else []
            config = work / "agent.toml"
            config.write_text(agent_config(work / "state", sim, args.interval, escpos_addrs))
            agent_log = open(work / "agent.log", "wb")
            started = time.monotonic()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
                cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=agent_log,
                stderr=agent_log))
            meters = [Meter("agent", procs[1].pid), Meter("exporter", procs[0].pid)]
            exporter_cpu_start = meters[1].cpu()  # its start-up is not part of the run
            scraper = threading.Thread(target=scrape_loop,
                                       args=(web, sim, args.interval, stop, counts))
            scraper.start()
            warmup = min(WARMUP_S, args.seconds / 4)
            while time.monotonic() - started < args.seconds:
                time.sleep(1.0)
                for m in meters:
                    m.sample()
                    if m.cpu_at_warmup is None and time.monotonic() - started >= warmup:
                        m.cpu_at_warmup = m.cpu()
                if procs[1].poll() is not None:
                    sys.exit("the agent exited: " + (work / "agent.log").read_text()[-2000:])
            elapsed = time.monotonic() - started
            stop.set()
            scraper.join()
            cpu = {m.name: m.cpu() for m in meters}
            cpu["exporter"] -= exporter_cpu_start
            steady = {m.name: m.cpu() - m.cpu_at_warmup for m in meters}
            rss = {m.name: m.rss_max for m in meters}
            stop_process(procs[1])
            fresh, devices = agent_freshness(config)
    finally:
        stop.set()
        for p in procs:
            stop_process(p)
        if escpos:
            escpos.stop()
    shutil.rmtree(work, ignore_errors=True)

    steady_s = elapsed - warmup
    per_hour = {k: v / steady_s * 3600 for k, v in steady.items()}
    rows = [
        ("devices", f"{len(names)} SNMP" + (f" + {ESCPOS_DEVICES} ESC/POS" if escpos else ""),
         f"{len(names)} SNMP"),
        (f"CPU-s, whole run ({elapsed:.0f} s, agent start-up included)",
         f"{cpu['agent']:.2f}", f"{cpu['exporter']:.2f}"),
        (f"CPU-s, steady state (last {steady_s:.0f} s)", f"{steady['agent']:.2f}",
         f"{steady['exporter']:.2f}"),
        ("CPU-s per hour, steady state", f"{per_hour['agent']:.0f}",
         f"{per_hour['exporter']:.0f}"),
        ("peak RSS, MB", f"{rss['agent'] / 2**20:.0f}", f"{rss['exporter'] / 2**20:.0f}"),
    ]
    ratio_run = cpu["agent"] / cpu["exporter"] if cpu["exporter"] else float("inf")
    ratio_steady = steady["agent"] / steady["exporter"] if steady["exporter"] else float("inf")
    ratio_rss = rss["agent"] / rss["exporter"] if rss["exporter"] else float("inf")
    table = ["| measure | agent | prometheus-snmp-exporter |", "| --- | --- | --- |"]
    table += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    summary = (f"Ratios agent/exporter: CPU whole run {ratio_run:.2f}, CPU steady state "
               f"{ratio_steady:.2f}, RSS {ratio_rss:.2f}. Exporter scrapes {counts['ok']} ok, "
               f"{counts['failed']} failed; agent devices fresh at the end {fresh}/{devices}.")
    print("\n".join(table))
    print(summary)
    if counts.get("first_error"):
        print("first failed scrape:", counts["first_error"])
    if args.record:
        record(table, summary, args, elapsed)
    return 0


def record(table: list[str], summary: str, args, elapsed: float) -> None:
    cpus = os.cpu_count()
    begin = MARK.format(mode=args.exporter_mode, edge="begin")
    end = MARK.format(mode=args.exporter_mode, edge="end")
    how = {"walk": "walks each table column every scrape, as the module "
                   "prometheus-snmp-generator writes does",
           "get": "GETs exactly the rows the agent reads (a hand-tuned module that knows "
                  "each printer's rows)"}[args.exporter_mode]
    body = [begin, f"### SNMP polling, exporter module `{args.exporter_mode}`", "",
            f"`python bench/snmp_poll.py --seconds {args.seconds:g} --record`, "
            f"{time.strftime('%Y-%m-%d', time.gmtime())}, {platform.machine()} with {cpus} "
            f"cores shared with 7 other engineers' work (so CPU-seconds and RSS, not wall "
            f"time), Python {platform.python_version()}, pysnmp 7, "
            f"prometheus-snmp-exporter 0.21 (Debian). Both poll the same snmpsim (the 40 "
            f"LibreNMS recordings) every {args.interval:g} s in the same run. The exporter "
            f"{how}; the agent reads status every "
            f"poll and supplies, trays and counters every 6th poll (`supplies_every`), after "
            f"learning each printer's rows once.", "", *table, "", summary, end]
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + "\n".join(body) + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(body) + "\n"
    DOC.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
