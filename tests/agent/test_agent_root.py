"""The agent's composition root: a service runs on the parts it is handed, without an Agent."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

from wait import until

from edge_agent.config import DeviceConfig, ScoringSection, TelemetrySection
from edge_agent.health.service import META_KEY, health_service
from edge_agent.outbox import Outbox
from edge_agent.reading import Reading, utcnow
from edge_agent.recorder import Recorder
from edge_agent.scheduler import DeviceState
from edge_agent.services import Parts
from edge_agent.state import db as statedb


def test_the_health_service_runs_on_parts_alone_and_reads_the_devices_at_each_cycle(tmp_path):
    db = statedb.connect(tmp_path / "agent.db")
    pool = ThreadPoolExecutor(max_workers=1)
    configured = [DeviceConfig(id="register", kind="host")]
    engines = []

    async def main():
        loop = asyncio.get_running_loop()

        async def call(fn, *args):
            return await loop.run_in_executor(pool, fn, *args)

        recorder = Recorder(Outbox(db, "s1", "r1"), TelemetrySection(), pool)
        parts = Parts(db=call, conn=db, outbox=recorder.outbox, recorder=recorder)
        service = health_service(ScoringSection(enabled=False, interval=0.05),
                                 lambda: configured, on_engine=engines.append)
        task = loop.create_task(service(parts))
        await until(lambda: engines and recorder.observers, what="the engine to listen")
        engine = engines[0]
        state = DeviceState(configured[0])
        recorder.submit(Reading("register", "host", utcnow(), {"poll.errors": 0}), state)
        assert "register" in engine.last, "the engine observes what the recorder takes"
        await until(lambda: engine.cycles >= 2, what="two cycles")
        assert "register" in engine.last
        # A reload changes the devices: the next cycle reads the getter again and forgets it.
        configured.clear()
        cycles = engine.cycles
        await until(lambda: engine.cycles > cycles + 1, what="a cycle after the reload")
        assert "register" not in engine.last
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert recorder.observers == [], "the service stops listening when it stops"
        return engine

    engine = asyncio.run(main())
    saved = db.execute("SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchone()
    assert json.loads(saved[0])["cycles"] == engine.cycles, "saved at stop, on the parts' db"
    db.close()
    pool.shutdown()


def test_the_sync_service_runs_on_parts_alone_and_its_machine_ends_stopped(tmp_path):
    # No broker on the port: each attempt goes connecting -> disconnected; a stop ends it.
    from testenv import free_port
    from edge_agent import sync
    from edge_agent.config import parse_text
    from edge_agent.sync.machine import Event, State

    cfg = parse_text(f'[agent]\nstore = "s1"\nstate_dir = "{tmp_path}"\n[sync]\nenabled = true\n'
                     f'host = "127.0.0.1"\nport = {free_port()}\ntls = false\n'
                     "reconnect_min = 0.01\nreconnect_max = 0.02\n")
    db = statedb.connect(cfg.state_path)
    pool = ThreadPoolExecutor(max_workers=1)
    clients = []

    async def main():
        loop = asyncio.get_running_loop()

        async def call(fn, *args):
            return await loop.run_in_executor(pool, fn, *args)

        recorder = Recorder(Outbox(db, "s1", "default"), cfg.telemetry, pool)
        parts = Parts(db=call, conn=db, outbox=recorder.outbox, recorder=recorder)
        service = sync.service(cfg.sync, lambda: cfg, on_client=clients.append)
        assert service.__module__ == "edge_agent.sync" and service.__name__ == "sync"
        task = loop.create_task(service(parts))
        await until(lambda: clients and sum(
            1 for t in clients[0].machine.history if t.event is Event.ATTEMPT) >= 2,
            what="two connection attempts")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return clients[0]

    client = asyncio.run(main())
    # The history keeps the last steps only: each is one of these, and they form one chain.
    S, E = State, Event
    possible = {(S.DISCONNECTED, E.ATTEMPT, S.CONNECTING), (S.CONNECTING, E.LOST, S.DISCONNECTED),
                (S.DISCONNECTED, E.LOST, S.DISCONNECTED), (S.DISCONNECTED, E.STOP, S.STOPPING),
                (S.CONNECTING, E.STOP, S.STOPPING), (S.STOPPING, E.LOST, S.STOPPING),
                (S.STOPPING, E.STOP, S.STOPPING), (S.STOPPING, E.CLOSED, S.STOPPED)}
    history = list(client.machine.history)
    assert {(t.source, t.event, t.target) for t in history} <= possible
    assert (S.CONNECTING, E.LOST, S.DISCONNECTED) in {(t.source, t.event, t.target)
                                                      for t in history}
    assert all(a.target is b.source for a, b in zip(history, history[1:]))
    assert (history[-1].event, client.machine.state) == (E.CLOSED, S.STOPPED)
    assert client.machine.illegal == 0 and not client.connected
    assert client.machine.session == int(db.execute(
        "SELECT value FROM meta WHERE key = 'sync.session'").fetchone()[0])
    db.close()
    pool.shutdown()
