"""Serving the API with uvicorn: alone (`edge-hub api`) or beside ingest (`serve --api`)."""

from __future__ import annotations

import logging
import signal
import ssl
import threading
from typing import Any

from hub.config import HubConfig
from hub.errors import HubError

log = logging.getLogger("hub.api")

MAX_CONCURRENT = 200  # connections served at once; more get 503 from uvicorn


def parse_listen(text: str) -> tuple[str, int]:
    from hub.errors import Invalid

    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise Invalid(f"--listen/--api: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def make_server(app: Any, listen: str, config: HubConfig, *, log_level: str = "warning"):
    """A uvicorn Server for the app on HOST:PORT, with the config's TLS."""
    import uvicorn

    host, port = parse_listen(listen)
    api = config.api
    kw: dict[str, Any] = {}
    if api.tls_cert:
        kw.update(ssl_certfile=api.tls_cert, ssl_keyfile=api.tls_key)
        if api.tls_client_ca:
            kw.update(ssl_ca_certs=api.tls_client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    uconfig = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False,
        # X-Forwarded-For is not trusted: the caller's address is the socket's (rate limits,
        # the audit log's source). Put a proxy's address handling in the proxy.
        proxy_headers=False, server_header=False, limit_concurrency=MAX_CONCURRENT,
        timeout_keep_alive=5, timeout_graceful_shutdown=5,
        h11_max_incomplete_event_size=16384, lifespan="off", **kw)

    class Server(uvicorn.Server):
        # uvicorn re-raises SIGTERM after a graceful shutdown (so the process dies of it); a
        # hub service stopped by SIGTERM has done its job and exits 0.
        def handle_exit(self, sig, frame) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            else:
                self.should_exit = True

    return Server(uconfig)


def serve_forever(app: Any, listen: str, config: HubConfig, **kw) -> int:
    """Run the API until SIGINT/SIGTERM; return an exit code."""
    server = make_server(app, listen, config, **kw)
    try:
        server.run()
    except (OSError, ssl.SSLError) as err:
        raise HubError(f"cannot serve the API on {listen}: {err}") from err
    return 0 if server.started else 1


class Background:
    """The API in a thread beside a hub worker (`edge-hub serve --api`)."""

    def __init__(self, app: Any, listen: str, config: HubConfig, **kw):
        self.server = make_server(app, listen, config, **kw)
        self.thread = threading.Thread(target=self.server.run, name="api", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        import time

        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise HubError("the API did not start (is its port free? see the log)")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
