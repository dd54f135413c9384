"""The recorder: bounded buffer, one transaction per flush, nothing lost when a commit fails."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

from edge_agent.config import DeviceConfig, TelemetrySection
from edge_agent.outbox import Outbox
from edge_agent.reading import Reading, utcnow
from edge_agent.recorder import Recorder, load_states
from edge_agent.scheduler import DeviceState
from edge_agent.state import db as statedb


def setup(tmp_path, **telemetry):
    db = statedb.connect(tmp_path / "agent.db")
    pool = ThreadPoolExecutor(max_workers=1)
    recorder = Recorder(Outbox(db, "s1", "r1"), TelemetrySection(**telemetry), pool)
    return db, pool, recorder


def reading(n: int, device: str = "d1") -> Reading:
    return Reading(device, "host", utcnow(), {"poll.errors": n})


def committed(db) -> list[int]:
    out = []
    for (payload,) in db.execute("SELECT payload FROM outbox WHERE kind = 'telemetry' "
                                 "ORDER BY seq"):
        out += [r["values"]["poll.errors"] for r in json.loads(payload)["body"]["readings"]]
    return out


def test_past_buffer_max_the_oldest_readings_are_dropped_and_counted(tmp_path):
    db, pool, rec = setup(tmp_path, buffer_max=10)
    state = DeviceState(DeviceConfig(id="d1", kind="host"))
    for n in range(25):
        rec.submit(reading(n), state)
    asyncio.run(rec.flush())
    assert rec.dropped_readings == 15
    assert committed(db) == list(range(15, 25))
    db.close()
    pool.shutdown()


def test_one_flush_batches_readings_into_envelopes_of_batch_max_with_device_state(tmp_path):
    db, pool, rec = setup(tmp_path, batch_max=4)
    state = DeviceState(DeviceConfig(id="d1", kind="host"))
    for n in range(10):
        rec.submit(reading(n), state)
    rec.publish("alert", {"device": "d1"})
    rows = asyncio.run(rec.flush())
    assert [r.kind for r in rows] == ["alert", "telemetry", "telemetry", "telemetry"]
    assert committed(db) == list(range(10))
    assert load_states(db)["d1"]["reading"]["values"]["poll.errors"] == 9
    assert asyncio.run(rec.flush()) == [], "nothing buffered, nothing written"
    db.close()
    pool.shutdown()


def test_a_failed_commit_keeps_the_readings_for_the_next_flush(tmp_path):
    db, pool, rec = setup(tmp_path)
    state = DeviceState(DeviceConfig(id="d1", kind="host"))
    for n in range(3):
        rec.submit(reading(n), state)
    real_commit = rec._commit

    # A full disk cannot be made safely on a shared build machine: the commit step is swapped
    # for one that fails as SQLite does when the disk is full.
    def full_disk(items, states):
        raise OSError(28, "No space left on device")

    rec._commit = full_disk

    async def first():
        try:
            await rec.flush()
        except OSError:
            return True
        return False

    assert asyncio.run(first())
    rec.submit(reading(3), state)
    rec._commit = real_commit
    asyncio.run(rec.flush())
    assert committed(db) == [0, 1, 2, 3]
    db.close()
    pool.shutdown()
