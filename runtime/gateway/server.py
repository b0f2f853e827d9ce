"""Serving the gateway's ASGI app with uvicorn inside the runtime's own event loop and task group.

The listening socket is bound before the server starts, so the gateway's URL is known (and
connectable) as soon as :func:`run_gateway` yields, also with port 0. Signals stay with the
runtime (:mod:`runtime.ops.shutdown`): on exit uvicorn stops accepting, finishes the requests in
flight within the drain budget, and only then does the caller close the NATS connection.
"""

from __future__ import annotations

import contextlib
import gc
import socket
from collections.abc import AsyncIterator, Generator, Sequence
from dataclasses import dataclass

import anyio
import structlog
import uvicorn
from nats.aio.client import Client as NATS
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from ..domain.app import App
from ..errors import ServerError
from ..transport.readiness import mark_not_ready, mark_ready
from .app import GatewaySettings, create_app

log = structlog.get_logger("runtime.gateway")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the runtime's graceful shutdown owns SIGINT/SIGTERM


@dataclass(frozen=True)
class RunningGateway:
    """Where a running gateway listens."""

    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket (uvicorn's own binding exits the process when the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ServerError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another port; 0 "
            "takes any free one)"
        ) from None
    sock.set_inheritable(True)
    return sock


@contextlib.asynccontextmanager
async def serve_asgi(
    asgi: ASGIApp,
    host: str,
    port: int,
    *,
    max_connections: int = 1024,
    drain_timeout: float = 10.0,
) -> AsyncIterator[RunningGateway]:
    """Serve any ASGI app with uvicorn in this event loop until the context exits, then drain
    it. The gateway and the benchmark's hand-written baseline both run behind this."""
    config = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        limit_concurrency=max_connections,
        timeout_graceful_shutdown=max(1, int(drain_timeout)),
    )
    server = _Server(config)
    sock = _bind(host, port, config.backlog)
    # What start-up allocated (the app's definitions, the CLI, the schemas) lives as long as
    # the process: out of the collector's sight, full collections under load stay short.
    gc.collect()
    gc.freeze()
    bound_host, bound_port = sock.getsockname()[:2]
    running = RunningGateway(str(bound_host), int(bound_port))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield running
            finally:
                server.should_exit = True
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def run_gateway(
    nc: NATS,
    app: App,
    settings: GatewaySettings,
    *,
    drain_timeout: float = 10.0,
    middleware: Sequence[Middleware] = (),
) -> AsyncIterator[RunningGateway]:
    """Serve the gateway of ``app`` over ``nc`` until the context exits, then drain it."""
    async with serve_asgi(
        create_app(nc, app, settings, middleware=middleware),
        settings.host,
        settings.port,
        max_connections=settings.max_connections,
        drain_timeout=drain_timeout,
    ) as running:
        log.info("gateway_listening", url=running.url, auth=settings.tokens.required)
        # Listed as serving for the process's /readyz on its metrics port (no ready file).
        mark_ready(None, {"gateway": running.url})
        try:
            yield running
        finally:
            mark_not_ready(None, ["gateway"])
