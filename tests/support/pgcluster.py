"""A private PostgreSQL server that a test or a bench may stop, kill and restart.

The machine's shared PostgreSQL (127.0.0.1:5432) serves other sessions and must never be
restarted; a test of what the hub does when its database goes away gets a cluster of its own:
`initdb` into a temporary folder, `pg_ctl` on a free loopback port, its socket in that folder.

    cluster = PgCluster(tmp_path / "pg").init().start()
    url = cluster.create_database("hub")
    cluster.stop("immediate")     # a crash: connections cut, crash recovery on the next start
    cluster.start()
    cluster.restart("fast")       # what a package upgrade or an operator's restart does
    cluster.destroy()

PostgreSQL refuses to run as root: as root the binaries run as the `postgres` user (runuser),
which owns the folder. `private_pg` is the pytest fixture (skipped only when the binaries are
absent, or when running as root without a `postgres` user).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from testenv import free_port

PG_BIN = Path(os.environ.get("EDGE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def binaries_missing() -> str | None:
    """Why a private cluster cannot be made here, or None."""
    for name in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / name).exists():
            return f"PostgreSQL binaries not found ({PG_BIN / name}; set EDGE_TEST_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run PostgreSQL as"
    return None


class PgCluster:
    """One PostgreSQL server in a folder of its own, on a free port of 127.0.0.1."""

    def __init__(self, folder: Path | None = None, port: int | None = None,
                 fsync: bool = True):
        self.folder = Path(folder or tempfile.mkdtemp(prefix="pgcluster-"))
        self.data = self.folder / "data"
        self.port = port or free_port()
        self.fsync = fsync
        self.log_path = self.folder / "postgres.log"
        self.starts = 0
        self._user = None
        if os.geteuid() == 0:
            self._user = pwd.getpwnam("postgres")

    def _run(self, *args: str, check: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        if self._user is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=self.folder)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}\n"
                               f"{self.log_tail()}")
        return done

    def init(self, template: Path | None = None) -> "PgCluster":
        """initdb (or copy `template`, a data folder initdb made: much faster per test)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            os.chown(self.folder, self._user.pw_uid, self._user.pw_gid)
        if template is not None:
            shutil.copytree(template, self.data, symlinks=True)
            if self._user is not None:
                for path in [self.data, *self.data.rglob("*")]:
                    os.lchown(path, self._user.pw_uid, self._user.pw_gid)
            return self
        self._run(PG_BIN / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        return self

    def _options(self) -> str:
        opts = [f"-p {self.port}", f"-k {self.folder}", "-c listen_addresses=127.0.0.1",
                "-c max_connections=50"]
        if not self.fsync:
            # Safe against a killed server (the OS keeps what was written), not against a
            # machine crash. synchronous_commit stays on: a COMMIT answered must be in the WAL
            # before `pg_ctl stop -m immediate` kills the server.
            opts += ["-c fsync=off"]
        return " ".join(opts)

    def start(self) -> "PgCluster":
        """Start the server and wait until it accepts connections (pg_ctl -w)."""
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-o", self._options(), "-l",
                  self.log_path, "-w", "-t", "60", "start")
        self.starts += 1
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (sessions cut, clean shutdown) or `immediate` (a crash)."""
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def running(self) -> bool:
        return self._run(PG_BIN / "pg_ctl", "-D", self.data, "status", check=False
                         ).returncode == 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def destroy(self) -> None:
        """Stop the server (if running) and remove its folder."""
        if self.data.exists() and self.running():
            self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop",
                      check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


try:
    import pytest
except ImportError:  # bench/ imports this module without pytest
    pytest = None

_template: list[PgCluster] = []  # one initdb per test session, copied for each test


def _template_data() -> Path:
    if not _template:
        _template.append(PgCluster().init())
        import atexit

        atexit.register(_template[0].destroy)
    return _template[0].data


if pytest is not None:
    @pytest.fixture
    def private_pg():
        """A private PostgreSQL server for one test (fsync off: it survives its server being
        killed, not the machine crashing), started; stopped and removed afterwards. Skipped only when the binaries (or
        a `postgres` user to run them as root) are missing. Its folder is directly under the
        temporary directory: pytest's tmp_path is private to root, and the server runs as
        `postgres`."""
        missing = binaries_missing()
        if missing:
            pytest.skip(missing)
        cluster = PgCluster(fsync=False).init(_template_data()).start()
        try:
            yield cluster
        finally:
            cluster.destroy()
