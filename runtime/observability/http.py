"""The ``/metrics``, ``/healthz`` and ``/readyz`` endpoints of a process, on a port of its own.

- ``/metrics``: the process's Prometheus series (prometheus_client's own WSGI exposition, with
  content negotiation and gzip). A scrape first brings the scrape-time gauges up to date on the
  event loop (each projection replica's lag), waiting at most :data:`REFRESH_TIMEOUT`.
- ``/healthz``: 200 while the process lives (the liveness probe).
- ``/readyz``: 200 when the process is connected to NATS, its services are registered and no
  projection replica of it is halted; 503 with the reasons otherwise (the readiness probe).

The server is prometheus_client's threading WSGI server on a daemon thread, so a scrape never
waits for the event loop to be free except for the refresh, and a stuck loop cannot make a
scrape hang for longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import anyio
from nats.aio.client import Client as NATS
from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from ..errors import ConfigurationError
from ..log import get_logger
from ..transport.readiness import serving
from .metrics import Metrics

log = get_logger("runtime.observability.http")

REFRESH_TIMEOUT = 2.0  # seconds a scrape waits for the lag gauges; then they are as last read
StartResponse = Callable[..., Any]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would drown the process's own log lines."""


class Endpoints:
    """The WSGI application behind the three endpoints."""

    def __init__(
        self, metrics: Metrics, nc: NATS | None, loop: asyncio.AbstractEventLoop | None
    ) -> None:
        self.metrics = metrics
        self.nc = nc
        self.loop = loop
        self.exposition = make_wsgi_app(metrics.registry)

    def problems(self) -> list[str]:
        """Why the process is not ready (empty: it is)."""
        found = []
        if self.nc is not None and not self.nc.is_connected:
            found.append("not connected to NATS")
        if not serving():
            found.append("no service registered")
        for replica in list(self.metrics.replicas):
            if replica.gauges().halted:
                projection, name = replica.labels
                found.append(f"projection {projection} (replica {name}) is halted")
        return found

    def refresh(self) -> None:
        if self.loop is None or not self.metrics.replicas:
            return
        future = asyncio.run_coroutine_threadsafe(self.metrics.refresh(), self.loop)
        try:
            future.result(timeout=REFRESH_TIMEOUT)
        except Exception as exc:  # a timeout or NATS away: serve the gauges as last read
            future.cancel()
            log.debug("metrics_refresh_failed", error=repr(exc))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            self.refresh()
            return self.exposition(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            return _json(start_response, "200 OK", {"status": "alive"})
        if path == "/readyz":
            problems = self.problems()
            status = "503 Service Unavailable" if problems else "200 OK"
            return _json(start_response, status, {"ready": not problems, "problems": problems})
        return _json(start_response, "404 Not Found", {"error": f"no endpoint {path}"})


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


@contextlib.asynccontextmanager
async def serve_endpoints(
    port: int, metrics: Metrics, nc: NATS | None = None, *, host: str = "127.0.0.1"
) -> AsyncIterator[int]:
    """Serve the endpoints on ``host:port`` until the context exits; yield the bound port."""
    app = Endpoints(metrics, nc, asyncio.get_running_loop())
    try:
        server = make_server(
            host, port, app, server_class=ThreadingWSGIServer, handler_class=_QuietHandler
        )
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc}") from None
    # Polling every 0.1 s for the shutdown request keeps a process's exit quick.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="cqrs-metrics", daemon=True
    )
    thread.start()
    paths = ["/metrics", "/healthz", "/readyz"]
    log.info("metrics_serving", host=host, port=server.server_port, paths=paths)
    try:
        yield server.server_port
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(server.shutdown)
        server.server_close()
