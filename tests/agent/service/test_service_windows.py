"""The Windows service class starts and stops the real Agent, with a stand-in pywin32.

pywin32 cannot exist on Linux, so the three modules it provides (win32serviceutil,
win32service, servicemanager) are replaced in sys.modules by small fakes that record what the
service reports to the Service Control Manager and writes to the Event Log. Everything below
them (the config, the Agent, the state database, the loop, the stop from another thread) is
real. What stays unverified without Windows is listed in docs/service.md.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
import types

import pytest

from edge_agent.service import windows
from wait import wait_until

CONFIG = """
[agent]
store = "store-0303"
region = "eu-west"
state_dir = "{state}"

[[devices]]
id = "register"
kind = "host"
interval = 0.2

[devices.host]
temperature = false
"""


class FakeFramework:
    """win32serviceutil.ServiceFramework: records ReportServiceStatus calls."""

    def __init__(self, args):
        self.args = args
        self.reported = []

    def ReportServiceStatus(self, status, *rest):
        self.reported.append(status)


@pytest.fixture
def pywin32(monkeypatch):
    """Put fake pywin32 modules in sys.modules; collect Event Log messages."""
    events: list[tuple[str, str]] = []
    sm = types.ModuleType("servicemanager")
    sm.EVENTLOG_INFORMATION_TYPE = 4
    sm.PYS_SERVICE_STARTED, sm.PYS_SERVICE_STOPPED = 0x1001, 0x1002
    sm.LogMsg = lambda kind, msg_id, args: events.append(("msg", hex(msg_id)))
    sm.LogInfoMsg = lambda text: events.append(("info", text))
    sm.LogWarningMsg = lambda text: events.append(("warning", text))
    sm.LogErrorMsg = lambda text: events.append(("error", text))
    ws = types.ModuleType("win32service")
    ws.SERVICE_STOP_PENDING = 3
    ws.SERVICE_AUTO_START = 2
    wsu = types.ModuleType("win32serviceutil")
    wsu.ServiceFramework = FakeFramework
    for name, mod in (("servicemanager", sm), ("win32service", ws), ("win32serviceutil", wsu)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(windows, "_CLASS", None)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield events
    root.handlers[:], _ = saved[0], root.setLevel(saved[1])


def start_service(tmp_path, monkeypatch, text=CONFIG):
    config = tmp_path / "agent.toml"
    config.write_text(text.format(state=tmp_path / "state"))
    monkeypatch.setenv("EDGE_AGENT_CONFIG", str(config))
    cls = windows.service_class()
    svc = cls(("RetailEdgeAgent",))
    errors = []

    def target():
        try:
            svc.SvcDoRun()
        except BaseException as err:  # SystemExit on failure, as pythonservice would see it.
            errors.append(err)

    thread = threading.Thread(target=target, name="service")
    thread.start()
    return svc, thread, errors


def test_the_service_runs_the_agent_and_stops_it_cleanly_when_the_scm_asks(
        tmp_path, monkeypatch, pywin32):
    svc, thread, errors = start_service(tmp_path, monkeypatch)
    try:
        wait_until(lambda: svc.agent is not None and svc.agent.recorder is not None
                   and svc.agent.recorder.committed_rows > 0, what="a committed reading")
        assert windows.EdgeAgentService is type(svc)  # pythonservice.exe finds it by name.
        svc.SvcStop()  # From this thread, as the SCM's handler thread would.
    finally:
        thread.join(30)
    assert not thread.is_alive()
    assert errors == [] and svc.exit_code == 0
    assert svc.reported == [3]  # SERVICE_STOP_PENDING
    kinds = [e for e in pywin32 if e[0] == "msg"]
    assert kinds == [("msg", "0x1001"), ("msg", "0x1002")]
    assert any(k == "info" and "agent started" in t for k, t in pywin32)
    db = sqlite3.connect(tmp_path / "state" / "agent.db")
    try:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] > 0
    finally:
        db.close()


def test_a_stop_that_comes_before_the_loop_exists_still_stops_the_agent(
        tmp_path, monkeypatch, pywin32):
    cls = windows.service_class()
    svc = cls(("RetailEdgeAgent",))
    svc.SvcStop()
    config = tmp_path / "agent.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    monkeypatch.setenv("EDGE_AGENT_CONFIG", str(config))
    thread = threading.Thread(target=svc.SvcDoRun)
    thread.start()
    thread.join(30)
    assert not thread.is_alive() and svc.exit_code == 0


def test_a_bad_config_is_written_to_the_event_log_and_fails_the_service(
        tmp_path, monkeypatch, pywin32):
    svc, thread, errors = start_service(tmp_path, monkeypatch,
                                        CONFIG.replace('interval = 0.2', 'interval = -1'))
    thread.join(30)
    assert len(errors) == 1 and isinstance(errors[0], SystemExit) and errors[0].code == 2
    assert any(k == "error" and "devices[0].interval" in t for k, t in pywin32)


def test_the_module_imports_without_pywin32_and_says_what_is_missing(monkeypatch):
    for name in ("servicemanager", "win32service", "win32serviceutil"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails, as on Linux
    monkeypatch.setattr(windows, "_CLASS", None)
    with pytest.raises(windows.p.InstallError, match="pip install pywin32"):
        windows.service_class()
