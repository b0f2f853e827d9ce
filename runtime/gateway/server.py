"""Serving the gateway's ASGI app with uvicorn inside the runtime's own event loop and task group.

The listening socket is bound before the server starts, so the gateway's URL is known (and
connectable) as soon as :func:`run_gateway` yields, also with port 0. Signals stay with the
runtime (:mod:`runtime.ops.shutdown`): on exit uvicorn stops accepting, finishes the requests in
flight within the drain budget, and only then does the caller close the NATS connection.
The gateway's connections run under the deadlines and limits of :mod:`.protocol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import socket
from collections.abc import AsyncIterator, Generator, Sequence
from dataclasses import dataclass

import anyio
import uvicorn
from nats.aio.client import Client as NATS
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from ..domain.app import App
from ..errors import ServerError
from ..log import get_logger
from ..observability import metrics
from ..transport.readiness import mark_not_ready, mark_ready
from .app import GatewaySettings, create_app
from .limits import ClientLimiter, LimitStats
from .protocol import Connections, guarded_protocol

log = get_logger("runtime.gateway")


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


def _raise_file_limit(connections: int) -> None:
    """Let the process hold ``connections`` sockets and then some (NATS, files): raise the
    soft limit on open files towards the hard one, as far as needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # a platform ceiling below the hard limit (macOS)
            target = soft
        if target < wanted:
            log.warning("gateway_file_limit_low", max_connections=connections, open_files=target)


@contextlib.asynccontextmanager
async def serve_asgi(
    asgi: ASGIApp,
    host: str,
    port: int,
    *,
    connections: Connections | None = None,
    drain_timeout: float = 10.0,
) -> AsyncIterator[RunningGateway]:
    """Serve any ASGI app with uvicorn in this event loop until the context exits, then drain
    it. The gateway serves under ``connections``' deadlines and limits; without them this is
    plain uvicorn with httptools, as the benchmark's hand-written baseline runs."""
    config = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        http="httptools" if connections is None else guarded_protocol(connections),
        ws="none",
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        limit_concurrency=1024 if connections is None else None,
        timeout_graceful_shutdown=max(1, int(drain_timeout)),
    )
    server = _Server(config)
    if connections is not None:
        _raise_file_limit(connections.limits.max_connections)
    sock = _bind(host, port, config.backlog)
    # What start-up allocated (the app's definitions, the CLI, the schemas) lives as long as
    # the process: out of the collector's sight, full collections under load stay short.
    gc.collect()
    gc.freeze()
    bound_host, bound_port = sock.getsockname()[:2]
    running = RunningGateway(str(bound_host), int(bound_port))
    if connections is not None:
        connections.start(asyncio.get_running_loop())
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield running
            finally:
                server.should_exit = True
    finally:
        if connections is not None:
            connections.stop()
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
    limits = settings.limits
    stats = LimitStats()
    asgi = ClientLimiter(
        create_app(nc, app, settings, middleware=middleware),
        limits.max_in_flight_per_client,
        by_token=settings.tokens.required,
        stats=stats,
    )
    connections = Connections(limits, stats, max_body=settings.max_body_size)
    process_metrics = metrics.current()
    if process_metrics is not None:
        process_metrics.watch_gateway(stats)
    async with serve_asgi(
        asgi, settings.host, settings.port, connections=connections, drain_timeout=drain_timeout
    ) as running:
        log.info("gateway_listening", url=running.url, auth=settings.tokens.required)
        # Listed as serving for the process's /readyz on its metrics port (no ready file).
        mark_ready(None, {"gateway": running.url})
        try:
            yield running
        finally:
            mark_not_ready(None, ["gateway"])
            if process_metrics is not None:
                process_metrics.unwatch_gateway(stats)
