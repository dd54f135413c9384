"""`edge-hub api` as a subprocess on a free port, and the CLI run against it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from testenv import ROOT, agent_env, free_port
from wait import PATIENCE_S, wait_until


class ApiProcess:
    """`python -m hub api` (or serve --api) until stopped; `url` once it answers."""

    def __init__(self, db: str, workdir: Path, config: str = "", *, args: tuple = (),
                 scheme: str = "http", ca: str | None = None):
        self.port = free_port()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "hub.toml"
        self.config.write_text(config)
        self.log = self.workdir / "api.log"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.ca = ca
        self.cmd = [sys.executable, "-m", "hub", *(args or ("api", "--listen",
                                                             f"127.0.0.1:{self.port}")),
                    "--db", db, "--config", str(self.config)]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = PATIENCE_S) -> "ApiProcess":
        import ssl

        self.proc = subprocess.Popen(self.cmd, env=agent_env(), cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        ctx = ssl.create_default_context(cafile=self.ca) if self.ca else None

        def healthy() -> bool:  # ready: /v1/health answers
            try:
                with urllib.request.urlopen(self.url + "/v1/health", timeout=1, context=ctx):
                    return True
            except OSError:
                return False

        wait_until(healthy, timeout, "the API's /v1/health", interval=0.1,
                   gone=lambda: self.proc.poll() is not None and
                   f"the API exited {self.proc.poll()}", detail=self.log.read_text)
        return self

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(5)
        return self.proc.returncode if self.proc else 0


def cli(*args: str, url: str | None = None, token: str | None = None,
        home: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """Run `python -m hub ARGS` as a remote user: EDGE_HUB_URL/EDGE_HUB_TOKEN, or a home."""
    extra = dict(env)
    if url:
        extra["EDGE_HUB_URL"] = url
    if token:
        extra["EDGE_HUB_TOKEN"] = token
    base = agent_env(**extra)
    for key in ("EDGE_HUB_DB",) + (() if url else ("EDGE_HUB_URL",)) + \
            (() if token else ("EDGE_HUB_TOKEN",)):
        if key not in extra:
            base.pop(key, None)
    if home is not None:
        base["XDG_CONFIG_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "hub", *args], capture_output=True, text=True,
                          timeout=60, env=base, cwd=ROOT)


def hub_here(*args: str, url: str | None = None, token: str | None = None,
             **env: str) -> subprocess.CompletedProcess:
    """`edge-hub ARGS` run in this process (hub.cli.main) with its exit code, stdout and
    stderr: what `cli` does in a subprocess, without the interpreter's start (about 0.3 s a
    call). EDGE_HUB_URL and EDGE_HUB_TOKEN are set from url and token or else unset, no
    credentials file is read, EDGE_HUB_DB is unset; the environment is restored after."""
    import contextlib
    import io

    from hub.cli import main

    saved = dict(os.environ)
    for key in ("EDGE_HUB_URL", "EDGE_HUB_TOKEN", "EDGE_HUB_DB"):
        os.environ.pop(key, None)
    os.environ["EDGE_HUB_CREDENTIALS"] = os.devnull + ".none"
    if url:
        os.environ["EDGE_HUB_URL"] = url
    if token:
        os.environ["EDGE_HUB_TOKEN"] = token
    os.environ.update(env)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as stop:   # argparse's own errors
                code = stop.code if isinstance(stop.code, int) else 2
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def as_user(served, who: str, *args: str) -> subprocess.CompletedProcess:
    """`edge-hub ARGS` in this process, through the API of `served` (its .url and .tokens)
    as one of its users."""
    return hub_here(*args, url=served.url, token=served.tokens[who])


def ok_json(r: subprocess.CompletedProcess) -> object:
    """The JSON a CLI run printed, after checking it succeeded without a traceback."""
    assert r.returncode == 0 and "Traceback" not in r.stderr, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout)


def refused(r: subprocess.CompletedProcess, code: int, words: str) -> None:
    """One line on stderr naming the refusal, nothing on stdout, the exit code."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert words in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr


def audit_trail(db_url: str, obj: str) -> list[tuple[str, str, str | None]]:
    """(action, actor, source) of every audit entry about `obj`, oldest first."""
    from hub.app import open_store
    from hub.domains import audit

    db = open_store(db_url)
    try:
        with db.read() as tx:
            return [(e["action"], e["actor"], e["source"]) for e in audit.entries(tx)
                    if e["object"] == obj]
    finally:
        db.close()


os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
