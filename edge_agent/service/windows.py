"""The agent as a Windows service (pywin32): run, stop, install, remove, and log to the Event Log.

pywin32 is imported only inside the functions that need it, so this module imports on Linux and
its tests run there with a stand-in pywin32 (tests/agent/service/test_service_windows.py). The
service class is built by `service_class()` on first use: pythonservice.exe finds it through the
module-level name `EdgeAgentService`, which resolves lazily (PEP 562).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path, PureWindowsPath
from typing import Any, Mapping

from edge_agent.service import plan as p
from edge_agent.service.paths import bundled_example, layout

SERVICE_NAME = "RetailEdgeAgent"
DISPLAY_NAME = "Retail Edge agent"
DESCRIPTION = ("Watches the store's receipt printers, scanners and register, predicts "
               "failures and syncs with the Retail Edge hub.")
CLASS_STRING = "edge_agent.service.windows.EdgeAgentService"
# Restart after 5 s, 5 s, then 60 s; the failure count resets after 10 minutes without one,
# as the systemd unit's StartLimitIntervalSec does.
FAILURE_RESET_S = 600
FAILURE_ACTIONS = "restart/5000/restart/5000/restart/60000"
# sc.exe exit codes that are fine: 1062 the service was not started (stopping it).
SC_NOT_STARTED = 1062


class EventLogHandler(logging.Handler):
    """Send log records to the Windows Event Log (Application) through servicemanager."""

    def __init__(self, servicemanager: Any):
        super().__init__()
        self.sm = servicemanager

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.ERROR:
                self.sm.LogErrorMsg(text)
            elif record.levelno >= logging.WARNING:
                self.sm.LogWarningMsg(text)
            else:
                self.sm.LogInfoMsg(text)
        except Exception:
            self.handleError(record)


def _pywin32():
    try:
        import servicemanager
        import win32service
        import win32serviceutil
    except ImportError as err:
        raise p.InstallError("the Windows service needs pywin32: pip install pywin32") from err
    return servicemanager, win32service, win32serviceutil


_CLASS = None


def service_class():
    """Build (once) the win32serviceutil.ServiceFramework subclass that hosts the agent."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    servicemanager, win32service, win32serviceutil = _pywin32()

    class EdgeAgentService(win32serviceutil.ServiceFramework):
        """The agent under the Service Control Manager: SvcDoRun runs it, SvcStop stops it."""

        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args):
            win32serviceutil.ServiceFramework.__init__(self, args)
            self.agent = None
            self.loop: asyncio.AbstractEventLoop | None = None
            self.stop_requested = threading.Event()
            self.exit_code: int | None = None

        def SvcStop(self):
            # Called on the SCM's thread while SvcDoRun runs the loop on the service thread.
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
            self.stop_requested.set()
            loop, agent = self.loop, self.agent
            if loop is not None and agent is not None:
                loop.call_soon_threadsafe(agent.request_stop)

        def SvcDoRun(self):
            servicemanager.LogMsg(servicemanager.EVENTLOG_INFORMATION_TYPE,
                                  servicemanager.PYS_SERVICE_STARTED, (self._svc_name_, ""))
            self.exit_code = run_service(self, servicemanager)
            servicemanager.LogMsg(servicemanager.EVENTLOG_INFORMATION_TYPE,
                                  servicemanager.PYS_SERVICE_STOPPED, (self._svc_name_, ""))
            if self.exit_code:
                # An exception makes the SCM see a failure and apply the restart actions.
                raise SystemExit(self.exit_code)

    _CLASS = EdgeAgentService
    return _CLASS


def __getattr__(name: str):
    if name == "EdgeAgentService":
        return service_class()
    raise AttributeError(name)


def run_service(svc: Any, servicemanager: Any, environ: Mapping[str, str] | None = None) -> int:
    """Load the config from %ProgramData%\\RetailEdge and run the agent until SvcStop."""
    from edge_common import logs
    from edge_agent.config import load_config
    from edge_agent.errors import ConfigError, EdgeError
    from edge_agent.service.paths import default_config_path
    from edge_agent.state.lock import StateLock

    handler = EventLogHandler(servicemanager)
    handler.setFormatter(logs.TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    log = logging.getLogger("edge_agent.service")
    path = default_config_path(environ, windows=True)
    try:
        config = load_config(path)
    except ConfigError as err:
        for problem in err.problems:
            log.error("config rejected; the service stops", extra={"file": path,
                                                                  "problem": str(problem)})
        return 2
    root.setLevel(config.agent.log_level.upper())
    lock = StateLock(config.agent.state_dir)
    try:
        lock.acquire()
    except EdgeError as err:
        log.error("cannot start", extra={"error": str(err)})
        return 1
    try:
        from edge_agent.agent import Agent

        async def main() -> int:
            svc.agent = Agent(config, path)
            svc.loop = asyncio.get_running_loop()
            if svc.stop_requested.is_set():  # SvcStop came before the loop existed.
                svc.agent.request_stop()
            return await svc.agent.run()

        return asyncio.run(main())
    except Exception:
        log.exception("agent failed")
        return 1
    finally:
        lock.release()


def example_config(state_dir: PureWindowsPath) -> str:
    """The bundled example config with a Windows state folder (a TOML literal string)."""
    if "'" in str(state_dir):
        raise p.InstallError(f"cannot write {state_dir} as a TOML literal string")
    return bundled_example(f"'{state_dir}'")


def _is_admin() -> bool:
    try:
        import ctypes

        return bool(ctypes.windll.shell32.IsUserAnAdmin())  # type: ignore[attr-defined]
    except Exception:
        return False


def _blockers(admin: bool | None, pywin32: bool | None) -> list[str]:
    out = []
    if not (_is_admin() if admin is None else admin):
        out.append("installing a Windows service needs an administrator prompt")
    if pywin32 is None:
        try:
            _pywin32()
            pywin32 = True
        except p.InstallError:
            pywin32 = False
    if not pywin32:
        out.append("pywin32 is missing: pip install pywin32")
    return out


def install_plan(environ: Mapping[str, str] | None = None, start: bool = True,
                 config_source: str | None = None, *, admin: bool | None = None,
                 pywin32: bool | None = None) -> p.Plan:
    """Steps of `service install` on Windows; running it again upgrades in place."""
    env = os.environ if environ is None else environ
    lay = layout(windows=True, environ=env)
    plan = p.Plan(blockers=_blockers(admin, pywin32))
    base = lay.config.parent
    plan.steps.append(p.make_dir(base))  # type: ignore[arg-type]
    plan.steps.append(p.make_dir(lay.state_dir))  # type: ignore[arg-type]
    if config_source is not None:
        text = Path(config_source).read_text(encoding="utf-8")
    else:
        text = example_config(lay.state_dir)  # type: ignore[arg-type]
    plan.steps.append(p.write_file(Path(str(lay.config)), text, None, keep_existing=True))
    plan.steps.append(p.Step(
        f"register service {SERVICE_NAME} ({DISPLAY_NAME}): pythonservice.exe hosting "
        f"{CLASS_STRING}, automatic (delayed) start, as LocalSystem; update it if present",
        _register))
    plan.steps.append(p.Step(f"register Event Log source {SERVICE_NAME} (Application log)",
                             _event_source))
    plan.steps.append(p.command(["sc.exe", "failure", SERVICE_NAME, "reset=",
                                 str(FAILURE_RESET_S), "actions=", FAILURE_ACTIONS]))
    plan.steps.append(p.command(["sc.exe", "failureflag", SERVICE_NAME, "1"]))
    plan.steps.append(p.note(f"config {lay.config}, state {lay.state_dir}; an upgrade keeps "
                             f"both and migrates the state forward"))
    if start:
        plan.steps.append(p.command(["sc.exe", "stop", SERVICE_NAME], ok_codes=(0, SC_NOT_STARTED)))
        plan.steps.append(p.command(["sc.exe", "start", SERVICE_NAME]))
    return plan


def uninstall_plan(environ: Mapping[str, str] | None = None, *, admin: bool | None = None,
                   pywin32: bool | None = None) -> p.Plan:
    """Steps of `service uninstall` on Windows: stop and remove; keep config and state."""
    lay = layout(windows=True, environ=os.environ if environ is None else environ)
    plan = p.Plan(blockers=_blockers(admin, pywin32))
    plan.steps.append(p.command(["sc.exe", "stop", SERVICE_NAME], ok_codes=(0, SC_NOT_STARTED)))
    plan.steps.append(p.Step(f"remove service {SERVICE_NAME}", _remove))
    plan.steps.append(p.note(f"kept {lay.config.parent} (config and state)"))
    return plan


def _register() -> None:
    _, win32service, win32serviceutil = _pywin32()
    kwargs = dict(startType=win32service.SERVICE_AUTO_START, description=DESCRIPTION,
                  delayedstart=True)
    try:
        win32serviceutil.InstallService(CLASS_STRING, SERVICE_NAME, DISPLAY_NAME, **kwargs)
    except Exception as err:
        if getattr(err, "winerror", None) != 1073:  # ERROR_SERVICE_EXISTS: an upgrade.
            raise p.InstallError(f"cannot register the service: {err}") from err
        win32serviceutil.ChangeServiceConfig(CLASS_STRING, SERVICE_NAME,
                                             displayName=DISPLAY_NAME, **kwargs)


def _event_source() -> None:
    servicemanager, _, _ = _pywin32()
    import win32evtlogutil

    win32evtlogutil.AddSourceToRegistry(SERVICE_NAME, servicemanager.__file__, "Application")


def _remove() -> None:
    _, _, win32serviceutil = _pywin32()
    try:
        win32serviceutil.RemoveService(SERVICE_NAME)
    except Exception as err:
        if getattr(err, "winerror", None) != 1060:  # ERROR_SERVICE_DOES_NOT_EXIST
            raise p.InstallError(f"cannot remove the service: {err}") from err


STATES = {1: "stopped", 2: "start pending", 3: "stop pending", 4: "running",
          5: "continue pending", 6: "pause pending", 7: "paused"}


def status() -> dict[str, str]:
    """What the Service Control Manager says about the service."""
    _, _, win32serviceutil = _pywin32()
    try:
        st = win32serviceutil.QueryServiceStatus(SERVICE_NAME)
    except Exception as err:
        if getattr(err, "winerror", None) == 1060:
            return {"service": SERVICE_NAME, "state": "not installed"}
        raise p.InstallError(f"cannot query the service: {err}") from err
    return {"service": SERVICE_NAME, "state": STATES.get(st[1], str(st[1]))}
