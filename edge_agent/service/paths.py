"""Where a service install keeps its files on each platform, and the default config path."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath, PureWindowsPath
from typing import Mapping

CONFIG_ENV = "EDGE_AGENT_CONFIG"
WINDOWS_FOLDER = "RetailEdge"


@dataclass(frozen=True)
class Layout:
    """The files and folders of an installed agent."""

    config: PurePath
    state_dir: PurePath
    log_hint: str


def layout(windows: bool | None = None, environ: Mapping[str, str] | None = None) -> Layout:
    """Return the platform's standard layout (Windows under %ProgramData%\\RetailEdge)."""
    env = os.environ if environ is None else environ
    windows = os.name == "nt" if windows is None else windows
    if windows:
        base = PureWindowsPath(env.get("ProgramData") or env.get("PROGRAMDATA")
                               or r"C:\ProgramData") / WINDOWS_FOLDER
        return Layout(base / "agent.toml", base / "state", "Windows Event Log (Application)")
    return Layout(PurePosixPath("/etc/edge-agent/agent.toml"),
                  PurePosixPath("/var/lib/edge-agent"), "journalctl -u edge-agent")


def default_config_path(environ: Mapping[str, str] | None = None,
                        windows: bool | None = None) -> str:
    """The config `run`, `status` and `outbox` read without --config ($EDGE_AGENT_CONFIG first)."""
    env = os.environ if environ is None else environ
    return env.get(CONFIG_ENV) or str(layout(windows, env).config)


def config_help() -> str:
    """Help text of --config, naming the default."""
    return (f"TOML config file (default: ${CONFIG_ENV}, else {layout().config})")


def bundled_example(state_dir_toml: str) -> str:
    """The example config shipped in the package, with `state_dir = <state_dir_toml>`."""
    from importlib import resources

    text = resources.files("edge_agent.defaults").joinpath("agent.example.toml").read_text()
    new, count = re.subn(r"(?m)^state_dir = .*$", lambda _: f"state_dir = {state_dir_toml}",
                         text, count=1)
    if count != 1:
        raise ValueError("the bundled example config has no state_dir line to set")
    return new
