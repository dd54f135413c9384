"""The running agent: state database, recorder, scheduler and services, with signal handling.

SIGTERM and SIGINT stop it cleanly (in-flight polls cancelled, buffers committed, exit 0 within
5 s); SIGHUP reloads the config file, applying device changes without a restart and keeping the
old config when the new one is invalid.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Awaitable, Callable

from edge_agent import blocking
from edge_agent.config import AgentConfig, load_config
from edge_agent.errors import ConfigError
from edge_agent.health.service import health_service
from edge_agent.outbox import Budget, Outbox
from edge_agent.recorder import Recorder, forget_devices
from edge_agent.scheduler import Factory, Scheduler, default_factory
from edge_agent.service.notify import systemd_notifier
from edge_agent.state import db as statedb

log = logging.getLogger(__name__)

# A service is a long-running coroutine started with the agent (sync client, health cycle,
# watchdog notifier). It gets the agent and runs until cancelled.
Service = Callable[["Agent"], Awaitable[None]]
SHUTDOWN_GRACE_S = 2.0


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
        self.services: list[Service] = []
        # systemd's READY/WATCHDOG/STATUS/STOPPING; returns at once outside systemd.
        self.services.append(systemd_notifier)
        self.health: Any = None  # the HealthEngine, set by health_service
        self.services.append(health_service)
        self._tasks: list[asyncio.Task] = []
        self._stop = asyncio.Event()
        self.started_at = time.monotonic()
        self.last_progress = time.monotonic()
        self.reloads = 0
        self.exit_code = 0  # 75 after a remote restart_agent: the service manager restarts us
        self.control: Any = None
        self.model_override: str | None = None  # a model bundle's file (edge_agent/control)
        if config.control.enabled:
            from edge_agent.control import Controller, control_service

            self.control = Controller(self)  # before sync: the sync client hooks into it
            self.services.append(control_service)
        if config.sync.enabled:
            from edge_agent.sync import sync  # imports paho only when the service starts

            self.services.append(sync)

    async def _db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.db_executor, fn, *args)

    async def start(self) -> None:
        """Open the state database and start polling and the services."""
        cfg = self.config
        self.db = await self._db(statedb.connect, cfg.state_path)
        budget = Budget(cfg.outbox.max_bytes, cfg.outbox.max_age_s)
        self.outbox = await self._db(Outbox, self.db, cfg.agent.store, cfg.agent.region, budget)
        self.recorder = Recorder(self.outbox, cfg.telemetry, self.db_executor)
        self.scheduler = Scheduler(self._on_reading, self.factory)
        await self._db(forget_devices, self.db, {d.id for d in cfg.devices})
        self.scheduler.apply(cfg.devices)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.recorder.run(), name="recorder"))
        self._tasks.append(loop.create_task(self._budget_loop(), name="outbox-budget"))
        for service in self.services:
            self._tasks.append(loop.create_task(self._guard(service), name=service.__name__))
        log.info("agent started", extra={"store": cfg.agent.store, "devices": len(cfg.devices),
                                         "state": str(cfg.state_path)})

    def _on_reading(self, reading, state) -> None:
        self.last_progress = time.monotonic()
        self.recorder.submit(reading, state)

    async def _guard(self, service: Service) -> None:
        """Run a service; log and restart it after a pause if it fails, so polling goes on."""
        while True:
            try:
                await service(self)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("service failed; restarting in 5 s",
                              extra={"service": getattr(service, "__name__", str(service))})
                await asyncio.sleep(5)

    async def _budget_loop(self) -> None:
        while True:
            await asyncio.sleep(60)
            try:
                drops = await self._db(self.outbox.enforce_budget)
            except Exception:
                log.exception("outbox budget check failed")
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
            except Exception:
                log.exception("final commit failed")
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
        return {"devices": len(states), "stale": sum(1 for s in states if s.is_stale(now)),
                "failing": sum(1 for s in states if s.failures),
                "committed": self.recorder.committed_rows if self.recorder else 0}
