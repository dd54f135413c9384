"""Commit readings and envelopes: device state and the outbox, in one transaction per flush.

Readings arrive from the loop many times a second; the recorder buffers them (bounded: past
`buffer_max` the oldest is dropped and counted) and, every `flush_interval`, commits the latest
state of each device and the readings as telemetry envelopes in one transaction on the database
thread, so the event loop never waits on disk. Alerts and decisions take the same path.

A commit that fails (a full disk, a locked or damaged file) rolls back, so nothing committed
before is touched; what it held goes back into the buffer (readings within `buffer_max`,
envelopes all) for the next flush. The failure is logged as one line naming the cause at most
once every COMMIT_LOG_EVERY_S (with a count of the failures in between), and once more when
commits succeed again; a traceback is logged only for an error that is not the database's or
the disk's (a bug), and at the same pace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, TypeVar

from edge_agent.config import TelemetrySection
from edge_agent.outbox import Outbox, Row
from edge_agent.reading import Reading
from edge_agent.scheduler import DeviceState

log = logging.getLogger(__name__)
T = TypeVar("T")
COMMIT_LOG_EVERY_S = 60.0


def commit_problem(err: BaseException) -> str | None:
    """Name a failed commit's cause in a few words, or None when it is not a storage error."""
    text = str(err)
    if isinstance(err, sqlite3.Error):
        code = getattr(err, "sqlite_errorcode", None)
        if code == 13 or "database or disk is full" in text:  # SQLITE_FULL
            return "disk full (or the database at its size limit)"
        if code == 10 or "disk I/O error" in text:  # SQLITE_IOERR
            return f"disk I/O error: {text}"
        if "readonly" in text or "read-only" in text:
            return f"state database is read-only: {text}"
        return f"state database error: {type(err).__name__}: {text}"
    if isinstance(err, OSError):
        if err.errno == 28:  # ENOSPC
            return "disk full"
        return f"{type(err).__name__}: {err.strerror or err}"
    from edge_agent.errors import StateError

    if isinstance(err, StateError):
        return text
    return None


class Recorder:
    """Buffer readings and envelopes; commit them in batches on the database thread."""

    def __init__(self, outbox: Outbox, settings: TelemetrySection, db_executor: ThreadPoolExecutor):
        self.outbox = outbox
        self.settings = settings
        self.db_executor = db_executor
        self._readings: deque[Reading] = deque()
        self._states: dict[str, tuple[Reading, Reading | None, int, int]] = {}
        self._envelopes: deque[tuple[str, Mapping[str, Any]]] = deque()
        self.dropped_readings = 0
        self.committed_rows = 0
        self.failed_commits = 0            # since start
        self.commit_error: str | None = None  # the cause while commits fail, else None
        # Set (to the reason) when the database is lost: nothing more is committed.
        self.closed: str | None = None
        self._failing_since: float | None = None
        self._logged_at: float | None = None
        self._unlogged = 0
        self._failures_in_a_row = 0
        self._flush_lock = asyncio.Lock()
        self.clock = time.monotonic  # paces the failure lines (a test may replace it)
        self.observers: list[Callable[[Reading], None]] = []

    def submit(self, reading: Reading, state: DeviceState) -> None:
        """Take one reading from the loop (never blocks)."""
        if len(self._readings) >= self.settings.buffer_max:
            self._readings.popleft()
            self.dropped_readings += 1
        self._readings.append(reading)
        self._states[reading.device] = (reading, state.last_good, state.failures, state.timeouts)
        for observe in self.observers:
            try:
                observe(reading)
            except Exception:
                log.exception("reading observer failed", extra={"device": reading.device})

    def observe(self, fn: Callable[[Reading], None]) -> Callable[[], None]:
        """Call `fn(reading)` for every reading taken (cheap, never blocking); return a function
        that stops it."""
        self.observers.append(fn)

        def stop() -> None:
            try:
                self.observers.remove(fn)
            except ValueError:
                pass

        return stop

    def publish(self, kind: str, body: Mapping[str, Any]) -> None:
        """Queue an envelope (alert, decision, event) for the next commit."""
        self._envelopes.append((kind, body))

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a function on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self.db_executor, fn, *args)

    async def run(self) -> None:
        """Flush every flush_interval until cancelled."""
        while True:
            await asyncio.sleep(self.settings.flush_interval)
            try:
                await self.flush()
            except Exception as err:
                # A full disk or a locked file must not stop polling; the buffer is bounded.
                self._failed(err)
            else:
                self._succeeded()

    def _failed(self, err: Exception) -> None:
        now = self.clock()
        self.failed_commits += 1
        self._failures_in_a_row += 1
        cause = commit_problem(err)
        self.commit_error = f"cannot commit: {cause or type(err).__name__}"
        if self._failing_since is None:
            self._failing_since = now
        if self._logged_at is not None and now - self._logged_at < COMMIT_LOG_EVERY_S:
            self._unlogged += 1
            return
        extra = {"cause": cause or f"{type(err).__name__}: {err}",
                 "buffered_readings": len(self._readings),
                 "buffered_envelopes": len(self._envelopes),
                 "dropped_readings": self.dropped_readings,
                 "failures_not_logged": self._unlogged,
                 "next_log_in_s": COMMIT_LOG_EVERY_S}
        self._logged_at, self._unlogged = now, 0
        if cause is None:  # not the disk's doing: a bug, worth its traceback (once a minute)
            log.error("commit failed; retrying at each flush", exc_info=err, extra=extra)
        else:
            log.error("commit failed; retrying at each flush", extra=extra)

    def _succeeded(self) -> None:
        if self._failing_since is None:
            return
        log.warning("commits succeed again", extra={
            "failed_for_s": round(self.clock() - self._failing_since, 1),
            "failures": self._failures_in_a_row,
            "dropped_readings": self.dropped_readings})
        self._failing_since = self._logged_at = None
        self._failures_in_a_row = 0
        self._unlogged = 0
        self.commit_error = None

    async def flush(self) -> list[Row]:
        """Commit what is buffered now; return the outbox rows written."""
        async with self._flush_lock:
            readings = list(self._readings)
            self._readings.clear()
            states = self._states
            self._states = {}
            envelopes = list(self._envelopes)
            self._envelopes.clear()
            if not readings and not states and not envelopes:
                return []
            if self.closed:
                # The database is gone (the agent is stopping): keep nothing, say how much.
                log.error("not committed: the state database is gone", extra={
                    "readings": len(readings), "envelopes": len(envelopes),
                    "reason": self.closed})
                return []
            items: list[tuple[str, Mapping[str, Any]]] = list(envelopes)
            step = self.settings.batch_max
            for i in range(0, len(readings), step):
                items.append(("telemetry",
                              {"readings": [r.to_dict() for r in readings[i:i + step]]}))
            try:
                rows = await self.db(self._commit, items, states)
            except BaseException:
                # Put back what was not committed, within the bound, for the next flush.
                self._readings.extendleft(reversed(readings[-self.settings.buffer_max:]))
                while len(self._readings) > self.settings.buffer_max:
                    self._readings.popleft()
                    self.dropped_readings += 1
                self._envelopes.extendleft(reversed(envelopes))
                for dev, st in states.items():
                    self._states.setdefault(dev, st)
                raise
            self.committed_rows += len(rows)
            return rows

    def _commit(self, items, states) -> list[Row]:
        now = time.time()

        def write_states(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO device_state (device, kind, reading, last_good, failures, timeouts,"
                " updated) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(device) DO UPDATE SET"
                " kind = excluded.kind, reading = excluded.reading,"
                " last_good = COALESCE(excluded.last_good, device_state.last_good),"
                " failures = excluded.failures, timeouts = excluded.timeouts,"
                " updated = excluded.updated",
                [(dev, r.kind, r.to_json(), good.to_json() if good else None, fails, touts, now)
                 for dev, (r, good, fails, touts) in states.items()])

        return self.outbox.enqueue_many(items, also=write_states if states else None)


def forget_devices(db: sqlite3.Connection, keep: set[str]) -> int:
    """Remove the saved state of devices no longer configured; return how many."""
    rows = [r[0] for r in db.execute("SELECT device FROM device_state")]
    gone = [d for d in rows if d not in keep]
    if gone:
        db.executemany("DELETE FROM device_state WHERE device = ?", [(d,) for d in gone])
    return len(gone)


def load_states(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Read every device's saved state (for `status`)."""
    out = {}
    for dev, kind, reading, last_good, failures, timeouts, updated in db.execute(
            "SELECT device, kind, reading, last_good, failures, timeouts, updated"
            " FROM device_state ORDER BY device"):
        out[dev] = {"kind": kind, "reading": json.loads(reading),
                    "last_good": json.loads(last_good) if last_good else None,
                    "failures": failures, "timeouts": timeouts, "updated": updated}
    return out
