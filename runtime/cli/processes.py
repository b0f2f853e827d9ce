"""CLI command running process managers: ``cqrs processes``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import structlog
import typer

from ..ops.run import run_app
from ..ops.shutdown import budgets as shutdown_budgets
from ..ops.shutdown import graceful_shutdown
from ..processes.settings import ProcessSettings
from ..transport.connection import connect
from ..transport.streams import StreamSettings
from ..write.worker import WorkerSettings
from .common import Context, ReadyFileOption, ShutdownTimeoutOption, run, with_context

log = structlog.get_logger("runtime.cli")


def register(app: typer.Typer) -> None:
    app.command()(processes)


@with_context("cqrs-processes", client_cert=True, stream=True, log_level="info")
def processes(
    names: str | None = typer.Option(
        None,
        "--process-managers",
        envvar="CQRS_PROCESS_MANAGERS",
        help="Comma-separated; default all.",
    ),
    start: str = typer.Option(
        "new",
        "--start",
        envvar="CQRS_PROCESS_START",
        help="Where a process manager's new consumer starts: `new` events or `all`.",
    ),
    ack_wait: float = typer.Option(
        10.0, "--ack-wait", envvar="CQRS_ACK_WAIT", help="Seconds before a delivery is retried."
    ),
    pin_timeout: float = typer.Option(
        15.0,
        "--pin-timeout",
        envvar="CQRS_PIN_TIMEOUT",
        help="Seconds without pulling before another replica takes over (> --ack-wait).",
    ),
    *,
    ctx: Context,
    replicas: int = typer.Option(1, "--replicas", envvar="CQRS_REPLICAS"),
    shutdown_timeout: float = ShutdownTimeoutOption,
    ready_file: Path | None = ReadyFileOption,
) -> None:
    """A process manager replica for each process manager: reacts to events and timers.

    Replicas of one process manager share its consumer: each event is handled by one of them.
    SIGTERM or Ctrl-C stops it between batches and exits 0 within --shutdown-timeout.
    """
    if start not in ("new", "all"):
        raise typer.BadParameter("--start must be new or all")
    try:
        settings = ProcessSettings(
            stream=ctx.stream,
            replicas=replicas,
            start="all" if start == "all" else "new",
            ack_wait=ack_wait,
            pin_timeout=pin_timeout,
            ready_file=ready_file,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    drain_budget, close_budget = shutdown_budgets(shutdown_timeout)
    options = replace(ctx.connect, close_timeout=close_budget)

    async def main() -> None:
        application = ctx.app()
        wanted = [n.strip() for n in names.split(",") if n.strip()] if names else None
        selected = application.select_process_managers(wanted)
        async with (
            graceful_shutdown(drain_budget) as shutdown,
            connect(options, publish_url=options.resolved_url() is None) as nc,
            run_app(
                nc,
                application,
                aggregates=[],
                projections=[],
                process_managers=selected,
                settings=WorkerSettings(stream=StreamSettings(name=ctx.stream, replicas=replicas)),
                process_settings=settings,
            ),
        ):
            await shutdown.wait()
            log.info("processes_stopping")
        if shutdown.forced:
            raise typer.Exit(1)

    run(main)
