"""A TCP gate: a loopback forwarder to a broker that can be shut and opened again.

It stands for one side's network link: open, it forwards every connection to the broker byte
for byte; shut, it cuts the connections it carries and refuses new ones (nothing listens on
its port), as a dead link or a dead broker would. It keeps its port, so a client configured
with it reconnects when it opens again.
"""

from __future__ import annotations

import socket
import threading

from mqttproxy import _close


class Gate:
    """Forward 127.0.0.1:`port` to `upstream` while open."""

    def __init__(self, upstream: tuple[str, int], port: int):
        self.upstream = upstream
        self.host, self.port = "127.0.0.1", port
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.sockets: set[socket.socket] = set()
        self.connections = 0  # accepted and connected upstream, since the start

    def open(self) -> "Gate":
        with self.lock:
            if self.listener is None:
                self.listener = socket.create_server((self.host, self.port))
                threading.Thread(target=self._accept, args=(self.listener,), daemon=True,
                                 name=f"gate:{self.port}").start()
        return self

    def shut(self) -> None:
        """Stop listening and cut every connection."""
        with self.lock:
            listener, self.listener = self.listener, None
            socks, self.sockets = list(self.sockets), set()
        for s in ([listener] if listener else []) + socks:
            _close(s)

    kill = shut  # the scenario's cleanup kills everything it started

    @property
    def is_open(self) -> bool:
        return self.listener is not None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # shut
            try:
                upstream = socket.create_connection(self.upstream, timeout=2)
                upstream.settimeout(None)
            except OSError:
                _close(client)  # the broker is down
                continue
            with self.lock:
                if self.listener is not listener:  # shut meanwhile
                    _close(client, upstream)
                    return
                self.sockets.update((client, upstream))
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with self.lock:
            self.sockets.discard(src)
            self.sockets.discard(dst)
        _close(src, dst)

