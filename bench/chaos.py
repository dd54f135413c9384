"""Fault figures (issue 15): agent kills, a long broker outage, the hub down and its database
restarted, a week offline, a soak.

    python bench/chaos.py kills [--count 200] [--seed N]
    python bench/chaos.py broker-down [--outage 1800]
    python bench/chaos.py hub-db [--stores 3] [--cycles 5] [--outage 20] [--seed 15]
    python bench/chaos.py outbox-week [--days 7] [--budget-mb 50]
    python bench/chaos.py soak [--minutes 20 | --hours 24]

Run outside `make test` (each takes minutes); each prints its figures and conditions, and exits
1 if an invariant broke (a lost or duplicated row, a failed integrity check, a dropped alert).
Real parts throughout: `edge-agent run` processes, Mosquitto (tests/brokers.py), `edge-hub
serve` on SQLite (tests/hubkit.py), the agent's own outbox code. The figures are recorded, with
their conditions, in docs/reliability.md.

kills        SIGKILL a real agent (10 host devices every 50 ms, commits every 50 ms, sync on to
             a broker and a hub) at a random instant of each run, from start-up on; after each
             kill `PRAGMA integrity_check` must say ok, and every row seen committed (read-only,
             just before the kill) must be in the outbox unchanged or acknowledged. At the end a
             clean run drains the outbox, and the hub must hold every seq 1..last_seq exactly
             once, each with the id the outbox gave it: 0 rows lost, 0 duplicates.
broker-down  tests/e2e/test_long_outage.py's LongOutage scenario with the outage set by --outage:
             a real agent polling two simulated printers and the register, deciding and
             alerting while the broker is down, then every assertion of that test (every
             alert and decision delivered once, in seq order). Acceleration: the agent runs a
             health cycle every 2 s (30 times a store's 60 s) and polls every 2-5 s.
hub-db       the hub down and its PostgreSQL restarted mid-stream: --stores real agents (5 host
             devices every 0.1 s, commits every 0.1 s, 5 readings an envelope) stream through
             Mosquitto into `edge-hub serve` on a PRIVATE PostgreSQL server (initdb in a
             temporary folder, pg_ctl on a free port, fsync on; tests/support/pgcluster.py;
             the machine's shared server is never touched), kept running by a supervisor
             thread as systemd would (a hub that exits is started again after 1 s). Each
             cycle, at random instants while the agents keep committing: (1) the hub SIGKILLed,
             the server crashed (`pg_ctl stop -m immediate`), down for up to --outage s,
             started, the hub started; (2) the server restarted (`-m fast`) under the running
             hub; (3) the server crashed under the running hub for up to --outage s; (4) the hub
             SIGKILLed and started again while the server is down (it must exit in one line and
             be restarted until the server is back). After each fault: the seconds until the
             hub holds every store's rows committed by then. At the end the agents stop, drain,
             and every committed seq must be at the hub exactly once; no row quarantined, no
             traceback in the hub's log. Prints restarts, reconnections and error lines.
outbox-week  the agent's Outbox (edge_agent/outbox.py, a real SQLite file) through --days of a
             store offline, in accelerated time (its clock is the simulation's): 50 devices
             polled every 10 s, committed every 30 s (150 readings an envelope), an alert
             raised and cleared every 30 min, a decision every 6 h per device, the budget loop
             every 60 s, against a --budget-mb outbox. Every alert and decision must be kept;
             every drop counted, and reported in outbox_drops events whose totals match.
soak         a real agent with 50 host devices every 0.2 s (50 times a store's 10 s), commits
             every 0.2 s, scoring every 10 s (6 times), sync to a broker and a hub, for
             --minutes (or --hours of simulated polling: 24 h is 28.8 min); RSS sampled
             every second: growth = median of the last tenth minus the
             median of the second tenth (after warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support"), str(ROOT / "tests" / "e2e"),
                str(ROOT / "bench")]

from agentproc import AgentProcess, host_config, outbox_rows, read_only  # noqa: E402
from brokers import Mosquitto  # noqa: E402
from hubkit import HubProcess  # noqa: E402

PATIENCE_S = 120.0


def wait(predicate, what: str, timeout: float = PATIENCE_S, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(every)


def sync_section(broker: Mosquitto) -> str:
    return ("[sync]\nenabled = true\n"
            f'host = "{broker.host}"\nport = {broker.port}\ntls = false\n'
            "reconnect_min = 0.05\nreconnect_max = 0.5\nconnect_timeout = 5.0\n")


def hub_rows(db: str, store: str) -> list[tuple[str, int, str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT id, seq, kind FROM messages WHERE store = ?",
                            (store,)).fetchall()
    finally:
        conn.close()


def integrity_ok(db_path: Path) -> bool:
    if not db_path.exists():
        return True
    db = read_only(db_path)
    try:
        return db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()


def last_seq(db_path: Path) -> int:
    db = read_only(db_path)
    try:
        return int(db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0])
    finally:
        db.close()


# --- kills --------------------------------------------------------------------------------------

def kills(args) -> int:
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    folder = Path(tempfile.mkdtemp(prefix="chaos-kills-"))
    broker = Mosquitto(folder / "broker").start()
    hub_db = str(folder / "hub.db")
    hub = HubProcess(broker, hub_db, "hub-chaos", log_path=folder / "hub.log").start()
    state = folder / "state"
    config = folder / "agent.toml"
    config.write_text(host_config(
        state, devices=10, interval=0.05, flush=0.05,
        extra="batch_max = 5\n\n[scoring]\nenabled = false\n\n" + sync_section(broker),
        device_extra="jitter = 0.0"))
    db_path = state / "agent.db"
    committed: dict[int, str] = {}  # seq -> id of every row seen committed
    problems: list[str] = []
    integrity_checks = 0
    runs_with_commits = 0
    started = time.monotonic()
    try:
        hub.wait_connected()
        for run in range(args.count):
            agent = AgentProcess(config, folder / "agent.log")
            before = max(committed, default=0)
            try:
                time.sleep(rng.uniform(0.0, 2.0))  # start-up, first commits, sync: anywhere
                seen = outbox_rows(db_path)
            finally:
                agent.kill()
            after = outbox_rows(db_path)
            integrity_checks += 1
            if not integrity_ok(db_path):
                problems.append(f"run {run}: integrity_check failed")
            for seq, (env_id, payload) in seen.items():
                if seq in after and after[seq] != (env_id, payload):
                    problems.append(f"run {run}: row {seq} changed after the kill")
                if committed.get(seq, env_id) != env_id:
                    problems.append(f"run {run}: seq {seq} reused with another id")
                committed[seq] = env_id
            for seq, (env_id, _) in after.items():
                if committed.get(seq, env_id) != env_id:
                    problems.append(f"run {run}: seq {seq} reused with another id")
                committed[seq] = env_id
            if db_path.exists() and last_seq(db_path) > before:
                runs_with_commits += 1
            if (run + 1) % 20 == 0:
                print(f"  {run + 1} kills, last seq {last_seq(db_path) if db_path.exists() else 0}"
                      f", {len(problems)} problem(s)", flush=True)
        # A clean run drains what is left; then every committed row must be at the hub once.
        agent = AgentProcess(config, folder / "agent.log")
        try:
            wait(lambda: db_path.exists() and last_seq(db_path) > max(committed, default=0),
                 "a commit in the final run")
            agent.signal(15)
            code = agent.wait()
        finally:
            agent.kill()
        final_last = last_seq(db_path)
        left = outbox_rows(db_path)
        # Drain what the final run left (its last commits) with one more short run.
        if left:
            agent = AgentProcess(config, folder / "agent.log")
            try:
                wait(lambda: not (set(outbox_rows(db_path)) & set(left)), "the outbox drained")
                agent.signal(15)
                agent.wait()
            finally:
                agent.kill()
            final_last = last_seq(db_path)
            left = outbox_rows(db_path)
        wait(lambda: {s for _, s, k in hub_rows(hub_db, "kill-test") if k not in
                      ("birth", "death")} >= set(range(1, final_last + 1)) - set(left),
             "every committed row at the hub", timeout=180)
        rows = [(i, s) for i, s, k in hub_rows(hub_db, "kill-test") if k not in ("birth", "death")]
    finally:
        hub.terminate()
        broker.stop()
    seqs = [s for _, s in rows]
    duplicates = len(seqs) - len(set(seqs))
    lost = sorted(set(range(1, final_last + 1)) - set(seqs) - set(left))
    wrong_id = [s for i, s in rows if s in committed and committed[s] != i]
    elapsed = time.monotonic() - started
    print(f"kills: {args.count} SIGKILLs (seed {seed}) in {elapsed:.0f} s; {runs_with_commits} "
          f"runs committed rows; last seq {final_last}; rows at the hub {len(rows)}; "
          f"lost {len(lost)}; duplicates {duplicates}; other ids {len(wrong_id)}; "
          f"integrity_check ok {integrity_checks - sum('integrity' in p for p in problems)}"
          f"/{integrity_checks}; left in the outbox {len(left)}; final exit {code}")
    for p in problems[:20]:
        print("  problem:", p)
    print(f"  folder {folder}")
    return 1 if problems or lost or duplicates or wrong_id else 0


# --- the hub down and its database restarted mid-stream ---------------------------------------

class Supervisor:
    """Keeps one `edge-hub serve` running as systemd's Restart= would (after 1 s, not 5): a
    hub that exits on its own is started again, and counted."""

    def __init__(self, broker, url: str, log_path: Path):
        self.broker, self.url, self.log_path = broker, url, log_path
        self.hub: HubProcess | None = None
        self.starts = 0
        self.exits: list[int] = []   # exit codes of hubs that stopped on their own
        self.paused = threading.Event()  # set while the bench has killed the hub on purpose
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> "Supervisor":
        self._start_hub()
        self._thread.start()
        return self

    def _start_hub(self) -> None:
        with self._lock:
            self.hub = HubProcess(self.broker, self.url, "hub-chaos-pg",
                                  log_path=self.log_path).start()
            self.starts += 1

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                if self.paused.is_set():
                    continue
                code = self.hub.proc.poll()
                if code is not None:
                    self.exits.append(code)
            if code is not None:
                time.sleep(1.0)  # RestartSec
                if not (self._stop.is_set() or self.paused.is_set()):
                    self._start_hub()

    def kill_hub(self) -> None:
        """SIGKILL the hub and keep it down until resume()."""
        with self._lock:
            self.paused.set()
            self.hub.kill()

    def resume(self) -> None:
        self._start_hub()
        self.paused.clear()

    def wait_ready(self, timeout: float = PATIENCE_S) -> None:
        """Wait for a hub's READY line (the supervisor may start several meanwhile)."""
        def ready():
            hub = self.hub
            return hub.proc.poll() is None and hub.ready_lines()

        wait(ready, "a hub READY", timeout)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.hub.terminate()


def hub_db_restart(args) -> int:
    import psycopg
    from pgcluster import PgCluster, binaries_missing

    missing = binaries_missing()
    if missing:
        print(f"hub-db: cannot run: {missing}")
        return 2
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="chaos-hub-db-"))
    os.chmod(folder, 0o755)
    pg = PgCluster(folder / "pg").init().start()  # fsync on: acknowledged means durable
    url = pg.create_database("hub")
    broker = Mosquitto(folder / "broker").start()
    hub_log = folder / "hub.log"
    sup = Supervisor(broker, url, hub_log).start()
    stores = [f"chaos-pg-{i}" for i in range(args.stores)]
    agents: dict[str, AgentProcess] = {}
    configs: dict[str, Path] = {}
    for name in stores:
        config = folder / f"{name}.toml"
        config.write_text(host_config(
            folder / name, devices=5, interval=0.1, flush=0.1,
            extra="batch_max = 5\n\n[scoring]\nenabled = false\n\n" + sync_section(broker),
            device_extra="jitter = 0.0").replace('store = "kill-test"', f'store = "{name}"'))
        configs[name] = config

    def db_of(name: str) -> Path:
        return folder / name / "agent.db"

    def at_hub() -> dict[str, list[int]] | None:
        """Every store's telemetry/event seqs in the hub's messages table (None: db away)."""
        try:
            with psycopg.connect(url, connect_timeout=5) as conn:
                out: dict[str, list[int]] = {name: [] for name in stores}
                for store, seq in conn.execute(
                        "SELECT store, seq FROM messages WHERE kind NOT IN ('birth', 'death')"):
                    out.setdefault(store, []).append(seq)
                return out
        except psycopg.OperationalError:
            return None

    def caught_up(marks: dict[str, int]) -> bool:
        """The hub holds every store's messages up to the seq it had committed at `marks`
        (each agent sends in seq order, so its highest seq at the hub says how far it got)."""
        try:
            with psycopg.connect(url, connect_timeout=5) as conn:
                top = dict(conn.execute("SELECT store, max(seq) FROM messages GROUP BY store"))
        except psycopg.OperationalError:
            return False
        return all(top.get(n, 0) >= marks[n] for n in stores)

    def marks_now() -> dict[str, int]:
        return {name: last_seq(db_of(name)) for name in stores}

    events: list[str] = []
    recoveries: list[tuple[str, float, float]] = []  # (what, down s, seconds to catch up)
    started = time.monotonic()
    try:
        sup.wait_ready()
        for name in stores:
            agents[name] = AgentProcess(configs[name], folder / f"{name}.log")
        for agent in agents.values():
            agent.wait_ready()
        wait(lambda: caught_up({n: 1 for n in stores}), "every store's first rows at the hub")
        scenarios = ["hub-killed+db-crash", "db-restart-under-hub", "db-crash-under-hub",
                     "hub-killed+db-down-at-start"]
        plan = [(cycle, what) for cycle in range(args.cycles) for what in scenarios]
        if args.long_outage:
            scenarios.append("long-db-outage-under-hub")
            plan.append((args.cycles - 1, "long-db-outage-under-hub"))
        for cycle, what in plan:
            time.sleep(rng.uniform(1.0, 3.0))  # mid-stream: the agents never stop
            outage = rng.uniform(args.outage / 2, args.outage)
            t0 = time.monotonic()
            if what == "hub-killed+db-crash":
                sup.kill_hub()
                pg.stop("immediate")
                time.sleep(outage)
                pg.start()
                sup.resume()
            elif what == "db-restart-under-hub":
                pg.restart("fast")
            elif what == "db-crash-under-hub":
                pg.stop("immediate")
                time.sleep(outage)
                pg.start()
            elif what == "hub-killed+db-down-at-start":
                # The hub (re)started while its database is down: it exits, restarts.
                sup.kill_hub()
                pg.stop("fast")
                sup.resume()
                time.sleep(outage)
                pg.start()
            else:  # down longer than the writer's give-up (120 s) under a running hub
                pg.stop("immediate")
                time.sleep(args.long_outage)
                pg.start()
            down = time.monotonic() - t0
            marks = marks_now()
            t1 = time.monotonic()
            wait(lambda: caught_up(marks), f"ingest resumed after {what}", timeout=300,
                 every=0.2)
            recoveries.append((what, down, time.monotonic() - t1))
            events.append(f"cycle {cycle + 1} {what}: down {down:.1f} s, caught up in "
                          f"{recoveries[-1][2]:.1f} s")
            print("  " + events[-1], flush=True)
        time.sleep(2.0)
        # Stop the stores, then let each drain what it holds with one more run that polls
        # once (one device, hourly): it commits one reading and sends everything.
        for agent in agents.values():
            agent.stop()
        for name in stores:
            before = last_seq(db_of(name))
            drain = folder / f"{name}-drain.toml"
            drain.write_text(configs[name].read_text().split("[[devices]]")[0]
                             + '[[devices]]\nid = "h0"\nkind = "host"\ninterval = 3600\n')
            agent = AgentProcess(drain, folder / f"{name}.log")
            try:
                wait(lambda: last_seq(db_of(name)) > before and not outbox_rows(db_of(name)),
                     f"{name}'s outbox drained")
            finally:
                agent.stop()
        final = marks_now()
        left = {name: set(outbox_rows(db_of(name))) for name in stores}
        wait(lambda: (lambda seen: seen is not None and all(
            set(seen[n]) >= set(range(1, final[n] + 1)) - left[n] for n in stores))(at_hub()),
            "every committed row at the hub", timeout=300, every=1.0)
        seen = at_hub()
        hub_code = sup.stop()
    finally:
        for agent in agents.values():
            agent.kill()
        sup._stop.set()
        if sup.hub is not None:
            sup.hub.kill()
        broker.stop()
    log_lines = [json.loads(line) for line in hub_log.read_text().splitlines()
                 if line.startswith("{")]
    reconnects = sum(1 for line in log_lines if line.get("msg") == "reconnected to the hub database")
    tracebacks = sum(1 for line in log_lines if "exc" in line)
    errors = sum(1 for line in log_lines if line.get("level") in ("error", "critical"))
    startup_refusals = sum(1 for line in hub_log.read_text().splitlines()
                           if line.startswith("edge-hub: cannot connect to the hub database"))
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    finally:
        pg.destroy()
    lost = {n: sorted(set(range(1, final[n] + 1)) - set(seen[n]) - left[n]) for n in stores}
    dups = {n: len(seen[n]) - len(set(seen[n])) for n in stores}
    total = sum(len(v) for v in seen.values())
    elapsed = time.monotonic() - started
    print(f"hub-db: {args.stores} agents, {args.cycles} cycles of 4 faults "
          f"(+{len(plan) - 4 * args.cycles} long) in "
          f"{elapsed:.0f} s (outages {args.outage / 2:.0f}-{args.outage:.0f} s); committed "
          f"{sum(final.values())} messages, at the hub {total}; lost "
          f"{sum(len(v) for v in lost.values())}; duplicates {sum(dups.values())}; quarantined "
          f"{quarantined}; left in outboxes {sum(len(v) for v in left.values())}")
    print(f"  hub starts {sup.starts}: the first, {2 * args.cycles} after a SIGKILL by the "
          f"bench, {len(sup.exits)} by the supervisor after the hub exited (codes "
          f"{sorted(set(sup.exits))}); "
          f"start-ups refused (database down, one line each) {startup_refusals}; database "
          f"server starts {pg.starts}; hub reconnections to the database {reconnects}; hub "
          f"error lines {errors}; tracebacks {tracebacks}; final hub exit {hub_code}")
    for what in scenarios:
        times = [r for r in recoveries if r[0] == what]
        if not times:
            continue
        print(f"  {what}: down {statistics.mean(t[1] for t in times):.1f} s on average, "
              f"ingest caught up {statistics.mean(t[2] for t in times):.1f} s after "
              f"(max {max(t[2] for t in times):.1f} s)")
    print(f"  folder {folder}")
    bad = sum(len(v) for v in lost.values()) or sum(dups.values()) or quarantined or tracebacks
    return 1 if bad or hub_code != 0 else 0


# --- broker down ----------------------------------------------------------------------------------

def broker_down(args) -> int:
    import test_long_outage as lo

    lo.OUTAGE_S = args.outage
    folder = Path(tempfile.mkdtemp(prefix="chaos-broker-down-"))
    stop = threading.Event()
    started = time.monotonic()
    facts = lo.LongOutage(folder, stop).run()

    class Done:
        def result(self, timeout=None):
            return facts

    verdict = "every assertion of the long-outage test holds"
    code = 0
    try:
        lo.test_long_outage_every_committed_alert_and_decision_reaches_the_hub_once_in_seq_order(
            Done())
    except AssertionError as err:
        verdict, code = f"FAILED: {err}", 1
    critical = [m for m in facts["hub_messages"] if m[2] in ("alert", "decision")]
    print(f"broker-down: broker down {facts['restart'] - facts['kill']:.0f} s "
          f"(asked {args.outage} s); rows committed during the outage "
          f"{len(facts['outage_rows'])} alerts/decisions, last seq {facts['last_seq']}; "
          f"alerts and decisions at the hub {len(critical)}; run {time.monotonic() - started:.0f}"
          f" s: {verdict}")
    print(f"  folder {folder}")
    return code


# --- a week offline against the outbox budget -----------------------------------------------

class SimClock:
    def __init__(self, start: float):
        self.now = start

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


def outbox_week(args) -> int:
    from edge_agent import outbox as ob_mod
    from edge_agent.outbox import Budget, Outbox
    from edge_agent.state import db as statedb

    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    folder = Path(tempfile.mkdtemp(prefix="chaos-week-", dir=shm))
    clock = SimClock(time.time())
    ob_mod.time = clock  # the outbox's clock is the simulation's (created, ages, pacing)
    db = statedb.connect(folder / "agent.db")
    budget = Budget(max_bytes=int(args.budget_mb * 1024 * 1024), max_age_s=7 * 86400.0)
    ob = Outbox(db, "chaos-week", "r1", budget)
    reading = {"device": "printer-00", "kind": "snmp", "ts": "2026-12-05T06:00:00.000Z",
               "values": {"device.status": "ok", "printer.paper": "ok", "poll.errors": 0,
                          "poll.latency_ms": 12.5, "supply.toner_pct": 55},
               "stale": False, "reason": None}
    telemetry = {"readings": [dict(reading, device=f"printer-{i % 50:02d}") for i in range(150)]}
    end = clock.now + args.days * 86400
    sent = {"telemetry": 0, "alert": 0, "decision": 0}
    alert_ids, decision_ids = [], []
    next_alert = clock.now + 1800
    next_decision = clock.now + 6 * 3600 / 50
    next_budget = clock.now + 60
    started = time.monotonic()
    n = 0
    while clock.now < end:
        clock.now += 30.0
        items = [("telemetry", telemetry)]
        sent["telemetry"] += 1
        if clock.now >= next_alert:
            for state in ("raised", "cleared"):
                items.append(("alert", {"alert": "printer-07:paper_out", "device": "printer-07",
                                        "what": "paper_out", "state": state,
                                        "severity": "critical", "since": reading["ts"],
                                        "ts": reading["ts"], "explanation": [],
                                        "decision": None}))
                sent["alert"] += 1
            next_alert += 1800
        while clock.now >= next_decision:
            items.append(("decision", {"device": "printer-03", "decision": "watch",
                                       "previous": "ok", "score": 0.5, "threshold": 0.78,
                                       "model": "m", "features": {}, "explanation": [],
                                       "ts": reading["ts"]}))
            sent["decision"] += 1
            next_decision += 6 * 3600 / 50
        for row in ob.enqueue_many(items):
            (alert_ids if row.kind == "alert" else decision_ids if row.kind == "decision"
             else []).append(row.id)
        if clock.now >= next_budget:
            ob.enforce_budget(clock.now)
            next_budget += 60
        n += 1
        if n % 2000 == 0:
            print(f"  day {(clock.now - (end - args.days * 86400)) / 86400:.2f}, "
                  f"{ob.stats(clock.now)['bytes'] / 1e6:.1f} MB", flush=True)
    clock.now += 3600  # the pending drops are reported at the next budget check
    ob.enforce_budget(clock.now)
    stats = ob.stats(clock.now)
    kept = {kind: {r[0] for r in db.execute("SELECT id FROM outbox WHERE kind = ?", (kind,))}
            for kind in ("alert", "decision")}
    events = [json.loads(p)["body"] for (p,) in db.execute(
        "SELECT payload FROM outbox WHERE kind = 'event' ORDER BY seq")]
    drops = stats["drops"]
    reported = events[-1]["total"] if events else {}
    db.close()
    problems = []
    if kept["alert"] != set(alert_ids):
        problems.append(f"{len(set(alert_ids) - kept['alert'])} alert(s) dropped")
    if kept["decision"] != set(decision_ids):
        problems.append(f"{len(set(decision_ids) - kept['decision'])} decision(s) dropped")
    if reported != drops:
        problems.append(f"the last outbox_drops event says {reported}, the drops table {drops}")
    if stats["bytes"] > budget.max_bytes + 4096:
        problems.append(f"the outbox holds {stats['bytes']} bytes, over its budget")
    telemetry_left = stats["classes"]["telemetry"]["rows"]
    dropped_t = drops.get("telemetry", {}).get("count", 0)
    if telemetry_left + dropped_t != sent["telemetry"]:
        problems.append("telemetry kept + dropped != committed")
    print(f"outbox-week: {args.days} days offline in {time.monotonic() - started:.0f} s "
          f"(accelerated), budget {args.budget_mb} MB; committed telemetry {sent['telemetry']}"
          f" envelopes ({sent['telemetry'] * 150} readings), alerts {sent['alert']}, decisions "
          f"{sent['decision']}; kept: alerts {len(kept['alert'])}, decisions "
          f"{len(kept['decision'])}, telemetry {telemetry_left}; dropped {json.dumps(drops)}; "
          f"outbox_drops events {len(events)} (the last one's total matches the drops table: "
          f"{reported == drops}); outbox {stats['bytes'] / 1e6:.1f} MB")
    for p in problems:
        print("  problem:", p)
    return 1 if problems else 0


# --- soak ---------------------------------------------------------------------------------------

SOAK_ACCELERATION = 50  # polls every 0.2 s stand for a store's every 10 s


def soak(args) -> int:
    from agent_footprint import rss_kb

    if args.hours is not None:
        args.minutes = args.hours * 60 / SOAK_ACCELERATION

    folder = Path(tempfile.mkdtemp(prefix="chaos-soak-"))
    broker = Mosquitto(folder / "broker").start()
    hub = HubProcess(broker, str(folder / "hub.db"), "hub-soak", log_path=folder / "hub.log")
    hub.start()
    config = folder / "agent.toml"
    config.write_text(host_config(
        folder / "state", devices=50, interval=0.2, flush=0.2,
        extra="\n[scoring]\nenabled = true\ninterval = 10.0\n\n" + sync_section(broker),
        device_extra='[devices.host]\nprocesses = ["python3"]\n'))
    hub.wait_connected()
    agent = AgentProcess(config, folder / "agent.log")
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    try:
        agent.wait_for_log("agent started")
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(1.0)
            if agent.proc.poll() is not None:
                raise AssertionError(f"the agent exited: {agent.proc.returncode}")
            samples.append((time.monotonic() - started, rss_kb(agent.pid)[0]))
        peak = rss_kb(agent.pid)[1]
        code = agent.stop()
    finally:
        agent.kill()
        hub.terminate()
        broker.stop()
    rss = [kb for _, kb in samples]
    tenth = max(1, len(rss) // 10)
    warm = statistics.median(rss[tenth:2 * tenth])
    last = statistics.median(rss[-tenth:])
    errors = [line for line in agent.lines() if line.get("level") in ("error", "critical")]
    committed = last_seq(folder / "state" / "agent.db")
    print(f"soak: {args.minutes:g} min ({args.minutes * SOAK_ACCELERATION / 60:.1f} h of polling "
          f"at {SOAK_ACCELERATION}x, "
          f"{args.minutes * 6} min of scoring cycles at 6x); RSS after warm-up "
          f"{warm / 1024:.1f} MB, at the end {last / 1024:.1f} MB, growth "
          f"{(last - warm) / 1024:+.2f} MB, peak {peak / 1024:.1f} MB; {committed} rows "
          f"committed; {len(errors)} error lines; exit {code}")
    print(f"  folder {folder}")
    return 0 if code == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description="Fault figures for the agent (issue 15).")
    sub = parser.add_subparsers(dest="scenario", required=True)
    p = sub.add_parser("kills")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--seed", type=int)
    p.set_defaults(func=kills)
    p = sub.add_parser("broker-down")
    p.add_argument("--outage", type=float, default=1800.0, help="seconds (default 30 min)")
    p.set_defaults(func=broker_down)
    p = sub.add_parser("hub-db")
    p.add_argument("--stores", type=int, default=3)
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--outage", type=float, default=20.0,
                   help="longest database outage, seconds (each is drawn from half of it to it)")
    p.add_argument("--seed", type=int, default=15)
    p.add_argument("--long-outage", type=float, default=0.0,
                   help="also, at the end, the server down this many seconds under a running "
                        "hub (past the writer's 120 s give-up: the hub exits, is restarted)")
    p.set_defaults(func=hub_db_restart)
    p = sub.add_parser("outbox-week")
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--budget-mb", type=float, default=50.0)
    p.set_defaults(func=outbox_week)
    p = sub.add_parser("soak")
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--hours", type=float,
                   help="simulated hours of polling instead of --minutes (at 50x: 24 h = 28.8 min)")
    p.set_defaults(func=soak)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
