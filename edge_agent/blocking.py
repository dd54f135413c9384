"""Run blocking device I/O (serial ports, psutil) off the event loop, on a bounded thread pool.

A device whose blocking call hangs must cost one thread, not the agent: each device's task names
itself with `owner()`, and while a call it abandoned (its poll timed out) is still stuck in a
thread, its next call fails at once with DeviceTimeout instead of taking another thread. The
workers are daemon threads, so a call stuck forever cannot keep the process from exiting on
SIGTERM (concurrent.futures' pool joins its threads at exit).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import queue
import sys
import threading
from concurrent.futures import Future
from typing import Any, Awaitable, Callable, TypeVar

from edge_agent.errors import DeviceTimeout

T = TypeVar("T")

# Bounded: a hung device holds at most one worker (see above), so this many devices would have
# to hang at once before the others queue for a thread.
MAX_WORKERS = 16

_owner: contextvars.ContextVar[str | None] = contextvars.ContextVar("device_io_owner",
                                                                   default=None)
# Per owner, the calls whose caller gave up while they still ran in a thread.
_abandoned: dict[str, set[Future]] = {}
_lock = threading.Lock()


class _Pool:
    """A fixed-size pool of daemon worker threads fed by one queue."""

    def __init__(self, workers: int):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._size = workers
        self._threads: list[threading.Thread] = []
        self._outstanding = 0  # jobs submitted and not finished
        self._closed = False

    def submit(self, fn: Callable[[], Any]) -> Future:
        fut: Future = Future()
        with _lock:
            if self._closed:
                raise RuntimeError("device-I/O pool is shut down")
            # Start threads lazily, one per outstanding job, up to the bound.
            self._outstanding += 1
            if self._outstanding > len(self._threads) and len(self._threads) < self._size:
                t = threading.Thread(target=self._work, name=f"device-io-{len(self._threads)}",
                                     daemon=True)
                self._threads.append(t)
                t.start()
        self._jobs.put((fut, fn))
        return fut

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fut, fn = job
            if fut.set_running_or_notify_cancel():
                try:
                    result = fn()
                except BaseException as err:  # noqa: BLE001 - handed to the awaiting caller
                    fut.set_exception(err)
                else:
                    fut.set_result(result)
            with _lock:
                self._outstanding -= 1

    def shutdown(self) -> None:
        with _lock:
            self._closed = True
        for _ in self._threads:
            self._jobs.put(None)

    def alive(self) -> int:
        return sum(1 for t in self._threads if t.is_alive())


_pool: _Pool | None = None


def _get_pool() -> _Pool:
    global _pool
    with _lock:
        if _pool is None:
            _pool = _Pool(MAX_WORKERS)
        return _pool


def owner(name: str | None) -> None:
    """Name the device the current task does blocking I/O for (set once, at the task's start)."""
    _owner.set(name)


def hung(name: str) -> int:
    """Return how many abandoned calls of a device are still stuck in a thread."""
    with _lock:
        return len(_abandoned.get(name, ()))


async def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run fn(*args, **kwargs) on the device-I/O pool and await its result.

    Raise DeviceTimeout at once if this task's device still has an abandoned call in a thread.
    """
    name = _owner.get()
    if name is not None and hung(name):
        raise DeviceTimeout("a previous call to the device is still hung")
    fut = _get_pool().submit(functools.partial(fn, *args, **kwargs))
    try:
        return await asyncio.wrap_future(fut)
    except asyncio.CancelledError:
        if name is not None and not fut.done():
            with _lock:
                _abandoned.setdefault(name, set()).add(fut)
            fut.add_done_callback(functools.partial(_forget, name))
        raise


def _forget(name: str, fut: Future) -> None:
    with _lock:
        calls = _abandoned.get(name)
        if calls is not None:
            calls.discard(fut)
            if not calls:
                del _abandoned[name]


async def within(aw: Awaitable[T], seconds: float) -> T:
    """Await `aw` for at most `seconds`; raise asyncio.TimeoutError past that.

    Use this, not asyncio.wait_for, in loops that must stop when cancelled: on Python 3.11
    wait_for loses a cancellation that arrives as the awaited work finishes (CPython
    gh-86296), which left a cancelled device task polling forever.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await aw
    return await asyncio.wait_for(aw, seconds)  # pragma: no cover - Python 3.10


def threads() -> int:
    """Return how many device-I/O threads are alive (for tests and diagnostics)."""
    return _pool.alive() if _pool is not None else 0


def shutdown() -> None:
    """Stop the pool without waiting for hung workers (they are daemon threads)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown()
