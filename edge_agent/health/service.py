"""The agent's health service: feed readings to the engine, run one cycle per interval, publish.

Decisions and alerts go out through `recorder.publish`, so they are committed to the outbox
with everything else and leave when the network allows; the cycle itself never needs it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from typing import Any, Callable, Iterable

from edge_agent.health.engine import HealthEngine
from edge_agent.services import Parts, Service

log = logging.getLogger(__name__)
META_KEY = "scoring"
ERRORS_KEY = "scoring_errors"  # the scoring error counters (HealthEngine.errors_doc)


def save_state(db: sqlite3.Connection, engine: HealthEngine, now: float) -> None:
    """Persist the engine, its scoring state and its scoring error counts (database thread)."""
    engine.save(db, now)
    db.executemany("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET"
                   " value = excluded.value", [(META_KEY, json.dumps(engine.state())),
                                               (ERRORS_KEY, engine.errors_doc())])


def load_status(db: sqlite3.Connection) -> dict[str, Any]:
    """Read scoring state and each device's decision from the state database (for status)."""
    try:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchone()
        devices = {dev: {"decision": d, "score": s} for dev, d, s in
                   db.execute("SELECT device, decision, score FROM health")}
    except sqlite3.OperationalError:
        return {"scoring": None, "devices": {}}
    return {"scoring": json.loads(row[0]) if row else None, "devices": devices}


def scoring_line(state: dict[str, Any] | None, enabled: bool) -> str:
    """Say the scoring state in one line for `status`."""
    if state is None:
        return "scoring: " + ("not started yet" if enabled else "disabled in [scoring]")
    if not state.get("enabled"):
        return "scoring: disabled in [scoring]; rule alerts only"
    if state.get("switched_off"):
        return "scoring: SWITCHED OFF by the hub (flag scoring=off); rule alerts only"
    if not state.get("model"):
        return f"scoring: NOT SCORING: {state.get('error') or 'no model'}; rule alerts only"
    extra = f"; last model refused: {state['error']}" if state.get("error") else ""
    errors = state.get("errors") or {}
    if errors:
        extra += (f"; {sum(errors.values())} device score(s) failed since the state database "
                  "was made (" + ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) + ")")
    return (f"scoring: model {state['model']}, {state.get('devices', 0)} device(s), "
            f"{state.get('cycles', 0)} cycle(s) this run{extra}")


def model_stamp(path: str) -> tuple[float, int] | None:
    """Return the model file's (mtime, size), or None if it cannot be read."""
    from edge_agent.health.scorer import packaged_model

    try:
        st = os.stat(path or packaged_model())
    except OSError:
        return None
    return (st.st_mtime, st.st_size)


def health_service(settings: Any, devices: Callable[[], Iterable[Any]],
                   on_engine: Callable[[HealthEngine], None] = lambda engine: None,
                   control: Callable[[], Any] = lambda: None,
                   model_override: Callable[[], str | None] = lambda: None) -> Service:
    """Build the agent's health service: `settings` is the `[scoring]` section, `devices()`
    the devices configured now (a reload changes them), `on_engine` learns each engine made,
    `control()` the control plane if any (its bundles are restored before the first model
    load), `model_override()` a model bundle's file that takes the place of [scoring].model.
    """

    async def health(parts: Parts) -> None:
        await run_health(settings, devices, on_engine, parts, control, model_override)

    return health


async def run_health(settings: Any, devices: Callable[[], Iterable[Any]],
                     on_engine: Callable[[HealthEngine], None], parts: Parts,
                     control: Callable[[], Any] = lambda: None,
                     model_override: Callable[[], str | None] = lambda: None) -> None:
    """Run the health cycle every `[scoring].interval` seconds until cancelled.

    When the model file changes (a new model dropped in place), it is loaded before the next
    cycle; a bad new file is refused and the last good model goes on scoring.
    """
    from edge_agent.health.scorer import Scorer

    # Scoring runs in a worker process started for each cycle (scorer.py): onnxruntime and
    # numpy are not resident in the agent between cycles (issue 15, footprint). On Windows,
    # where select() takes no pipes, it stays in process.
    engine = HealthEngine(settings, Scorer(worker=os.name != "nt"))
    on_engine(engine)
    db, conn, recorder = parts.db, parts.conn, parts.recorder
    loop = asyncio.get_running_loop()
    # Restore the saved windows first, then listen, so no reading is lost or overwritten;
    # only then load the model (it takes a moment and needs no readings).
    restored = await db(engine.load, conn)
    stop_observing = recorder.observe(engine.observe)
    try:
        stamp = None
        # A model bundle applied by the control plane takes the place of [scoring].model.
        plane = control()
        if plane is not None:
            for _ in range(500):  # it restores the applied bundles first (10 s at most)
                if plane.ready:
                    break
                await asyncio.sleep(0.02)
        current = model_override() or settings.model
        if settings.enabled:
            # Loading imports onnxruntime and builds a session: off the event loop.
            stamp = model_stamp(current)
            await loop.run_in_executor(None, engine.scorer.load, current or None)
        else:
            log.info("health scoring disabled; rule alerts only")
        log.info("health service started", extra={"model": engine.scorer.version or "none",
                                                   "restored_devices": restored})
        every = float(getattr(settings, "error_report_every", 300.0))
        if settings.enabled:
            # The totals this run counts from (and what the last run left unreported), so the
            # hub can tell the errors of any later window (docs/protocol.md, scoring_errors).
            recorder.publish("event", engine.error_report(time.time(), every, force=True))
        await db(save_state, conn, engine, time.time())
        while True:
            await asyncio.sleep(settings.interval)
            wanted = model_override() or settings.model
            if settings.enabled and (wanted != current or model_stamp(wanted) != stamp):
                current, stamp = wanted, model_stamp(wanted)
                await loop.run_in_executor(None, engine.scorer.load, current or None)
            engine.forget({d.id for d in devices()})
            if engine.scorer.model is not None:
                await loop.run_in_executor(None, engine.scorer.warm)  # off the event loop
            now = time.time()
            decisions, alerts = engine.cycle(now)
            for body in decisions:
                recorder.publish("decision", body)
            for body in alerts:
                recorder.publish("alert", body)
            report = engine.error_report(now, every)
            if report is not None:
                recorder.publish("event", report)
            if decisions or alerts:
                log.info("health cycle", extra={"decisions": len(decisions),
                                                "alerts": len(alerts)})
            try:
                await db(save_state, conn, engine, now)
            except Exception as err:
                from edge_agent.recorder import commit_problem

                if commit_problem(err) is None:
                    raise
                # A full disk: the recorder logs it once a minute; the windows stay in memory
                # and are saved at the next cycle that can commit.
                log.debug("health windows not saved", extra={"cause": commit_problem(err)})
    finally:
        engine.scorer.close()
        stop_observing()
        # Keep the readings since the last cycle: the agent closes the database after us.
        try:
            await db(save_state, conn, engine, time.time())
        except Exception:
            log.exception("could not save the health windows at stop")
