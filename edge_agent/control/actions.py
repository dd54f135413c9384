"""The allow-listed actions: one async function each, never a shell string.

Each takes the agent, the device id (or None) and the checked arguments, and returns a small
dict (the result's `output`), or raises ActionFailed with a reason. Nothing here builds a
command line or runs a process; arguments reach only typed parameters of Python calls.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from typing import Any, Awaitable, Callable

from edge_agent.errors import DeviceError
from edge_agent.reading import format_ts

ESC, GS = 0x1B, 0x1D
REPOLL_WAIT_S = 2.0  # beyond the device's own timeout


class ActionFailed(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


def _runner(agent, device: str):
    runners = getattr(agent.scheduler, "runners", {}) if agent.scheduler else {}
    entry = runners.get(device)
    if entry is None:
        raise ActionFailed("unknown_device", f"no running device {device!r} in this store")
    return entry[0]


async def repoll(agent, device: str, args: dict) -> dict:
    runner = _runner(agent, device)
    st = runner.state
    before, prev = st.polls, st.last
    runner.wake.set()
    deadline = time.monotonic() + runner.device.timeout + REPOLL_WAIT_S
    # poll_once counts the poll when it starts and sets state.last when it ends.
    while st.polls == before or st.last is prev:
        if time.monotonic() > deadline:
            raise ActionFailed("timeout", "the device was not polled in time")
        await asyncio.sleep(0.02)
    reading = st.last
    ts = reading.ts if isinstance(reading.ts, str) else format_ts(reading.ts)
    return {"stale": reading.stale, "reason": reading.reason or "",
            "status": str(reading.values.get("device.status", "")), "ts": ts}


def _printer(agent, device: str):
    runner = _runner(agent, device)
    collector = runner.collector
    send = getattr(collector, "send", None)
    if runner.device.kind != "escpos" or send is None:
        raise ActionFailed("not_a_printer", f"{device} is not a receipt printer")
    return send


async def _send(send: Callable[[bytes], Awaitable[None]], data: bytes) -> None:
    try:
        await asyncio.wait_for(send(data), 10.0)
    except asyncio.TimeoutError as err:
        raise ActionFailed("timeout", "the printer did not take the bytes in time") from err
    except (DeviceError, OSError) as err:
        raise ActionFailed("device_error", str(err)[:200]) from err


def test_receipt(store: str, device: str, text: str, now: float) -> bytes:
    """ESC @, a few lines, feed, partial cut. `text` passed the SAFE_TEXT pattern."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    lines = ["RETAIL EDGE TEST PRINT", f"store {store}", f"printer {device}", stamp]
    if text:
        lines.append(text)
    body = "\n".join(lines).encode("ascii", "replace") + b"\n\n\n\n"
    return bytes((ESC, 0x40)) + body + bytes((GS, 0x56, 66, 0))


async def test_print(agent, device: str, args: dict) -> dict:
    send = _printer(agent, device)
    data = test_receipt(agent.config.agent.store, device, args.get("text", ""), time.time())
    await _send(send, data)
    return {"bytes": len(data)}


async def recover(agent, device: str, args: dict) -> dict:
    from edge_agent.collectors.escpos import protocol

    send = _printer(agent, device)
    await _send(send, protocol.recover_request(bool(args.get("clear_buffer", False))))
    return {"sent": "DLE ENQ " + ("2" if args.get("clear_buffer") else "1")}


async def reset(agent, device: str, args: dict) -> dict:
    from edge_agent.collectors.escpos import protocol

    send = _printer(agent, device)
    await _send(send, protocol.recover_request(True) + bytes((ESC, 0x40)))
    return {"sent": "DLE ENQ 2, ESC @"}


async def reload_config(agent, device: None, args: dict) -> dict:
    if not agent.reload():
        raise ActionFailed("config_rejected", "the config file was not applied; the running "
                                              "config is kept (see the agent's log)")
    return {"reloads": agent.reloads, "devices": len(agent.config.devices)}


RESULT_GRACE_S = 5.0  # how long a restart waits for its own result to reach the broker


async def restart_agent(agent, device: None, args: dict) -> dict:
    # The result is committed by the controller first; the agent then waits (bounded) until
    # the broker has it, and stops with 75: the service manager (Restart=on-failure) starts
    # it again. If the link is down the result stays in the outbox and goes after the restart.
    async def stop_after(seq: int) -> None:
        deadline = time.monotonic() + RESULT_GRACE_S
        while time.monotonic() < deadline:
            if not await agent._db(_in_outbox, agent.db, seq):
                break
            await asyncio.sleep(0.05)
        agent.request_stop(75)

    agent.control.after_result = stop_after
    return {"restarting": True, "exit_code": 75}


def _in_outbox(db, seq: int) -> bool:
    return db.execute("SELECT 1 FROM outbox WHERE seq = ?", (seq,)).fetchone() is not None


async def diagnostics(agent, device: str | None, args: dict) -> dict:
    from edge_agent import __version__

    out: dict[str, Any] = {"agent_version": __version__, "python": platform.python_version(),
                           "platform": platform.platform()[:80], "pid": os.getpid(),
                           "uptime_s": round(time.monotonic() - agent.started_at, 1),
                           "reloads": agent.reloads}
    out.update({f"summary.{k}": v for k, v in agent.summary().items()})
    if agent.outbox is not None:
        stats = await agent._db(agent.outbox.stats)
        out["outbox.rows"], out["outbox.bytes"] = stats["rows"], stats["bytes"]
    client = getattr(agent, "sync_client", None)
    if client is not None:
        out["sync.connected"] = client.connected
        out["sync.published"] = client.published
    if device is not None:
        runner = _runner(agent, device)
        st = runner.state
        out.update({"device.kind": runner.device.kind, "device.polls": st.polls,
                    "device.failures": st.failures, "device.timeouts": st.timeouts,
                    "device.last_reason": (st.last.reason or "") if st.last else "never polled"})
    try:
        out["disk_free_mb"] = round(os.statvfs(agent.config.agent.state_dir).f_bavail *
                                    os.statvfs(agent.config.agent.state_dir).f_frsize / 2**20)
    except (OSError, AttributeError):
        pass
    return out


ACTIONS: dict[str, Callable[..., Awaitable[dict]]] = {
    "repoll": repoll, "test_print": test_print, "recover": recover, "reset": reset,
    "reload_config": reload_config, "restart_agent": restart_agent,
    "diagnostics": diagnostics,
}
