"""What the systemd notifier costs: agent CPU-seconds and peak RSS with and without it.

Runs `edge-agent run` (one host device polled every second) for a fixed time twice: once as
systemd would start it (NOTIFY_SOCKET, WATCHDOG_USEC=2 s, so a ping and a database probe every
second) and once without. Prints CPU-seconds (user+sys) and peak RSS of the agent process.
"""

from __future__ import annotations

import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
CONFIG = """
[agent]
store = "bench"
region = "bench"
state_dir = "{state}"

[[devices]]
id = "register"
kind = "host"
interval = 1.0
"""


def run_once(notify: bool) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "agent.toml"
        config.write_text(CONFIG.format(state=Path(tmp) / "state"))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        sock, received = None, [0]
        if notify:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(Path(tmp) / "notify.sock"))
            env.update(NOTIFY_SOCKET=str(Path(tmp) / "notify.sock"), WATCHDOG_USEC="2000000")

            def drain():
                while True:
                    try:
                        if b"WATCHDOG=1" in sock.recv(4096):
                            received[0] += 1
                    except OSError:
                        return

            threading.Thread(target=drain, daemon=True).start()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config",
                                 str(config)], env=env, stderr=subprocess.DEVNULL)
        time.sleep(SECONDS)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if sock is not None:
            sock.close()
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return cpu, after.ru_maxrss / 1024, received[0]


def main() -> int:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; {SECONDS:.0f} s per run, host device every 1 s")
    for notify in (False, True):
        cpu, rss, pings = run_once(notify)
        label = "with notifier (WATCHDOG_USEC=2 s)" if notify else "without NOTIFY_SOCKET"
        print(f"{label:36s} CPU {cpu:.2f} s ({cpu / SECONDS * 100:.2f}% of one core), "
              f"peak RSS {rss:.0f} MB" + (f", {pings} pings" if notify else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
