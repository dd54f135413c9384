"""The running agent: state database, recorder, scheduler and services, with signal handling.

This is the agent's composition root: it builds the parts (database thread, outbox, recorder,
scheduler) and hands each service what it needs (edge_agent.services); no service sees the Agent.

SIGTERM and SIGINT stop it cleanly (in-flight polls cancelled, buffers committed, exit 0 within
5 s); SIGHUP reloads the config file, applying device changes without a restart and keeping the
old config when the new one is invalid.

The state database under a running agent is checked every STATE_CHECK_S: if the file at
<state_dir>/agent.db was deleted or replaced (another device or inode than the one opened), the
agent logs one error, writes the reason to <state_dir>/agent.fault (shown by `status`), commits
nothing more to the lost file and stops with exit code 1, so that the service manager restarts
it; the new run opens the database that is there then (or creates an empty one). Reopening in
place was rejected: the commits since the loss would go to a file nobody reads, and a new
database starts its seq over, which the hub must see as a new store session, i.e. a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edge_agent import blocking
from edge_agent.config import AgentConfig, load_config
from edge_agent.errors import ConfigError
from edge_agent import sync
from edge_agent.health.service import health_service
from edge_agent.outbox import Budget, Outbox
from edge_agent.recorder import Recorder, forget_devices
from edge_agent.scheduler import Factory, Scheduler, default_factory
from edge_agent.service import notify
from edge_agent.services import Parts, Service
from edge_agent.state import db as statedb

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 2.0
# Seconds between checks that the state database is still the file the agent opened.
STATE_CHECK_S = 2.0


class Agent:
    """One store's agent."""

    def __init__(self, config: AgentConfig, config_path: str | Path | None = None,
                 factory: Factory = default_factory):
        self.config = config
        self.config_path = Path(config_path) if config_path else None
        self.factory = factory
        self.db_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-db")
        self.db: Any = None
        self.outbox: Outbox | None = None
        self.recorder: Recorder | None = None
        self.scheduler: Scheduler | None = None
        self.health: Any = None       # the HealthEngine, once the health service made it
        self.sync_client: Any = None  # the SyncClient, once the sync service made it
        self.model_version: str | None = None  # overrides the engine's model (tests)
        self._tasks: list[asyncio.Task] = []
        self._stop = asyncio.Event()
        self.started_at = time.monotonic()
        self.last_progress = time.monotonic()
        self.reloads = 0
        # Each service gets what it needs here, and the started parts when it runs.
        self.services: list[Service] = [
            # systemd's READY/WATCHDOG/STATUS/STOPPING; returns at once outside systemd.
            self._notifier(),
            health_service(config.scoring, lambda: self.config.devices,
                           on_engine=self._use_engine, control=lambda: self.control,
                           model_override=lambda: self.model_override),
        ]
        self.exit_code = 0  # 1 when the database was lost; 75 after a remote restart_agent
        self.fault: str | None = None  # why the agent stopped itself (the database was lost)
        self._db_identity: tuple[int, int] | None = None
        self.control: Any = None
        self.model_override: str | None = None  # a model bundle's file (edge_agent/control)
        if config.control.enabled:
            from edge_agent.control import Controller

            # The control plane acts on the agent as a whole (reload, re-poll, restart): it
            # is built before sync, whose client hooks into it.
            self.control = Controller(self)
            self.services.append(self._control_service())
        if config.sync.enabled:
            # paho is imported when this service starts, not before.
            self.services.append(sync.service(
                config.sync, lambda: self.config,
                base_dir=self.config_path.parent if self.config_path else None,
                model_version=self.current_model_version,
                on_client=self._use_sync_client, control=self.control))

    def _notifier(self) -> Service:
        async def systemd_notifier(parts: Parts) -> None:
            # The watchdog judges the agent as a whole: its devices, progress and database.
            await notify.systemd_notifier(self)

        return systemd_notifier

    def _control_service(self) -> Service:
        async def control(parts: Parts) -> None:
            await self.control.run()

        return control

    def _use_engine(self, engine: Any) -> None:
        """Keep the engine the health service made (births, summaries, tests); the scoring flag
        (a kill switch from the hub) decides whether it may use its model."""
        engine.model_allowed = lambda: self.flag("scoring")
        self.health = engine

    def _use_sync_client(self, client: Any) -> None:
        """Keep the client the sync service made (summaries, tests)."""
        self.sync_client = client

    def current_model_version(self) -> str | None:
        """The model version births announce: the health engine's loaded model, if any."""
        if self.model_version:
            return self.model_version
        return self.health.model_version if self.health is not None else None

    async def _db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.db_executor, fn, *args)

    async def start(self) -> None:
        """Open the state database and start polling and the services."""
        cfg = self.config
        previous = statedb.take_fault(cfg.agent.state_dir)
        if previous:
            log.warning("the previous run stopped on a fault", extra={"fault": previous})
        self.db = await self._db(statedb.connect, cfg.state_path)
        self._db_identity = statedb.identity(cfg.state_path)
        budget = Budget(cfg.outbox.max_bytes, cfg.outbox.max_age_s)
        self.outbox = await self._db(Outbox, self.db, cfg.agent.store, cfg.agent.region, budget)
        self.recorder = Recorder(self.outbox, cfg.telemetry, self.db_executor)
        self.scheduler = Scheduler(self._on_reading, self.factory)
        await self._db(forget_devices, self.db, {d.id for d in cfg.devices})
        self.scheduler.apply(cfg.devices)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.recorder.run(), name="recorder"))
        self._tasks.append(loop.create_task(self._budget_loop(), name="outbox-budget"))
        parts = Parts(db=self._db, conn=self.db, outbox=self.outbox, recorder=self.recorder)
        self._tasks.append(loop.create_task(self._state_watch(), name="state-watch"))
        for service in self.services:
            self._tasks.append(loop.create_task(self._guard(service, parts),
                                                name=service.__name__))
        log.info("agent started", extra={"store": cfg.agent.store, "devices": len(cfg.devices),
                                         "state": str(cfg.state_path)})

    def _on_reading(self, reading, state) -> None:
        self.last_progress = time.monotonic()
        self.recorder.submit(reading, state)

    async def _guard(self, service: Service, parts: Parts) -> None:
        """Run a service; log and restart it after a pause if it fails, so polling goes on."""
        while True:
            try:
                await service(parts)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("service failed; restarting in 5 s",
                              extra={"service": getattr(service, "__name__", str(service))})
                await asyncio.sleep(5)

    def check_state_file(self) -> str | None:
        """Return why the state database is no longer the file opened at start, or None."""
        if self._db_identity is None:
            return None
        now = statedb.identity(self.config.state_path)
        if now is None:
            return f"state database {self.config.state_path} was deleted under the agent"
        if now != self._db_identity:
            return f"state database {self.config.state_path} was replaced under the agent"
        return None

    async def _state_watch(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(STATE_CHECK_S)
            why = self.check_state_file()
            if why is None:
                continue
            self.fault = why
            self.exit_code = 1
            if self.recorder is not None:
                self.recorder.closed = why  # commit nothing more to the lost file
            log.error("state database lost; stopping so that a restart opens the one there now",
                      extra={"reason": why, "path": str(self.config.state_path)})
            try:
                statedb.write_fault(self.config.agent.state_dir, why)
            except OSError as err:
                log.error("cannot write the fault file", extra={"error": str(err)})
            self.request_stop()
            return

    async def _budget_loop(self) -> None:
        while True:
            await asyncio.sleep(60)
            try:
                drops = await self._db(self.outbox.enforce_budget)
            except Exception as err:
                from edge_agent.recorder import commit_problem

                cause = commit_problem(err)
                if cause is None:
                    log.exception("outbox budget check failed")
                else:  # the recorder already says so, once a minute
                    log.warning("outbox budget check failed", extra={"cause": cause})
                continue
            if drops:
                log.warning("outbox over budget: rows dropped",
                            extra={"dropped": ",".join(f"{k}={v}" for k, v in drops.items())})

    def reload(self) -> bool:
        """Re-read the config file; apply it, or keep the old one if it is invalid."""
        if self.config_path is None:
            log.warning("reload asked but the agent has no config file")
            return False
        if self.scheduler is None:
            log.warning("reload asked before the agent started; ignored")
            return False
        try:
            new = load_config(self.config_path)
        except ConfigError as err:
            for problem in err.problems:
                log.error("new config rejected; keeping the old one",
                          extra={"problem": str(problem), "file": str(self.config_path)})
            return False
        except Exception:  # A bug must not take the running agent down with it.
            log.exception("reload failed; keeping the old config")
            return False
        # Devices change live; every other section keeps its running value until a restart.
        sections = [f.name for f in dataclasses.fields(new) if f.name not in ("devices", "source")]
        needs_restart = [name for name in sections
                         if getattr(new, name) != getattr(self.config, name)]
        if needs_restart:
            log.warning("config sections change only at restart", extra={
                "sections": ",".join(needs_restart)})
        changes = self.scheduler.apply(new.devices)
        self.config = dataclasses.replace(self.config, devices=new.devices, source=new.source)
        self.reloads += 1
        log.info("config reloaded", extra={k: ",".join(v) or "-" for k, v in changes.items()})
        return True

    def request_stop(self, exit_code: int = 0) -> None:
        """Ask the agent to stop (what SIGTERM does); a non-zero code asks for a restart."""
        self.exit_code = exit_code or self.exit_code
        self._stop.set()

    def flag(self, name: str) -> bool:
        """A feature flag from the hub (on unless a signed flags document says off)."""
        return self.control.flag(name) if self.control is not None else True

    async def run(self) -> int:
        """Run until SIGTERM or SIGINT; return the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):  # Windows: the service stops us instead.
                pass
        try:
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        except (AttributeError, NotImplementedError, RuntimeError):
            pass
        await self.start()
        await self._stop.wait()
        log.info("agent stopping")
        await self.stop()
        return self.exit_code

    async def stop(self) -> None:
        """Cancel polls and services, commit what is buffered, close the database.

        Each step is bounded (1.5 + 1 + 2 s) so that the whole stays within the service
        manager's 5 s, whatever a device or service does.
        """
        if self.scheduler is not None:
            await self.scheduler.stop(1.5)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)
        self._tasks.clear()
        if self.recorder is not None:
            try:
                await asyncio.wait_for(self.recorder.flush(), SHUTDOWN_GRACE_S)
            except Exception as err:
                from edge_agent.recorder import commit_problem

                cause = commit_problem(err)
                if cause is None:
                    log.exception("final commit failed")
                else:
                    log.error("final commit failed", extra={"cause": cause})
        if self.db is not None:
            await self._db(self.db.close)
            self.db = None
        self.db_executor.shutdown(wait=False)
        blocking.shutdown()
        log.info("agent stopped")

    def summary(self) -> dict[str, Any]:
        """One-line figures for logs and the service manager: devices, stale, outbox depth."""
        states = self.scheduler.states() if self.scheduler else []
        now = time.monotonic()
        out = {"devices": len(states), "stale": sum(1 for s in states if s.is_stale(now)),
               "failing": sum(1 for s in states if s.failures),
               "committed": self.recorder.committed_rows if self.recorder else 0}
        problem = self.fault or (self.recorder.commit_error if self.recorder else None)
        if problem:
            out["problem"] = problem
        return out
