"""`edge-hub demo`: the whole chain on one machine: embedded broker, hub, two store agents."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from hub.ingest import Settings
from hub.serve import Hub
from hub.store import open_store

log = logging.getLogger("hub.demo")

STORES = (("store-0001", "eu-west"), ("store-0002", "eu-north"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agent_config(folder: Path, store: str, region: str, port: int) -> Path:
    """Write a store agent's config: the host itself as its one device, synced to the demo."""
    path = folder / f"{store}.toml"
    path.write_text(
        f'[agent]\nstore = "{store}"\nregion = "{region}"\nstate_dir = "{folder / store}"\n\n'
        f'[sync]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\ntls = false\n'
        'mqtt_version = "3.1.1"\nkeepalive = 5\nreconnect_min = 0.2\nreconnect_max = 2.0\n\n'
        '[[devices]]\nid = "register"\nkind = "host"\ninterval = 2.0\n')
    return path


def run(folder: Path, seconds: float | None, show) -> int:
    """Run the chain until Ctrl-C (or `seconds`); call show(db) every few seconds."""
    from hub.broker import EmbeddedBroker

    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    broker = EmbeddedBroker("127.0.0.1", port).start()
    db = open_store(str(folder / "hub.db"))
    hub = Hub(db, Settings(host="127.0.0.1", port=port, client_id="edge-hub-demo",
                           shared=False, mqtt5=False)).start()
    agents = []
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        for store, region in STORES:
            config = agent_config(folder, store, region, port)
            with open(folder / f"{store}.log", "wb") as out:
                agents.append(subprocess.Popen([sys.executable, "-m", "edge_agent", "run",
                                                "--config", str(config)],
                                               stdout=out, stderr=out))
        print(f"demo: broker 127.0.0.1:{port} (embedded, MQTT 3.1.1), hub database "
              f"{folder / 'hub.db'}, agents {', '.join(s for s, _ in STORES)} "
              f"(logs in {folder}); Ctrl-C stops", flush=True)
        end = None if seconds is None else time.monotonic() + seconds
        while not stop.wait(3.0):
            show(db)
            if end is not None and time.monotonic() >= end:
                break
    finally:
        for proc in agents:
            if proc.poll() is None:
                proc.terminate()
        for proc in agents:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        time.sleep(0.5)  # let the hub take the stores' goodbyes before it goes
        show(db)
        hub.stop()
        broker.stop()
        db.close()
    return 0
