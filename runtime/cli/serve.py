"""Running a long-lived process (worker, projector, process managers, gateway) until a signal.

Each of them connects, starts its telemetry and its services, waits for SIGTERM or SIGINT and
then drains within ``--shutdown-timeout``: the drain gets most of it, closing the connection
the rest. A drain cut short by the deadline (or a second signal) exits 1.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace

import typer
from nats.aio.client import Client as NATS

from ..log import get_logger
from ..ops.heap import settle_heap
from ..ops.shutdown import budgets, graceful_shutdown
from ..ops.telemetry import process_telemetry
from ..transport.connection import connect
from .common import Context, run

log = get_logger("runtime.cli")

Serving = Callable[[NATS], AbstractAsyncContextManager[object]]


def serve(
    ctx: Context,
    name: str,
    *,
    shutdown_timeout: float,
    metrics_port: int | None,
    metrics_host: str,
    setup: Callable[[], Serving],
    embedded: bool = True,
) -> None:
    """Serve until a signal. ``setup`` runs first (loading the app, building settings), so its
    errors are reported like any other before anything connects; the context manager it returns
    runs the process's services on the connection."""
    drain_budget, close_budget = budgets(shutdown_timeout)
    options = replace(ctx.connect, close_timeout=close_budget)

    async def main() -> None:
        serving = setup()
        async with (
            graceful_shutdown(drain_budget) as shutdown,
            connect(options, embedded=embedded) as nc,
            process_telemetry(f"cqrs-{name}", nc, metrics_port, metrics_host),
            serving(nc),
        ):
            settle_heap()
            await shutdown.wait(nc)
            log.info(f"{name}_stopping")
        if shutdown.forced:
            raise typer.Exit(1)

    run(main)
