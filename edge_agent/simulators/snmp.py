"""Network printers over SNMP: snmpsim's full command responder serving .snmprec recordings."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

READY_TEXT = "Listening at UDP/IPv4 endpoint"
START_TIMEOUT_S = 60.0  # building the indexes of a large folder takes a while on a busy machine
V3_USER, V3_AUTH_KEY, V3_PRIV_KEY = "edge", "edge-auth-key", "edge-priv-key"


def free_udp_port(host: str = "127.0.0.1") -> int:
    """Return a UDP port that is free on `host` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tlv(tag: int, body: bytes) -> bytes:
    assert len(body) < 128  # short-form lengths are enough for this one small packet
    return bytes([tag, len(body)]) + body


def probe_packet(community: str) -> bytes:
    """An SNMPv2c GET of sysUpTime.0: what tells that the responder really answers."""
    oid = _tlv(0x06, bytes([0x2B, 6, 1, 2, 1, 1, 3, 0]))
    varbinds = _tlv(0x30, _tlv(0x30, oid + b"\x05\x00"))
    pdu = _tlv(0xA0, _tlv(0x02, b"\x01") + _tlv(0x02, b"\x00") + _tlv(0x02, b"\x00") + varbinds)
    return _tlv(0x30, _tlv(0x02, b"\x01") + _tlv(0x04, community.encode()[:60]) + pdu)


def responder() -> str:
    """Path of snmpsim-command-responder: beside this Python first, then on PATH."""
    beside = Path(sys.executable).parent / "snmpsim-command-responder"
    if beside.exists():
        return str(beside)
    found = shutil.which("snmpsim-command-responder")
    if not found:
        raise RuntimeError("snmpsim-command-responder not found: pip install snmpsim pysmi")
    return found


def stop_process(proc: subprocess.Popen, workdir: str | None = None, grace: float = 5.0) -> None:
    """Stop a process (SIGTERM, then SIGKILL after `grace` seconds) and remove its folder."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)


class SnmpSimulator:
    """Serve SNMP recordings on a free loopback UDP port; the community is the recording's name.

    SNMPv3 works too: user `v3_user` with SHA/AES and the recording's name as context name.
    Use `async with`/`await start()` in asyncio code, or `with` in synchronous tests.
    """

    def __init__(self, recordings_dir: str | Path, names: list[str] | None = None, *,
                 host: str = "127.0.0.1", port: int = 0, v3_user: str = V3_USER,
                 v3_auth_key: str = V3_AUTH_KEY, v3_priv_key: str = V3_PRIV_KEY):
        self.recordings_dir = Path(recordings_dir)
        available = sorted(p.name[:-len(".snmprec")]
                           for p in self.recordings_dir.glob("*.snmprec"))
        if names is not None:
            missing = sorted(set(names) - set(available))
            if missing:
                raise ValueError(f"no recording named {', '.join(missing)} in {recordings_dir}")
        self.names = list(names) if names is not None else available
        self.host, self.port = host, port
        self.v3_user, self.v3_auth_key, self.v3_priv_key = v3_user, v3_auth_key, v3_priv_key
        self.proc: subprocess.Popen | None = None
        self._workdir: str | None = None
        self._log: Path | None = None
        self._finalizer = None

    def community(self, name: str) -> str:
        """Return the community (and SNMPv3 context name) that serves one recording."""
        if name not in self.names:
            raise KeyError(f"{name!r} is not served (served: {', '.join(self.names)})")
        return name

    def _spawn(self) -> None:
        self._workdir = tempfile.mkdtemp(prefix="snmpsim-")
        data = Path(self._workdir) / "data"
        data.mkdir()
        for name in self.names:
            shutil.copyfile(self.recordings_dir / f"{name}.snmprec", data / f"{name}.snmprec")
        if not self.port:
            self.port = free_udp_port(self.host)
        self._log = Path(self._workdir) / "snmpsim.log"
        env = dict(os.environ)
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            env["SNMPSIM_ALLOW_ROOT"] = "true"  # It refuses to run as root otherwise.
        args = [responder(), f"--data-dir={data}", f"--cache-dir={Path(self._workdir) / 'cache'}",
                f"--agent-udpv4-endpoint={self.host}:{self.port}",
                f"--v3-user={self.v3_user}", f"--v3-auth-key={self.v3_auth_key}",
                "--v3-auth-proto=SHA", f"--v3-priv-key={self.v3_priv_key}",
                "--v3-priv-proto=AES"]
        with open(self._log, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)
        # Whatever happens to the caller, the responder does not outlive this object.
        self._finalizer = weakref.finalize(self, stop_process, self.proc, self._workdir)

    def _ready(self) -> bool:
        assert self.proc is not None and self._log is not None
        text = self._log.read_text(errors="replace") if self._log.exists() else ""
        if READY_TEXT in text and self._answers():
            return True
        if self.proc.poll() is not None:
            tail = "\n".join(text.splitlines()[-15:])
            self._stop_now()
            raise RuntimeError(f"snmpsim-command-responder exited ({self.proc.returncode}):"
                               f"\n{tail}")
        return False

    def _answers(self) -> bool:
        # snmpsim logs "Listening" before it opens its socket: only an answer proves it serves.
        if not self.names:
            return True
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.connect((self.host, self.port))
                s.send(probe_packet(self.names[0]))
                return bool(s.recv(4096))
            except OSError:  # refused (not bound yet) or timed out (still loading)
                return False

    def _stop_now(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # Runs stop_process once, then never again.
            self._finalizer = None
        self._workdir = None

    async def start(self) -> tuple[str, int]:
        """Start the responder and wait until it listens; return (host, port)."""
        import asyncio

        self._spawn()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready():
            if time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(f"snmpsim did not listen within {START_TIMEOUT_S:g} s")
            await asyncio.sleep(0.05)
        return self.host, self.port

    async def stop(self) -> None:
        """Stop the responder and remove its folder; safe to call twice."""
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, self._stop_now)

    def start_sync(self) -> tuple[str, int]:
        """Start and wait, for synchronous code such as a pytest fixture."""
        self._spawn()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready():
            if time.monotonic() > deadline:
                self._stop_now()
                raise RuntimeError(f"snmpsim did not listen within {START_TIMEOUT_S:g} s")
            time.sleep(0.05)
        return self.host, self.port

    def stop_sync(self) -> None:
        """Stop the responder from synchronous code."""
        self._stop_now()

    def __enter__(self) -> "SnmpSimulator":
        self.start_sync()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_sync()

    async def __aenter__(self) -> "SnmpSimulator":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


def register(sub) -> None:
    """Add `edge-agent simulate snmp`."""
    p = sub.add_parser("snmp", help="network printers over SNMP (snmpsim serving recordings)",
                       description="Serve SNMP recordings (.snmprec) on a loopback UDP port "
                                   "until Ctrl-C. Each recording's name is its community "
                                   "(and SNMPv3 context).")
    p.add_argument("--dir", default="tests/fixtures/snmp/snmpsim",
                   help="folder of .snmprec recordings (default: tests/fixtures/snmp/snmpsim)")
    p.add_argument("--name", action="append", help="serve only this recording (repeatable)")
    p.add_argument("--port", type=int, default=0, help="UDP port (default: a free one)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from edge_agent.errors import ConfigError

    folder = Path(args.dir)
    if not folder.is_dir() or not any(folder.glob("*.snmprec")):
        raise ConfigError(f"--dir: no .snmprec recordings in {folder}")
    if not 0 <= args.port < 65536:
        raise ConfigError("--port: must be 0-65535")
    try:
        sim = SnmpSimulator(folder, args.name, port=args.port)
    except ValueError as err:
        raise ConfigError(f"--name: {err}") from err
    with sim:
        print(f"snmpsim listening on {sim.host}:{sim.port} (udp), {len(sim.names)} recordings; "
              f"v3 user {sim.v3_user} SHA {sim.v3_auth_key} AES {sim.v3_priv_key}", flush=True)
        for name in sim.names:
            print(f"  snmp://{name}@{sim.host}:{sim.port}", flush=True)
        try:
            while sim.proc is not None and sim.proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0
