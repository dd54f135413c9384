"""A real Mosquitto broker that a test starts on a free port, configures, kills and restarts."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from testenv import free_port
from wait import PATIENCE_S, wait_until

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass(frozen=True)
class BrokerTLS:
    """The broker's TLS files: the CA that signs clients and its own certificate and key."""

    ca: Path
    cert: Path
    key: Path


def store_acl(stores: dict[str, str], prefix: str = "edge/v1", hub: str = "hub") -> str:
    """An ACL like the hub generates: a store writes only its own topics, reads its cmd/config.

    `stores` maps store id to region; the hub account reads every store and writes hub/state.
    """
    lines = [f"user {hub}", f"topic read {prefix}/#", f"topic write {prefix}/hub/state",
             f"topic write {prefix}/+/+/cmd", f"topic write {prefix}/+/+/config",
             f"topic write {prefix}/+/+/flags", f"topic write {prefix}/bundles/+",
             f"topic write {prefix}/alerts/#", ""]
    for store, region in stores.items():
        own = f"{prefix}/{region}/{store}"
        lines += [f"user {store}"]
        lines += [f"topic write {own}/{kind}" for kind in
                  ("birth", "death", "telemetry", "decision", "alert", "event", "cmd/result")]
        lines += [f"topic read {own}/cmd", f"topic read {own}/config",
                  f"topic read {own}/flags", f"topic read {prefix}/bundles/+",
                  f"topic read {prefix}/hub/state", ""]
    return "\n".join(lines)


class Mosquitto:
    """One mosquitto process with its own config, persistence folder and log, on loopback."""

    def __init__(self, workdir: Path, port: int | None = None, *, extra_conf: str = "",
                 allow_anonymous: bool = True, persistence: bool = True,
                 tls: "BrokerTLS | None" = None, acl: str | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.allow_anonymous = allow_anonymous
        self.persistence = persistence
        self.tls = tls
        self.acl = acl
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "mosquitto.log"

    def write_config(self) -> Path:
        conf = self.workdir / "mosquitto.conf"
        lines = [f"listener {self.port} {self.host}",
                 f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
                 f"persistence {'true' if self.persistence else 'false'}",
                 f"persistence_location {self.workdir}/",
                 "autosave_interval 1",
                 f"log_dest file {self.log_path}",
                 "log_type error", "log_type warning", "log_type notice",
                 "max_queued_messages 100000"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root, mosquitto drops to its own user, which cannot read pytest's 0700 folders
            # (its log, ACL and TLS files there).
            lines.append("user root")
        if self.tls is not None:
            # A client certificate is required and its common name is the MQTT user name,
            # which the ACL file grants topics to (DESIGN.md, Security).
            lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.cert}",
                      f"keyfile {self.tls.key}", "require_certificate true",
                      "use_identity_as_username true", "tls_version tlsv1.2"]
        if self.acl is not None:
            acl_path = self.workdir / "acl"
            acl_path.write_text(self.acl)
            acl_path.chmod(0o644)
            lines.append(f"acl_file {acl_path}")
        lines.append(self.extra_conf)
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = PATIENCE_S) -> "Mosquitto":
        if not os.path.exists(MOSQUITTO):
            raise RuntimeError("mosquitto is not installed: run `make system-deps`")
        conf = self.write_config()
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

        def listening() -> bool:  # ready: its port takes a connection
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        def gone() -> str | None:
            if self.proc.poll() is None:
                return None
            return f"mosquitto exited: {self.proc.stderr.read().decode()}"

        wait_until(listening, timeout, f"mosquitto to listen on {self.port}", interval=0.05,
                   gone=gone, detail=self.log)
        return self

    def kill(self) -> None:
        """Kill the broker at once (SIGKILL): no goodbye to clients, no final save."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        """Stop the broker cleanly (SIGTERM), saving its persistence file."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> "Mosquitto":
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""
