"""An embedded MQTT broker (amqtt) for a single machine, run on its own thread.

amqtt speaks MQTT 3.1.1 only: no shared subscriptions and no session expiry. With it the hub
runs one worker on a plain subscription (`edge/v1/+/+/#`) over MQTT 3.1.1; agents must connect
with 3.1.1 too. At chain scale use Mosquitto or a broker cluster.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

from hub.errors import BrokerError

log = logging.getLogger("hub.broker")


class EmbeddedBroker:
    """amqtt listening on host:port, started and stopped from synchronous code."""

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> "EmbeddedBroker":
        try:
            from amqtt.broker import Broker  # imported here: only the embedded mode needs it
        except ImportError as err:
            raise BrokerError("--embedded-broker needs the amqtt package, which the hub's "
                              "extra installs: pip install 'retail-edge[hub]'") from err
        # amqtt and its state machine log every connection and transition at INFO.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}",
                                      "max_connections": 1000}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                        {"allow_anonymous": True}},
        }

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._broker = Broker(config, loop=loop)
                loop.run_until_complete(self._broker.start())
            except BaseException as err:  # reported to start() below, with its cause
                self._error = err
                self._ready.set()
                return
            self._ready.set()
            loop.run_forever()
            loop.run_until_complete(self._broker.shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="embedded-broker", daemon=True)
        self._thread.start()
        self._ready.wait(timeout)
        if self._error is not None:
            raise BrokerError(f"the embedded broker cannot listen on {self.host}:{self.port}: "
                              f"{self._error}") from self._error
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    log.info("embedded broker listening",
                             extra={"listen": f"{self.host}:{self.port}", "mqtt": "3.1.1"})
                    return self
            except OSError:
                time.sleep(0.05)
        raise BrokerError(f"the embedded broker did not listen on {self.host}:{self.port}")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
