"""Install, upgrade, remove and inspect the agent as a systemd service."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from edge_agent.service import plan as p
from edge_agent.service.paths import bundled_example, layout

UNIT = "edge-agent.service"
USER = "edge-agent"
DEVICE_GROUPS = ("dialout", "lp")
UNIT_EXEC = "/opt/retail-edge/venv/bin/edge-agent"


def unit_template(name: str = UNIT) -> str:
    """The unit file shipped in the package (a copy of packaging/systemd/)."""
    return resources.files("edge_agent.service").joinpath("units", name).read_text()


def agent_command() -> list[str]:
    """How systemd should start this installation's agent."""
    script = Path(sys.executable).parent / "edge-agent"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "edge_agent"]  # A checkout run as `python -m edge_agent`.


def render_unit(command: list[str], template: str | None = None) -> str:
    """The unit with ExecStart pointing at `command`."""
    text = template if template is not None else unit_template()
    quoted = " ".join(_unit_quote(c) for c in command)
    return text.replace(UNIT_EXEC, quoted, 1)


def _unit_quote(arg: str) -> str:
    """Quote one ExecStart argument: % and $ would be expanded by systemd, so they are doubled."""
    if re.fullmatch(r"[A-Za-z0-9_./:=@+-]+", arg):
        return arg
    arg = arg.replace("%", "%%").replace("$", "$$")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def example_config(state_dir: str) -> str:
    """The bundled example config with its state folder set to the service's."""
    return bundled_example(f'"{state_dir}"')


def systemd_running() -> bool:
    """True when systemd is the init system (sd_booted's test)."""
    return os.path.isdir("/run/systemd/system")


def _blockers(root: Path | None, euid: int | None = None, booted: bool | None = None) -> list[str]:
    out = []
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        out.append("installing a system service needs root: run it with sudo")
    if root is None and not (systemd_running() if booted is None else booted):
        out.append("systemd is not running on this machine (no /run/systemd/system); "
                   "run `edge-agent run` under your own supervisor instead")
    if shutil.which("systemctl") is None:
        out.append("systemctl not found")
    return out


def _account_steps(root: Path | None) -> list[p.Step]:
    import grp
    import pwd

    if root is not None:
        return [p.note(f"user {USER} and groups {', '.join(DEVICE_GROUPS)} are not created "
                       f"under --root; create them in the image")]
    steps = []
    for group in DEVICE_GROUPS:
        try:
            grp.getgrnam(group)
        except KeyError:
            steps.append(p.command(["groupadd", "--system", group]))
    try:
        pwd.getpwnam(USER)
        steps.append(p.Step(f"keep existing user {USER}"))
    except KeyError:
        steps.append(p.command(["useradd", "--system", "--user-group", "--no-create-home",
                                "--home-dir", "/var/lib/edge-agent",
                                "--shell", "/usr/sbin/nologin",
                                "--comment", "Retail Edge agent", USER]))
    return steps


def install_plan(root: Path | None = None, start: bool = True,
                 config_source: Path | None = None, unit_dir: str = "/etc/systemd/system",
                 *, euid: int | None = None, booted: bool | None = None) -> p.Plan:
    """Steps of `service install`; running it again upgrades (new unit, same config and state)."""
    lay = layout(windows=False)
    prefix = Path(root) if root else Path("/")
    config = prefix / str(lay.config).lstrip("/")
    unit = prefix / unit_dir.lstrip("/") / UNIT
    plan = p.Plan(blockers=_blockers(root, euid, booted))
    plan.steps += _account_steps(root)
    if config_source is not None:
        text = Path(config_source).read_text(encoding="utf-8")
    else:
        text = example_config(str(lay.state_dir))
    plan.steps.append(p.make_dir(config.parent, 0o750))
    plan.steps.append(p.write_file(config, text, 0o640, keep_existing=True,
                                   group=None if root else USER))
    if not config.exists() and config_source is None:
        plan.steps.append(p.note(f"edit store and region in {lay.config} before the agent "
                                 f"reports to a hub; `systemctl reload {UNIT}` applies devices"))
    plan.steps.append(p.note(f"state stays in {lay.state_dir} (systemd's StateDirectory); "
                             f"an upgrade keeps it and migrates it forward"))
    command = agent_command()
    if command[1:2] == ["-m"]:
        plan.steps.append(p.note(f"no edge-agent script next to {sys.executable}: the unit runs "
                                 f"`python -m edge_agent`, which needs the package pip-installed"))
    plan.steps.append(p.write_file(unit, render_unit(command), 0o644))
    systemctl = ["systemctl"] + ([f"--root={prefix}"] if root else [])
    if root is None:
        plan.steps.append(p.command(systemctl + ["daemon-reload"]))
    plan.steps.append(p.command(systemctl + ["enable", UNIT]))
    if start and root is None:
        # restart, not start: on an upgrade the running agent picks up the new code.
        plan.steps.append(p.command(systemctl + ["restart", UNIT]))
    return plan


def uninstall_plan(root: Path | None = None, unit_dir: str = "/etc/systemd/system",
                   *, euid: int | None = None, booted: bool | None = None) -> p.Plan:
    """Steps of `service uninstall`: stop, disable, remove the unit; keep config and state."""
    lay = layout(windows=False)
    prefix = Path(root) if root else Path("/")
    systemctl = ["systemctl"] + ([f"--root={prefix}"] if root else [])
    plan = p.Plan(blockers=_blockers(root, euid, booted))
    if root is None:
        # ok_codes: disabling a unit that is not installed is not an error for an uninstall.
        plan.steps.append(p.command(systemctl + ["disable", "--now", UNIT], ok_codes=(0, 1, 5)))
    else:
        plan.steps.append(p.command(systemctl + ["disable", UNIT], ok_codes=(0, 1, 5)))
    plan.steps.append(p.remove_file(prefix / unit_dir.lstrip("/") / UNIT))
    if root is None:
        plan.steps.append(p.command(systemctl + ["daemon-reload"]))
    plan.steps.append(p.note(f"kept {lay.config} and {lay.state_dir} (the outbox and device "
                             f"state); remove them by hand to forget this store"))
    return plan


STATUS_PROPS = ("LoadState", "ActiveState", "SubState", "UnitFileState", "MainPID",
                "NRestarts", "StatusText", "ExecMainStartTimestamp")


def status() -> dict[str, str]:
    """What systemd says about the unit (systemctl show)."""
    if shutil.which("systemctl") is None or not systemd_running():
        raise p.InstallError("systemd is not running on this machine; "
                             "`edge-agent status` shows the agent's state from disk")
    done = subprocess.run(["systemctl", "show", UNIT, "--no-pager",
                           "--property=" + ",".join(STATUS_PROPS)],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise p.InstallError(f"systemctl show failed: {done.stderr.strip()}")
    return parse_show(done.stdout)


def parse_show(text: str) -> dict[str, str]:
    """Parse `systemctl show` output (KEY=value lines)."""
    out = {}
    for line in text.split("\n"):  # Only newlines: values may hold other line separators.
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out
