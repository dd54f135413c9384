"""systemd's notify protocol (sd_notify) without libsystemd: READY, WATCHDOG, STATUS, STOPPING.

A datagram to the unix socket named by $NOTIFY_SOCKET (a leading `@` is Linux's abstract
namespace). Outside systemd the variable is unset and every call does nothing, so the agent and
the hub can always use it. Sends never block: a full socket queue drops the message, as
libsystemd's sd_notify would fail, rather than stall the event loop.

The watchdog pings (WATCHDOG=1) are sent only while the agent makes progress: the ping task runs
on the event loop (a blocked loop sends nothing), the database thread answers a probe, and some
device has delivered a reading within what its interval and backoff allow. When any of these
stops, the pings stop and systemd restarts the service after WatchdogSec.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

# Pace of STATUS= updates when systemd asked for no watchdog.
STATUS_EVERY_S = 5.0
# The database thread may be busy (a budget pass, a slow SD card) this long before it is stuck.
DB_STALL_MIN_S = 30.0
# Test-only: with this variable set to N, SIGUSR2 blocks the event loop for N seconds, so a test
# can check that a hung loop stops the watchdog pings. Never set it in production.
DEBUG_HANG_ENV = "EDGE_AGENT_DEBUG_HANG_S"
HANG_STATUS = "STATUS=test-only hang: the event loop is blocked"


class Notifier:
    """Send notify-protocol messages to the service manager, if there is one."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_s = _watchdog_seconds(env)
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when a service manager listens (NOTIFY_SOCKET is set and usable)."""
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` lines in one datagram; return True if it left."""
        if self.address is None:
            return False
        data = "\n".join(fields).encode("utf-8", "replace")
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(data, self.address)
            return True
        except (OSError, ValueError) as err:  # ValueError: a NUL byte in the path.
            if not self._warned:  # Once: a missing socket would otherwise log every ping.
                log.warning("cannot notify the service manager",
                            extra={"socket": os.environ.get("NOTIFY_SOCKET", ""),
                                   "error": f"{type(err).__name__}: {err}"})
                self._warned = True
            return False

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # Abstract namespace: no file, name starts with NUL.
    if value.startswith("/"):
        return value
    return None  # Unset, or a kind we do not speak (vsock:).


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """The watchdog interval systemd set for this process (sd_watchdog_enabled), or None."""
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    # isascii() too: str.isdigit() accepts '²', which int() refuses (found by hypothesis).
    if not (usec.isascii() and usec.isdigit()) or int(usec) == 0:
        return None
    if pid and (not (pid.isascii() and pid.isdigit()) or int(pid) != os.getpid()):
        return None  # Meant for another process (our parent, say).
    return int(usec) / 1e6


def notify(*fields: str) -> bool:
    """Send one message with a throwaway Notifier (for one-off READY=1 or STOPPING=1)."""
    notifier = Notifier()
    try:
        return notifier.send(*fields)
    finally:
        notifier.close()


@dataclass
class Progress:
    """When each part of the agent last showed it is alive (time.monotonic())."""

    db_ok_at: float
    outbox_rows: int | None = None


def readings_stall_s(agent: Any) -> float | None:
    """Seconds without any reading after which the agent counts as stuck (None: no devices).

    A device reads at least every max(interval, backoff_max) plus jitter plus its timeout, so the
    fastest device bounds the gap; twice that, plus slack, is clearly stuck.
    """
    gaps = [max(d.interval, d.backoff_max) * (1 + d.jitter) + d.timeout
            for d in agent.config.devices if d.enabled]
    return 2 * min(gaps) + 10.0 if gaps else None


def healthy(agent: Any, progress: Progress, now: float, db_stall_s: float) -> str | None:
    """Return why the agent is not making progress, or None when it is."""
    if agent.recorder is None or agent.db is None:
        return "not started"
    if now - progress.db_ok_at > db_stall_s:
        return f"state database thread silent for {now - progress.db_ok_at:.0f} s"
    stall = readings_stall_s(agent)
    if stall is not None and now - agent.last_progress > stall:
        return f"no reading for {now - agent.last_progress:.0f} s"
    return None


def status_line(agent: Any, progress: Progress) -> str:
    """The one-line STATUS= summary: devices, stale, failing, outbox depth."""
    s = agent.summary()
    rows = "?" if progress.outbox_rows is None else progress.outbox_rows
    return (f"{s['devices']} devices, {s['stale']} stale, {s['failing']} failing; "
            f"outbox {rows} rows")


async def keep_notified(check: Callable[[], str | None], status: Callable[[], str],
                        notifier: Notifier | None = None, name: str = "agent") -> None:
    """Tell the service manager READY=1, then WATCHDOG=1 while `check()` finds no problem.

    `check` returns why the process is stuck, or None; `status` returns the STATUS= line. Runs
    until cancelled, then sends STOPPING=1. The hub's `serve` uses this with its own check.
    """
    notifier = notifier or Notifier()
    if not notifier.enabled:
        return
    _install_debug_hang(notifier)
    period = notifier.watchdog_s / 2 if notifier.watchdog_s else STATUS_EVERY_S
    last_status = f"started; {status()}"
    notifier.send("READY=1", f"STATUS={last_status}", f"MAINPID={os.getpid()}")
    log.info("service manager notified", extra={"watchdog_s": notifier.watchdog_s or 0})
    last_problem = None
    try:
        while True:
            problem = check()
            if problem != last_problem:
                if problem:
                    log.error(f"{name} not progressing; watchdog pings withheld",
                              extra={"reason": problem})
                else:
                    log.info(f"{name} progressing again")
                last_problem = problem
            fields = []
            if notifier.watchdog_s and problem is None:
                fields.append("WATCHDOG=1")
            line = f"stuck: {problem}" if problem else status()
            if line != last_status:
                fields.append(f"STATUS={line}")
                last_status = line
            if fields:
                notifier.send(*fields)
            await asyncio.sleep(period)
    finally:
        # Cancelled when the process stops (SIGTERM, the service manager's stop).
        notifier.send("STOPPING=1", "STATUS=stopping")
        notifier.close()


async def systemd_notifier(agent: Any) -> None:
    """Agent service: READY=1 at start, WATCHDOG=1 while the agent progresses, STOPPING=1."""
    notifier = Notifier()
    if not notifier.enabled:
        return
    db_stall_s = max(DB_STALL_MIN_S, 2 * (notifier.watchdog_s or 0))
    progress = Progress(db_ok_at=time.monotonic())
    probe: list[asyncio.Future] = []

    def check() -> str | None:
        if not probe or probe[0].done():
            probe[:] = [asyncio.ensure_future(_probe_db(agent, progress))]
        return healthy(agent, progress, time.monotonic(), db_stall_s)

    try:
        await keep_notified(check, lambda: status_line(agent, progress), notifier)
    finally:
        for task in probe:
            task.cancel()


async def _probe_db(agent: Any, progress: Progress) -> None:
    """Ask the database thread for the outbox depth; its answer shows the thread is alive."""
    db = agent.db
    if db is None:
        return
    try:
        rows = await agent.recorder.db(
            lambda: db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except asyncio.CancelledError:
        raise
    except Exception as err:
        log.warning("state database probe failed", extra={"error": f"{type(err).__name__}: {err}"})
        return
    progress.outbox_rows = rows
    progress.db_ok_at = time.monotonic()


def _install_debug_hang(notifier: Notifier) -> None:
    """Test-only: SIGUSR2 blocks the event loop for $EDGE_AGENT_DEBUG_HANG_S seconds, saying
    STATUS=test-only hang first, so a test knows from when nothing more may come."""
    seconds = os.environ.get(DEBUG_HANG_ENV, "")
    if not seconds or not hasattr(signal, "SIGUSR2"):
        return
    try:
        hang = float(seconds)
    except ValueError:
        return
    log.warning("test-only hang switch armed: SIGUSR2 blocks the event loop",
                extra={"seconds": hang})
    # Deliberately blocking: this simulates a collector that froze the loop.
    def block() -> None:
        notifier.send(HANG_STATUS)
        time.sleep(hang)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, block)
