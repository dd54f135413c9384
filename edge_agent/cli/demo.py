"""`edge-agent demo`: run the agent on its embedded default config, with a live status view."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from importlib import resources

from edge_agent import logs
from edge_agent.config import parse_text
from edge_agent.state.lock import StateLock


def register(sub) -> None:
    p = sub.add_parser("demo", help="run on the embedded default config (no hardware needed)",
                       description="Run the agent on its embedded default config with a live "
                                   "status view; Ctrl-C stops it.")
    p.add_argument("--state-dir", default=".edge-demo", help="state folder (default .edge-demo)")
    p.add_argument("--seconds", type=float, default=0.0,
                   help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--refresh", type=float, default=5.0, help="seconds between status views")
    p.set_defaults(func=run)


def demo_config(state_dir: str):
    """Return the embedded default config with its state in `state_dir`."""
    text = resources.files("edge_agent.defaults").joinpath("demo.toml").read_text()
    config = parse_text(text, "embedded demo.toml")
    return dataclasses.replace(config, agent=dataclasses.replace(config.agent,
                                                                 state_dir=state_dir))


def run(args) -> int:
    config = demo_config(args.state_dir)
    logs.setup("text", "warning")
    lock = StateLock(config.agent.state_dir)
    lock.acquire()
    try:
        return asyncio.run(_demo(config, args))
    finally:
        lock.release()


async def _demo(config, args) -> int:
    from edge_agent.agent import Agent
    from edge_agent.cli.status import SUMMARY_KEYS
    from edge_agent.cli.output import table

    agent = Agent(config)
    print(f"edge-agent demo: store {config.agent.store}, {len(config.devices)} device(s), "
          f"state in {config.agent.state_dir}. Ctrl-C stops.", flush=True)
    runner = asyncio.create_task(agent.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.seconds if args.seconds > 0 else None
    try:
        while not runner.done():
            await asyncio.sleep(min(args.refresh, 1.0) if deadline else args.refresh)
            if agent.scheduler is None:
                continue
            rows = []
            for st in sorted(agent.scheduler.states(), key=lambda s: s.device.id):
                values = st.last.values if st.last else {}
                shown = ", ".join(f"{k.split('.')[-1]}={values[k]}" for k in SUMMARY_KEYS
                                  if k in values)
                rows.append((st.device.id, st.device.kind,
                             "STALE" if st.is_stale() else "ok", shown,
                             (st.last.reason if st.last and st.last.stale else "") or ""))
            print(table(("device", "kind", "state", "values", "why"), rows), flush=True)
            print(f"-- {agent.summary()}", flush=True)
            if deadline and loop.time() >= deadline:
                agent.request_stop()
        return await runner
    except asyncio.CancelledError:
        agent.request_stop()
        return await runner
