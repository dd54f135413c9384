"""`edge-agent demo`: a simulated store (printers, register, scanner, SNMP) with a live status view."""

from __future__ import annotations

import asyncio
import copy
import json
import signal
import sys
import time
from importlib import resources
from pathlib import Path

from edge_common import logs
from edge_agent.config import parse_config
from edge_agent.state.lock import StateLock

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The back printer's story, repeated every cycle: (seconds into the cycle, command, what it is).
BACK_TIMELINE = (
    (6, "cover open", "back printer: cover opened to change the roll (attention, store only)"),
    (10, "cover closed", "back printer: cover closed"),
    (14, "jam", "back printer: cutter jammed, and it stays jammed (failed after 3 polls)"),
    (24, "clear", "back printer: jam cleared by a technician"),
    (30, "sleep", "back printer: power save (its 1 s timer puts it to sleep between polls)"),
    (38, "hang", "back printer: stops answering"),
    (46, "answer", "back printer: answers again"),
)
CYCLE_S = 60.0
# In this part of the cycle the back printer has a short power-save timer: it falls asleep
# between polls, so each poll finds it asleep and wakes it.
DROWSY = (30, 38)
# Front printer: 10 simulated minutes per second; its roll runs near its end after about
# 25 s and out after about 35 s; the demo puts in a new roll 10 s later (roll changes are
# store attention: they never reach the regional feed). Its autocutter has done 92% of its
# rated 2,000,000 cuts (GS g 2 counter 178 says so) and errs more and more as it wears on:
# recoverable errors that clear by themselves, which the model turns into one
# predicted_failure.
FRONT_TIME_SCALE = 600.0
FRONT_PAPER_M_PER_HOUR = 14.0
FRONT_WEAR_PER_HOUR = 0.0
FRONT_CUTS = 1_840_000
FRONT_CUTS_PER_HOUR = 300.0
SNMP_RECORDINGS = ("samsungprinter_m4080fx", "brother", "hpprinter", "epson")
SHOWN = ("printer.paper", "printer.cover", "printer.cutter", "printer.error", "printer.online",
         "device.model", "scanner.connected", "scanner.reads", "scanner.decode_errors",
         "supply.1.level_pct", "host.cpu_pct", "host.mem_pct")


def register(sub) -> None:
    p = sub.add_parser("demo", help="run a simulated store with a live status view",
                       description="Start simulated devices (two ESC/POS printers, on TCP and on "
                                   "a pty; a scanner and SNMP printers when their simulators "
                                   "are installed), run the agent on them with the register, "
                                   "and show every device's state. Ctrl-C stops it.")
    p.add_argument("--state-dir", default=".edge-demo", help="state folder (default .edge-demo)")
    p.add_argument("--seconds", type=float, default=0.0,
                   help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--refresh", type=float, default=2.0, help="seconds between status views")
    p.add_argument("--no-snmp", action="store_true", help="do not start the SNMP simulator")
    # The chain demo (`edge-hub demo`) runs several of these stores against one hub.
    p.add_argument("--store", help="store id (default demo-store)")
    p.add_argument("--region", help="region id (default demo)")
    p.add_argument("--sync", metavar="HOST:PORT",
                   help="sync with a hub's embedded broker there (plain MQTT 3.1.1, no TLS)")
    p.add_argument("--scoring-interval", type=float, metavar="S",
                   help="seconds between health cycles, which raise the alerts (default 60)")
    p.add_argument("--trust", action="append", metavar="KEY",
                   help="a hub public key to pin in [trust] (the chain demo's signed commands)")
    p.add_argument("--quiet", action="store_true",
                   help="print the store's events one a line instead of the status view")
    p.set_defaults(func=run)


def sync_address(text: str) -> tuple[str, int]:
    """Parse --sync HOST:PORT; raise ConfigError naming what is wrong."""
    from edge_agent.errors import ConfigError

    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--sync: expected HOST:PORT, got {text!r}")
    return host, int(port)


def apply_options(data: dict, args) -> dict:
    """Put the store, region, sync and scoring options into the demo's config."""
    agent = data.setdefault("agent", {})
    agent["state_dir"] = args.state_dir
    if getattr(args, "store", None):
        agent["store"] = args.store
    if getattr(args, "region", None):
        agent["region"] = args.region
    if getattr(args, "sync", None):
        host, port = sync_address(args.sync)
        # The hub's embedded broker (amqtt) speaks MQTT 3.1.1 only, without TLS; reconnect
        # fast, since on one machine the hub is a moment away.
        data["sync"] = {"enabled": True, "host": host, "port": port, "tls": False,
                        "mqtt_version": "3.1.1", "reconnect_min": 0.2, "reconnect_max": 2.0}
    if getattr(args, "trust", None):
        data["trust"] = {"hub_keys": list(args.trust)}
    if getattr(args, "scoring_interval", None) is not None:
        data.setdefault("scoring", {})["interval"] = args.scoring_interval
    return data


def base_config() -> dict:
    """Return the embedded demo.toml as parsed TOML."""
    text = resources.files("edge_agent.defaults").joinpath("demo.toml").read_text()
    return tomllib.loads(text)


def run(args) -> int:
    from edge_agent.errors import ConfigError

    if args.seconds < 0 or not args.refresh > 0:
        raise ConfigError("--seconds must be >= 0 and --refresh > 0")
    if getattr(args, "sync", None):
        sync_address(args.sync)
    if getattr(args, "scoring_interval", None) is not None and not args.scoring_interval > 0:
        raise ConfigError("--scoring-interval must be > 0")
    logs.setup("text", "error")
    # Until the agent installs its own handlers, SIGTERM (the chain demo stopping a store that
    # is still starting) unwinds like Ctrl-C, so the simulators' processes are stopped too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    lock = StateLock(args.state_dir)
    lock.acquire()
    try:
        return asyncio.run(Demo(args).run())
    except KeyboardInterrupt:
        return 0
    finally:
        lock.release()


class Demo:
    """The simulated store: its simulators, the agent on them, and the view."""

    def __init__(self, args):
        self.args = args
        self.sims: list = []
        self.events: list[str] = []
        self.notes: list[str] = []
        self.front = self.back = self.scanner = None
        self.store = "demo-store"

    async def run(self) -> int:
        from edge_agent.agent import Agent

        try:
            data = await self.start_simulators()
            config = parse_config(data, "demo (generated)")
            Path(self.args.state_dir, "demo-agent.toml").write_text(to_toml(data))
            agent = Agent(config)
            runner = asyncio.create_task(agent.run())
            story = asyncio.create_task(self.story())
            try:
                await self.view(agent, runner)
            finally:
                agent.request_stop()
                story.cancel()
                await asyncio.gather(runner, story, return_exceptions=True)
            return runner.result() if runner.done() and not runner.cancelled() \
                and runner.exception() is None else 0
        finally:
            await self.stop_simulators()

    async def start_simulators(self) -> dict:
        """Start every simulator available; return the agent config with their addresses."""
        from edge_agent.simulators.escpos_printer import Identity, PrinterSimulator

        data = apply_options(base_config(), self.args)
        self.store = data["agent"]["store"]
        devices = {d["id"]: d for d in data["devices"]}

        self.front = PrinterSimulator(Identity(model="TM-T88VI", serial="FRONT01"), seed=1,
                                      time_scale=FRONT_TIME_SCALE)
        self.front.engine.wear.paper_m_per_hour = FRONT_PAPER_M_PER_HOUR
        self.front.engine.wear.near_end_m = 25.0
        self.front.engine.wear.wear_per_hour = FRONT_WEAR_PER_HOUR
        self.front.engine.wear.cuts = FRONT_CUTS
        self.front.engine.wear.cuts_per_hour = FRONT_CUTS_PER_HOUR
        self.sims.append(self.front)
        _, port = await self.front.start_tcp("127.0.0.1", 0)
        devices["receipt-front"]["escpos"]["port"] = port

        self.back = PrinterSimulator(Identity(model="TM-T20III", firmware="10.02",
                                              serial="BACK01"), seed=2)
        self.sims.append(self.back)
        devices["receipt-back"]["escpos"]["device"] = await self.back.start_pty()

        await self._add_scanner(data)
        if not self.args.no_snmp:
            await self._add_snmp(data)
        return data

    async def _add_scanner(self, data: dict) -> None:
        try:
            from edge_agent.simulators.scanner import ScannerSimulator
        except ImportError:
            self.notes.append("no scanner simulator in this build")
            return
        try:
            sim = ScannerSimulator(vendor="honeywell")
        except TypeError:
            sim = ScannerSimulator()
        path = await sim.start()
        self.sims.append(sim)
        self.scanner = sim
        device = {"id": "scanner-lane-1", "kind": "scanner", "interval": 2.0,
                  "scanner": {"port": path, "heartbeat": "honeywell"}}
        self._add_device(data, device, fallback={"port": path})

    async def _add_snmp(self, data: dict) -> None:
        try:
            from edge_agent.simulators.snmp import SnmpSimulator
        except ImportError:
            self.notes.append("no SNMP simulator in this build")
            return
        folder = _recordings()
        if folder is None:
            self.notes.append("SNMP: no .snmprec recordings found")
            return
        available = {p.stem for p in folder.glob("*.snmprec")}
        names = [n for n in SNMP_RECORDINGS if n in available][:2] or sorted(available)[:2]
        try:
            sim = SnmpSimulator(folder, names)
            host, port = await asyncio.wait_for(sim.start(), 30)
        except Exception as err:  # noqa: BLE001 - a demo extra; say why and go on without it
            self.notes.append(f"SNMP simulator did not start: {err}")
            return
        self.sims.append(sim)
        for i, name in enumerate(names, 1):
            device = {"id": f"laser-{i}", "kind": "snmp", "interval": 5.0,
                      "snmp": {"host": host, "port": port, "community": sim.community(name)}}
            self._add_device(data, device)

    def _add_device(self, data: dict, device: dict, fallback: dict | None = None) -> None:
        """Add a device if its collector exists here and its table is valid; else note why."""
        from edge_agent import collectors
        from edge_agent.config import load_device

        if device["kind"] not in collectors.names():
            self.notes.append(f"{device['id']}: no {device['kind']} collector in this build")
            return
        for table in (device[device["kind"]], fallback):
            if table is None:
                continue
            candidate = copy.deepcopy(device)
            candidate[device["kind"]] = table
            problems: list = []
            if load_device(candidate, "demo", problems) is not None:
                data["devices"].append(candidate)
                return
        self.notes.append(f"{device['id']}: {'; '.join(str(p) for p in problems)}")

    async def stop_simulators(self) -> None:
        for sim in reversed(self.sims):
            try:
                await asyncio.wait_for(sim.stop(), 5)
            except Exception:  # noqa: BLE001 - stopping what may already be gone
                pass
        self.sims.clear()

    async def story(self) -> None:
        """Play the store's events: the back printer's faults, scans, a new roll in front."""
        started = time.monotonic()
        done: set[tuple[int, int]] = set()
        scans = 0
        while True:
            await asyncio.sleep(0.5)
            elapsed = time.monotonic() - started
            cycle, t = divmod(elapsed, CYCLE_S)
            for at, command, what in BACK_TIMELINE:
                if t >= at and (int(cycle), at) not in done:
                    done.add((int(cycle), at))
                    self.back.command(command)
                    self.event(what)
            self.back.engine.sleep_after_s = 1.0 if DROWSY[0] <= t < DROWSY[1] else None
            front = self.front.engine
            if front.paper == "out" and (int(cycle), -1) not in done:
                done.add((int(cycle), -1))
                self.front_out_at = elapsed
                self.event("front printer: out of paper")
            if getattr(self, "front_out_at", None) and elapsed - self.front_out_at > 10:
                self.front_out_at = None
                front.set_paper("ok")
                self.event("front printer: new roll put in")
            if self.scanner is not None and int(elapsed / 2) > scans:
                scans = int(elapsed / 2)
                try:
                    if scans % 7 == 0 and hasattr(self.scanner, "malformed"):
                        self.scanner.malformed()
                    elif hasattr(self.scanner, "scan"):
                        self.scanner.scan()
                except Exception:  # noqa: BLE001 - an unplugged simulated scanner
                    pass

    def event(self, what: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {what}")
        del self.events[:-6]
        if self.args.quiet:
            print(f"[{self.store}] {self.events[-1]}", flush=True)

    async def view(self, agent, runner: asyncio.Task) -> None:
        """Print the status table every refresh until the agent stops or time is up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.args.seconds if self.args.seconds > 0 else None
        tty = sys.stdout.isatty()
        while not runner.done():
            wait = self.args.refresh
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - loop.time()))
            await asyncio.wait({runner}, timeout=wait)
            if agent.scheduler is not None and not self.args.quiet:
                print(("\x1b[H\x1b[2J" if tty else "") + self.render(agent), flush=True)
            if deadline is not None and loop.time() >= deadline:
                return

    def render(self, agent) -> str:
        """The live view: one row per device, the last events, the outbox figures."""
        from edge_agent.cli.output import table

        rows = []
        now = time.monotonic()
        for st in sorted(agent.scheduler.states(), key=lambda s: s.device.id):
            last = st.last
            values = dict(last.values) if last else {}
            status = values.get("device.status", "-")
            if last is None:
                status = "starting"
            elif st.is_stale(now) and not last.stale:
                status = "stale"
            shown = ", ".join(f"{k.split('.', 1)[1]}={_short(values[k])}" for k in SHOWN
                              if k in values)
            latency = values.get("poll.latency_ms")
            rows.append((st.device.id, st.device.kind, status, shown or "-",
                         f"{latency:.0f}" if isinstance(latency, (int, float)) else "-",
                         (last.reason if last is not None and last.stale else "") or ""))
        head = (f"edge-agent demo: store {agent.config.agent.store}, "
                f"{len(rows)} devices, state in {agent.config.agent.state_dir} "
                f"(config: demo-agent.toml). Ctrl-C stops.")
        lines = [head, "", table(("device", "kind", "status", "values", "ms", "why"), rows), ""]
        lines += ["events:"] + [f"  {e}" for e in self.events[-6:]] if self.events else []
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"-- {json.dumps(agent.summary())}")
        return "\n".join(lines)


def _short(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _recordings() -> Path | None:
    """Find the SNMP recordings shipped with the source tree, if any."""
    import edge_agent

    root = Path(edge_agent.__file__).resolve().parent
    for folder in (root / "simulators" / "recordings", root.parent / "tests" / "fixtures" /
                   "snmp" / "snmpsim"):
        if folder.is_dir() and any(folder.glob("*.snmprec")):
            return folder
    return None


def to_toml(data: dict) -> str:
    """Write the demo's generated config as TOML (the subset it uses: tables, arrays of tables,
    strings, numbers, booleans and arrays of strings)."""
    def scalar(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return json.dumps(str(v))

    out = ["## Generated by `edge-agent demo` with the simulators' real addresses."]
    for name, section in data.items():
        if name == "devices":
            continue
        out += ["", f"[{name}]"] + [f"{k} = {scalar(v)}" for k, v in section.items()]
    for device in data.get("devices", []):
        out += ["", "[[devices]]"]
        tables = {k: v for k, v in device.items() if isinstance(v, dict)}
        out += [f"{k} = {scalar(v)}" for k, v in device.items() if k not in tables]
        for k, v in tables.items():
            out += ["", f"[devices.{k}]"] + [f"{kk} = {scalar(vv)}" for kk, vv in v.items()]
    return "\n".join(out) + "\n"
