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
from typing import Any

from edge_agent.health.engine import HealthEngine

log = logging.getLogger(__name__)
META_KEY = "scoring"


def save_state(db: sqlite3.Connection, engine: HealthEngine, now: float) -> None:
    """Persist the engine and its scoring state (database thread)."""
    engine.save(db, now)
    db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET"
               " value = excluded.value", (META_KEY, json.dumps(engine.state())))


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


async def health_service(agent) -> None:
    """Run the health cycle every `[scoring].interval` seconds until cancelled.

    When the model file changes (a new model dropped in place), it is loaded before the next
    cycle; a bad new file is refused and the last good model goes on scoring.
    """
    settings = agent.config.scoring
    engine = HealthEngine(settings)
    engine.model_allowed = lambda: agent.flag("scoring")
    agent.health = engine
    loop = asyncio.get_running_loop()
    # Restore the saved windows first, then listen, so no reading is lost or overwritten;
    # only then load the model (it takes a moment and needs no readings).
    restored = await agent.recorder.db(engine.load, agent.db)
    agent.recorder.observers.append(engine.observe)
    try:
        stamp = None
        # A model bundle applied by the control plane takes the place of [scoring].model.
        control = getattr(agent, "control", None)
        if control is not None:
            for _ in range(500):  # it restores the applied bundles first (10 s at most)
                if control.ready:
                    break
                await asyncio.sleep(0.02)
        current = getattr(agent, "model_override", None) or settings.model
        if settings.enabled:
            # Loading imports onnxruntime and builds a session: off the event loop.
            stamp = model_stamp(current)
            await loop.run_in_executor(None, engine.scorer.load, current or None)
        else:
            log.info("health scoring disabled; rule alerts only")
        log.info("health service started", extra={"model": engine.scorer.version or "none",
                                                   "restored_devices": restored})
        await agent.recorder.db(save_state, agent.db, engine, time.time())
        while True:
            await asyncio.sleep(settings.interval)
            wanted = getattr(agent, "model_override", None) or settings.model
            if settings.enabled and (wanted != current or model_stamp(wanted) != stamp):
                current, stamp = wanted, model_stamp(wanted)
                await loop.run_in_executor(None, engine.scorer.load, current or None)
            engine.forget({d.id for d in agent.config.devices})
            now = time.time()
            decisions, alerts = engine.cycle(now)
            for body in decisions:
                agent.recorder.publish("decision", body)
            for body in alerts:
                agent.recorder.publish("alert", body)
            if decisions or alerts:
                log.info("health cycle", extra={"decisions": len(decisions),
                                                "alerts": len(alerts)})
            await agent.recorder.db(save_state, agent.db, engine, now)
    finally:
        try:
            agent.recorder.observers.remove(engine.observe)
        except ValueError:
            pass
        # Keep the readings since the last cycle: the agent closes the database after us.
        try:
            await agent.recorder.db(save_state, agent.db, engine, time.time())
        except Exception:
            log.exception("could not save the health windows at stop")
