"""`edge-hub demo`: the chain on one machine: embedded broker and hub, two simulated stores, the feed."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from edge_common.output import escape
from hub.errors import HubError

# (store, region, extra options): north also serves SNMP printers from snmpsim; south does not,
# so the two stores differ and the demo starts one snmpsim, not two, on a shared machine.
STORES = (("store-north", "north", ()), ("store-south", "south", ("--no-snmp",)))
FOLDER = ".edge-demo-chain"
# Health cycles every few seconds so the printers' faults become alerts within the minute.
SCORING_INTERVAL = 4.0
STOP_GRACE_S = 15.0


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="run the chain on this machine: hub, broker, two stores",
                       description="Start the hub with its embedded MQTT broker on a free port, "
                                   "two simulated stores whose devices degrade, print every "
                                   "alert on the regional feed and the fleet view. Ctrl-C "
                                   "stops everything.")
    p.add_argument("--seconds", type=float, default=0.0,
                   help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--refresh", type=float, default=10.0,
                   help="seconds between fleet views (default 10)")
    p.add_argument("--dir", default=FOLDER,
                   help=f"demo folder: hub database, stores' state, logs (default {FOLDER}); "
                        "the last run's are removed at start")
    p.add_argument("--hub-log-level", default="warning",
                   choices=("debug", "info", "warning", "error"),
                   help="the hub's log level, in <dir>/hub.log (default warning)")
    return p


def run(args: argparse.Namespace) -> int:
    from hub.cli.common import UsageError

    if args.seconds < 0 or not args.refresh > 0:
        raise UsageError("--seconds must be >= 0 and --refresh > 0")
    return Chain(Path(args.dir), args.seconds, args.refresh, args.hub_log_level).run()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the demo dies without stopping it (Linux only)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the demo's own stop is then the only one
        pass


class Chain:
    """The hub and the stores as child processes, a feed subscriber, and the fleet view."""

    def __init__(self, folder: Path, seconds: float, refresh: float,
                 hub_log_level: str = "warning"):
        self.folder = folder
        self.hub_log_level = hub_log_level
        self.seconds = seconds
        self.refresh = refresh
        self.db = str(folder / "hub.db")
        self.host = "127.0.0.1"
        self.port = 0
        self.children: list[tuple[str, subprocess.Popen, Path]] = []
        self.stop = threading.Event()
        self.hub_online = threading.Event()
        self.alerts = 0
        self.client = None
        self.story_procs: list[subprocess.Popen] = []
        self.story_lock = threading.Lock()

    # Processes -----------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], **extra_env: str) -> subprocess.Popen:
        log = self.folder / f"{name}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1", **extra_env)
        with open(log, "wb") as err:
            # A session of its own: Ctrl-C reaches the demo only, which stops the children in
            # order (stores first, so the hub sees them leave; then the hub).
            proc = subprocess.Popen([sys.executable, "-m", *argv], stdin=subprocess.DEVNULL,
                                    stderr=err, env=env, start_new_session=True,
                                    preexec_fn=_die_with_parent if sys.platform == "linux"
                                    else None)
        self.children.append((name, proc, log))
        print(f"demo: started {name} (pid {proc.pid}; log {log})", flush=True)
        return proc

    def stop_child(self, name: str, proc: subprocess.Popen) -> None:
        self.children = [c for c in self.children if c[1] is not proc]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                print(f"demo: {name} did not stop within {STOP_GRACE_S:.0f} s; killing it",
                      flush=True)
                proc.kill()
                proc.wait()
        print(f"demo: stopped {name} (pid {proc.pid}, exit {proc.returncode})", flush=True)

    def check_children(self) -> str | None:
        for name, proc, log in self.children:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                return (f"{name} exited with code {proc.returncode}; its log {log} ends:\n  "
                        + "\n  ".join(tail or ["(empty)"]))
        return None

    # The feed ------------------------------------------------------------------------------

    def connect(self, deadline: float) -> None:
        """Subscribe to the hub's state and the regional feed once the broker listens."""
        from hub.bus.subscriber import Subscriber

        client = Subscriber(self.host, self.port,
                            [("edge/v1/hub/state", 1), ("edge/v1/alerts/+/+", 1)],
                            self._on_message, "edge-demo-feed")
        while True:
            try:
                client.connect()
                break
            except OSError:
                problem = self.check_children()
                if problem or time.monotonic() > deadline:
                    raise HubError(problem or f"the hub's broker did not listen on "
                                              f"{self.host}:{self.port}")
                time.sleep(0.2)
        self.client = client

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic.endswith("/hub/state"):
            from edge_protocol.envelope import decode_hub_state
            from edge_protocol.errors import ProtocolError

            try:
                if decode_hub_state(payload).get("online") is True:
                    self.hub_online.set()
            except ProtocolError:
                pass
            return
        print(alert_line(topic, payload), flush=True)
        self.alerts += 1

    # The view ------------------------------------------------------------------------------

    def fleet_view(self) -> None:
        from hub.cli.common import open_db
        from hub.cli.fleet import devices_text, fleet_text

        print(f"\n== {time.strftime('%H:%M:%S')} edge-hub fleet --db {self.db}", flush=True)
        try:
            db = open_db(self.db)
            try:
                print(fleet_text(db))
                print(f"\n== edge-hub devices --at-risk --db {self.db}")
                print(devices_text(db, at_risk=True))
            finally:
                db.close()
        except HubError as err:
            print(f"(the fleet database is not ready: {err})")
        print(f"== {self.alerts} alert(s) on the regional feed so far\n", flush=True)

    def wait_offline(self, timeout: float) -> None:
        """Wait (bounded) until the hub has recorded every store as offline."""
        from hub.app import open_store
        from hub.domains import fleet

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                db = open_store(self.db, create=False)
                try:
                    if all(s["online"] is False for s in fleet.stores(db)):
                        return
                finally:
                    db.close()
            except HubError:
                return  # no database: nothing to wait for
            time.sleep(0.2)

    # Run -----------------------------------------------------------------------------------

    def run(self) -> int:
        previous = {sig: signal.signal(sig, lambda *_: self.stop.set())
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._run()
        finally:
            self.stop.set()  # the control story stops too
            self.stop_story()
            if self.client is not None:
                self.client.stop()
            for name, proc, _ in reversed(list(self.children)):
                self.stop_child(name, proc)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def clean_folder(self) -> None:
        """A fresh chain each run: remove what an earlier run left, and only that."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in ("hub.db", "hub.db-wal", "hub.db-shm", "hub.log"):
            (self.folder / name).unlink(missing_ok=True)
        for name in ("keys", "model"):
            shutil.rmtree(self.folder / name, ignore_errors=True)
        for store, _, _ in STORES:
            (self.folder / f"{store}.log").unlink(missing_ok=True)
            if (self.folder / store / "agent.lock").exists():
                shutil.rmtree(self.folder / store)

    def _run(self) -> int:
        started = time.monotonic()
        end = started + self.seconds if self.seconds > 0 else None
        self.clean_folder()
        self.port = free_port(self.host)
        broker = f"{self.host}:{self.port}"
        print(f"demo: the chain on this machine in {self.folder}/ "
              f"(embedded MQTT broker on {broker}); Ctrl-C stops it", flush=True)
        from hub.keys import KeyRing

        ring = KeyRing.init(self.folder / "keys")  # signs the demo's commands and bundles
        trust = [a for key in ring.public_keys().values() for a in ("--trust", key)]
        self.spawn("hub", ["hub", "serve", "--embedded-broker", "--broker", broker,
                           "--db", self.db, "--log-level", self.hub_log_level],
                   EDGE_HUB_KEYS=str(self.folder / "keys"))
        self.connect(time.monotonic() + 60)
        while not self.hub_online.wait(0.2):
            problem = self.check_children()
            if problem or self.stop.is_set():
                print(f"demo: {problem or 'stopped'}", flush=True)
                return 1 if problem else 0
        print("demo: the hub is online (its retained edge/v1/hub/state says so)", flush=True)
        for store, region, extra in STORES:
            self.spawn(store, ["edge_agent", "demo", "--store", store, "--region", region,
                               "--sync", broker, "--state-dir", str(self.folder / store),
                               "--scoring-interval", str(SCORING_INTERVAL), "--quiet",
                               *trust, *extra])
        story = threading.Thread(target=self.control_story, name="control-story", daemon=True)
        story.start()
        print("demo: alerts on the regional feed (edge/v1/alerts/+/+) appear as they arrive",
              flush=True)
        next_view = time.monotonic() + self.refresh
        code = 0
        while not self.stop.is_set():
            now = time.monotonic()
            if end is not None and now >= end:
                break
            problem = self.check_children()
            if problem:
                print(f"demo: {problem}", flush=True)
                code = 1
                break
            if now >= next_view:
                self.fleet_view()
                next_view = now + self.refresh
            self.stop.wait(min(0.5, max(0.0, (end or now + 1) - now)))
        self.fleet_view()
        for name, proc, _ in [c for c in reversed(self.children) if c[0] != "hub"]:
            self.stop_child(name, proc)
        self.wait_offline(5.0)  # the stores' deaths reach the hub before it stops
        print("demo: the stores stopped; the hub's view of them now:", flush=True)
        self.fleet_view()
        print(f"demo: done, {self.alerts} alert(s) reached the regional feed", flush=True)
        return code


    # The control plane: a signed test print and a small rollout, from the CLI -------------

    def hub_cli(self, *args: str, quiet: bool = False) -> subprocess.CompletedProcess:
        """Run `edge-hub ARGS --db <the demo's>`; stopped with the demo (no process left)."""
        if not quiet:
            print("demo: $ edge-hub " + " ".join(args), flush=True)
        with self.story_lock:
            if self.stop.is_set():
                return subprocess.CompletedProcess(args, 1, "", "")
            proc = subprocess.Popen([sys.executable, "-m", "hub", *args, "--db", self.db],
                                    text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.story_procs.append(proc)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        finally:
            with self.story_lock:
                self.story_procs.remove(proc)
        if not quiet:
            for line in (out + err).strip().splitlines()[:8]:
                print(f"demo:   {line}", flush=True)
        return subprocess.CompletedProcess(args, proc.returncode, out, err)

    def stop_story(self) -> None:
        """Stop the control story's running CLI, if any (the demo is ending)."""
        with self.story_lock:
            procs = list(self.story_procs)
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def control_story(self) -> None:
        """Once both stores are born: a test print on the north store's front printer, then a
        model bundle rolled out to the north store (pilot) and then the chain."""
        from hub.app import open_store

        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                db = open_store(self.db, create=False)
                try:
                    with db.read() as tx:
                        tx.execute("SELECT COUNT(*) FROM stores")
                        if tx.fetchone()[0] >= len(STORES):
                            break
                finally:
                    db.close()
            except Exception:  # noqa: BLE001 - the database is not there yet
                pass
            self.stop.wait(1.0)
        else:
            return
        keys = ("--dir", str(self.folder / "keys"))
        self.hub_cli("cmd", "store-north", "receipt-front", "test_print", "--arg", "force=true",
                     "--arg", "text=hello from the hub", "--wait", "30", *keys)
        model = self.new_model()
        r = self.hub_cli("bundle", "create", "--model", str(model), *keys)
        found = re.search(r"\b([0-9a-f]{64})\b", r.stdout)
        if not found:
            return
        sha = found.group(1)
        r = self.hub_cli("rollout", "start", sha, "--stages", "pilot=store-north; chain",
                         "--soak", "10s", "--gate", "min_device_days=0", *keys)
        found = re.search(r"rollout ([0-9a-f-]{36})", r.stdout)
        if not found:
            return
        rid = found.group(1)
        seen = None
        until = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < until:
            r = self.hub_cli("rollout", "status", rid, quiet=True)
            first = r.stdout.strip().splitlines()[:1]
            if first and first != seen:
                seen = first
                print(f"demo: rollout: {first[0]}", flush=True)
                if any(w in first[0] for w in (" done ", " aborted ")):
                    break
            self.stop.wait(2.0)

    def new_model(self) -> Path:
        """The shipped model with its card renamed demo-model-2 (the same weights)."""
        from importlib import resources

        # The agent's packaged model, found as package data (the hub imports no agent code).
        shipped = resources.files("edge_agent.health.model")
        folder = self.folder / "model"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "device_health.onnx").write_bytes(
            shipped.joinpath("device_health.onnx").read_bytes())
        card = json.loads(shipped.joinpath("device_health.card.json").read_text())
        card["version"] = "demo-model-2"
        (folder / "device_health.card.json").write_text(json.dumps(card))
        return folder / "device_health.onnx"


def alert_line(topic: str, payload: bytes) -> str:
    """One line for a feed message; a malformed one is shown as such, not trusted."""
    try:
        a = json.loads(payload)
        if not isinstance(a, dict):
            raise ValueError("not an object")
        return escape(f"ALERT {topic}: {a.get('store')} {a.get('device')} {a.get('what')} "
                      f"{a.get('state')} ({a.get('severity')}), since {a.get('since')}"
                      + (f": {a['explanation'][0]}" if a.get("explanation") else ""))
    except (ValueError, TypeError, KeyError, IndexError) as err:
        return f"ALERT {topic}: unreadable feed message ({err}): {payload[:80]!r}"
