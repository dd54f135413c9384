"""`edge-agent run`: run the agent in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

from edge_common import logs
from edge_agent.config import load_config
from edge_agent.state.lock import StateLock
from edge_agent.service.paths import config_help, default_config_path


def register(sub) -> None:
    p = sub.add_parser("run", help="run the agent in the foreground",
                       description="Run the agent in the foreground; logs go to stderr. "
                                   "SIGHUP reloads the config, SIGTERM stops it.")
    p.add_argument("--config", default=default_config_path(), help=config_help())
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   help="override [agent].log_level")
    p.set_defaults(func=run)


def run(args) -> int:
    # Until the agent installs its handler, a SIGHUP (a service manager's reload right after
    # start) would kill the process by default; ignore it for those first moments instead.
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    config = load_config(args.config)
    logs.setup(args.log_format, args.log_level or config.agent.log_level)
    lock = StateLock(config.agent.state_dir)
    lock.acquire()
    try:
        from edge_agent.agent import Agent

        agent = Agent(config, args.config)
        return asyncio.run(agent.run())
    finally:
        lock.release()
