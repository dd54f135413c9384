"""A pytest plugin: run a long test's scenario in a background thread while the suite runs.

A test marked `@pytest.mark.background(scenario=ScenarioClass)` takes minutes of mostly
waiting (a broker kept down, say). Run in line it would add those minutes to the suite's wall
time; here it costs almost nothing:

- `pytest_collection_modifyitems` (trylast, so after `-k`/`-m` deselection) moves marked tests
  to the end of the run;
- `pytest_runtestloop` (a wrapper), when the run executes tests and a marked test is among the
  selected items, starts its scenario in a daemon thread before the first test: a fresh folder
  from `tempfile.mkdtemp`, `ScenarioClass(folder, stop_event).run()` in the thread. A scenario
  whose test is deselected (`-k`, a subset of files, `--collect-only`) never starts;
- the marked test takes the `background` fixture, which waits for the scenario's thread
  (`result()`: its return value, or its exception re-raised) and asserts on what it returned;
- whatever happens (a failure, `-x`, Ctrl-C, or SIGTERM, which the plugin turns into a
  KeyboardInterrupt while a scenario runs), the wrapper's `finally` sets the stop event,
  calls the scenario's `cleanup()` (which kills every process it started), joins the thread and
  calls `cleanup()` again for anything started meanwhile; `atexit` does the same as a last
  resort. The folder is removed when the scenario and its test succeeded, and kept (its path
  is in the failure and the terminal summary) otherwise, or always with LONGRUN_KEEP=1.

A scenario class has `__init__(folder: Path, stop: threading.Event)`, `run() -> Any` (it must
return soon after `stop` is set) and `cleanup()` (idempotent, callable from any thread).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

MARK = "background"
RUNS = pytest.StashKey[dict]()
JOIN_S = 60.0  # how long cleanup waits for a stopped scenario's thread


class Background:
    """One scenario running in its own thread."""

    def __init__(self, scenario_cls: type, name: str):
        self.name = name
        self.folder = Path(tempfile.mkdtemp(prefix=f"{scenario_cls.__name__}-"))
        self.stop = threading.Event()
        self.scenario = scenario_cls(self.folder, self.stop)
        self.thread = threading.Thread(target=self._run, name=f"background:{name}",
                                       daemon=True)
        self.value: Any = None
        self.error: BaseException | None = None
        self.started = self.ended = None
        self.waited_s = 0.0
        self.test_failed = False  # set when its test failed: the folder is kept
        self.interrupted = False  # it ended because it was told to stop
        self._closed = False
        atexit.register(self.close)

    def start(self) -> "Background":
        self.started = time.monotonic()
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.value = self.scenario.run()
        except BaseException as err:  # handed to the test, which re-raises it
            self.error = err
            self.interrupted = self.stop.is_set()
        finally:
            self.ended = time.monotonic()

    def result(self, timeout: float) -> Any:
        """Wait for the scenario; return what it returned or raise what it raised."""
        t0 = time.monotonic()
        self.thread.join(timeout)
        self.waited_s += time.monotonic() - t0
        if self.thread.is_alive():
            raise AssertionError(f"{self.name}: the scenario still runs after {timeout:.0f} s "
                                 f"of waiting (files in {self.folder})")
        if self.error is not None:
            raise self.error
        return self.value

    @property
    def elapsed_s(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.monotonic()) - self.started

    def close(self) -> None:
        """Stop the scenario, kill what it started, join its thread; remove its folder if the
        scenario and its test succeeded."""
        if self._closed:
            return
        self.stop.set()
        try:
            self.scenario.cleanup()
        finally:
            if self.thread.is_alive():
                self.thread.join(JOIN_S)
            self.scenario.cleanup()  # anything the thread started while it was stopping
        self._closed = True  # only now: a second Ctrl-C above leaves it to atexit
        if (self.error is None and self.value is not None and not self.test_failed
                and not os.environ.get("LONGRUN_KEEP")):
            shutil.rmtree(self.folder, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARK}(scenario=cls): run the scenario in a background thread from the "
        "start of the run; the test (moved last) waits for it (tests/support/longrun.py)")
    config.stash[RUNS] = {}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # After deselection (trylast): the marked tests go last, the others keep their order.
    items.sort(key=lambda item: item.get_closest_marker(MARK) is not None)


def _runs_tests(session: pytest.Session) -> bool:
    opt = session.config.option
    if opt.collectonly or getattr(opt, "setuponly", False) or getattr(opt, "setupplan", False):
        return False
    return not (session.testsfailed and not opt.continue_on_collection_errors)


def _sigterm(signum, frame) -> None:
    raise KeyboardInterrupt("SIGTERM")


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session):
    runs: dict[str, Background] = session.config.stash[RUNS]
    previous = None
    if _runs_tests(session):
        for item in session.items:
            marker = item.get_closest_marker(MARK)
            if marker is not None and item.nodeid not in runs:
                runs[item.nodeid] = Background(marker.kwargs["scenario"], item.name).start()
        if runs and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            # A SIGTERM (a CI job's timeout) would end pytest without its finally blocks and
            # leave the scenario's processes running: make it unwind like Ctrl-C instead.
            previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        return (yield)
    finally:
        try:
            for run in runs.values():
                run.close()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def background(request: pytest.FixtureRequest) -> Background:
    """The scenario of this test, started at the start of the run (or now, if it was not)."""
    runs: dict[str, Background] = request.config.stash[RUNS]
    run = runs.get(request.node.nodeid)
    if run is None:
        marker = request.node.get_closest_marker(MARK)
        assert marker is not None, f"{request.node.nodeid}: no @pytest.mark.{MARK}(scenario=...)"
        run = Background(marker.kwargs["scenario"], request.node.name).start()
        runs[request.node.nodeid] = run
    return run


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    run = item.config.stash[RUNS].get(item.nodeid)
    if run is not None and report.failed:
        run.test_failed = True
    return report


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    for run in config.stash.get(RUNS, {}).values():
        if run.elapsed_s is None:
            continue
        if run.interrupted or not run.ended:
            state = "stopped"
        else:
            state = "failed" if run.error is not None or run.test_failed else "done"
        terminalreporter.write_line(
            f"background {run.name}: {state}, ran {run.elapsed_s:.0f} s alongside the suite; "
            f"its test waited {run.waited_s:.0f} s for it"
            + (f" (files in {run.folder})" if run.folder.exists() else ""))
