"""The one way tests wait: poll a predicate until it holds, or fail naming what never happened.

    wait_until(predicate, timeout, what)         in threads and plain tests
    await until(predicate, timeout, what)        inside an event loop (sleeps with asyncio)

`predicate()` is polled every `interval` seconds; its first truthy value is returned. If the
timeout passes first, AssertionError says what was awaited, for how long, and the last value
seen (and `detail()`, if given: a log tail, say). `gone()` may return why waiting is pointless
(a process that exited), which fails at once instead of at the timeout.

The timeout is an upper bound for a loaded 2-core machine, never a speed the test asserts:
a test that passes slowly passes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

# Upper bound of every wait unless a test says otherwise: a cap, never a speed. Under
# `stress-ng --cpu 2` with the suite's background tests alongside, starting a hub process
# alone once took 20 s (issue 11); a passing test never waits for the cap.
PATIENCE_S = 120.0


def _failure(what: str, waited: float, value: Any, reason: str | None,
             detail: Callable[[], str] | None) -> AssertionError:
    head = (f"gave up waiting for {what}: {reason}" if reason else
            f"timed out after {waited:.0f} s waiting for {what}")
    text = f"{head} (last value: {value!r})"
    if detail is not None:
        text += f"\n{detail()}"
    return AssertionError(text)


def wait_until(predicate: Callable[[], Any], timeout: float = PATIENCE_S,
               what: str = "the condition", *, interval: float = 0.02,
               gone: Callable[[], str | None] | None = None,
               detail: Callable[[], str] | None = None) -> Any:
    """Poll predicate() until it is truthy and return its value; fail naming `what`."""
    start = time.monotonic()
    while True:
        value = predicate()
        if value:
            return value
        reason = gone() if gone is not None else None
        if reason or time.monotonic() - start > timeout:
            raise _failure(what, timeout, value, reason, detail)
        time.sleep(interval)


async def until(predicate: Callable[[], Any], timeout: float = PATIENCE_S,
                what: str = "the condition", *, interval: float = 0.005,
                detail: Callable[[], str] | None = None) -> Any:
    """wait_until for coroutines: the event loop keeps running while it waits."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() - start > timeout:
            raise _failure(what, timeout, value, None, detail)
        await asyncio.sleep(interval)
