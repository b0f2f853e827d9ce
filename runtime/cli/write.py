"""CLI commands of the write side: dev, worker, send, events and demo."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from pathlib import Path

import anyio
import structlog
import typer
from rich.table import Table

from ..client import Client
from ..domain.app import DEFAULT_APP
from ..ops.run import run_app
from ..ops.shutdown import budgets as shutdown_budgets
from ..ops.shutdown import graceful_shutdown
from ..transport.connection import connect
from ..transport.streams import StreamSettings
from ..wire import codec
from ..wire.naming import check_id, check_name
from ..write.history import AggregateHistory
from ..write.host import HostSettings
from ..write.store import EventStore
from ..write.worker import WorkerSettings
from .common import (
    Context,
    JsonOption,
    ReadyFileOption,
    ShutdownTimeoutOption,
    console,
    parse_json_arg,
    run,
    wait_for_shutdown,
    with_context,
)
from .history import check_history_options, show_history

log = structlog.get_logger("runtime.cli")


def _names(value: str | None) -> list[str] | None:
    return [n.strip() for n in value.split(",") if n.strip()] if value else None


def register(app: typer.Typer) -> None:
    @app.command()
    @with_context("cqrs-dev", auth=False, stream=True, log_level="info")
    def dev(ctx: Context) -> None:
        """Embedded NATS server + workers, projections and process managers, until Ctrl-C."""

        async def main() -> None:
            application = ctx.app()
            settings = WorkerSettings(
                stream=StreamSettings(name=ctx.stream), host=HostSettings(log_commands=True)
            )
            async with (
                connect(ctx.connect, publish_url=True) as nc,
                run_app(nc, application, settings=settings),
            ):
                log.info(
                    "dev_ready",
                    nats=nc.connected_url.geturl() if nc.connected_url else None,
                    commands=[
                        f"cmd.{a.name}.<id>.<{'|'.join(a.command_names)}>"
                        for a in application.aggregates
                    ],
                    queries=[
                        f"query.{p.name}.<{'|'.join(p.queries)}>" for p in application.projections
                    ],
                    process_managers=[m.name for m in application.process_managers],
                    try_it="cqrs send user u-1 create "
                    '\'{"name": "Ada", "email": "ada@example.com"}\'',
                )
                await wait_for_shutdown()
                log.info("dev_stopping")

        run(main)

    @app.command()
    @with_context("cqrs-worker", client_cert=True, stream=True, log_level="info")
    def worker(
        aggregates: str | None = typer.Option(
            None, "--aggregates", envvar="CQRS_AGGREGATES", help="Comma-separated; default all."
        ),
        *,
        ctx: Context,
        replicas: int = typer.Option(1, "--replicas", envvar="CQRS_REPLICAS"),
        mailbox_size: int = typer.Option(1024, "--mailbox-size", envvar="CQRS_MAILBOX_SIZE"),
        max_actors: int = typer.Option(100_000, "--max-actors", envvar="CQRS_MAX_ACTORS"),
        idle_timeout: float = typer.Option(600.0, "--idle-timeout", envvar="CQRS_IDLE_TIMEOUT"),
        shutdown_timeout: float = ShutdownTimeoutOption,
        ready_file: Path | None = ReadyFileOption,
    ) -> None:
        """A worker process serving the commands of some aggregate types.

        SIGTERM or Ctrl-C drains it: it stops taking commands, answers the ones it has, closes
        its connection and exits 0, all within --shutdown-timeout (exit 1 if cut short).
        """
        settings = WorkerSettings(
            stream=StreamSettings(name=ctx.stream, replicas=replicas),
            host=HostSettings(
                mailbox_size=mailbox_size, max_actors=max_actors, idle_timeout=idle_timeout
            ),
            ready_file=ready_file,
        )
        drain_budget, close_budget = shutdown_budgets(shutdown_timeout)
        options = replace(ctx.connect, close_timeout=close_budget)

        async def main() -> None:
            application = ctx.app()
            selected = application.select_aggregates(_names(aggregates))
            async with (
                graceful_shutdown(drain_budget) as shutdown,
                connect(options, publish_url=options.resolved_url() is None) as nc,
                run_app(
                    nc,
                    application,
                    aggregates=selected,
                    projections=[],
                    process_managers=[],
                    settings=settings,
                ),
            ):
                await shutdown.wait()
                log.info("worker_stopping")
            if shutdown.forced:
                raise typer.Exit(1)

        run(main)

    @app.command()
    @with_context("cqrs-send", app=False)
    def send(
        aggregate: str,
        aggregate_id: str,
        command: str,
        args: str = typer.Argument("{}", help="The command's arguments as JSON ('-' = stdin)."),
        command_id: str | None = typer.Option(None, "--command-id", help="Idempotency key."),
        correlation_id: str | None = typer.Option(None, "--correlation-id"),
        timeout: float = typer.Option(10.0, "--timeout"),
        *,
        ctx: Context,
    ) -> None:
        """Send one command and print its reply (exit 1 on an error reply)."""

        async def main() -> None:
            body = parse_json_arg(args)
            async with connect(ctx.connect, embedded=False) as nc:
                result = await Client(nc, timeout=timeout).send(
                    aggregate,
                    aggregate_id,
                    command,
                    body,
                    command_id=command_id,
                    correlation_id=correlation_id,
                )
            console.print_json(codec.dumps(result).decode())

        run(main)

    @app.command()
    @with_context("cqrs-events", stream=True)
    def events(
        aggregate: str,
        aggregate_id: str,
        at_version: int | None = typer.Option(
            None, "--at-version", min=0, help="Print the state after this many events."
        ),
        at: str | None = typer.Option(
            None, "--at", help="Print the state at this RFC 3339 time (e.g. 2026-11-26T10:00:00Z)."
        ),
        diff: tuple[int, int] | None = typer.Option(
            None, "--diff", help="Print the fields that changed between two versions: A B."
        ),
        as_json: bool = JsonOption,
        *,
        ctx: Context,
    ) -> None:
        """Print an aggregate's event history, oldest first, or its state at a version or time.

        The past states fold the history with the app's aggregate definition (--app).
        """
        past = check_history_options(at_version, at, diff)

        async def main() -> None:
            check_name(aggregate, field="aggregate")
            check_id(aggregate_id)
            definition = ctx.app().aggregate(aggregate) if past else None
            async with connect(ctx.connect) as nc:
                store = EventStore(nc, StreamSettings(name=ctx.stream))
                await store.start()
                try:
                    if definition is not None:
                        await show_history(
                            AggregateHistory(store, definition),
                            aggregate_id,
                            at_version=at_version,
                            at=at,
                            diff=diff,
                            as_json=as_json,
                        )
                        return
                    commits = await store.history(aggregate, aggregate_id)
                finally:
                    await store.stop()
            print_history(commits, as_json=as_json)

        run(main)

    @app.command()
    @with_context(
        "cqrs-demo",
        nats=False,
        app=DEFAULT_APP,
        auth=False,
        log_level="warning",
    )
    def demo(ctx: Context) -> None:
        """Start everything on the embedded server, run the seed scenario, print it, exit.

        The payment deadline is 3 seconds here unless CQRS_ORDER_PAYMENT_TIMEOUT says otherwise.
        """
        os.environ.setdefault("CQRS_ORDER_PAYMENT_TIMEOUT", "3")

        async def main() -> None:
            from aggregates.scenario import run_scenario
            from projections.scenario import run_queries

            application = ctx.app()
            async with connect(ctx.connect, publish_url=True) as nc:
                url = nc.connected_url.geturl() if nc.connected_url else "?"
                console.print(f"embedded nats-server at {url}")
                async with run_app(nc, application):
                    client = Client(nc)
                    ids = await run_scenario(client, console.print)
                    store = EventStore(nc)
                    await store.start()
                    try:
                        console.print("[bold]6. Each aggregate's history[/bold]")
                        for agg, key in (
                            ("user", "user"),
                            ("order", "order_a"),
                            ("order", "order_b"),
                        ):
                            console.print(f"[cyan]{agg}/{ids[key]}[/cyan]")
                            print_history(await store.history(agg, ids[key]), as_json=False)
                        await run_queries(client, ids, console.print)
                        await show_payment_deadline(client, store, ids["user"])
                    finally:
                        await store.stop()
            console.print("[green]demo finished[/green]")

        run(main)


async def show_payment_deadline(client: Client, store: EventStore, user_id: str) -> None:
    """Create an order nobody pays and show the payment deadline cancelling it."""
    order_id = f"ord-{uuid.uuid4().hex[:6]}-unpaid"
    timeout = os.environ["CQRS_ORDER_PAYMENT_TIMEOUT"]
    console.print(f"[bold]9. Nobody pays {order_id}[/bold] (payment deadline: {timeout}s)")
    lines = [{"sku": "mug-3", "quantity": 1, "unit_price": "7.50"}]
    await client.send("order", order_id, "create", {"user_id": user_id, "lines": lines})
    with anyio.move_on_after(float(timeout) + 30):
        while True:
            commits = await store.history("order", order_id)
            if any(e.type == "order.cancelled.v1" for c in commits for e in c.events):
                console.print("  the payment deadline passed and the order was cancelled:")
                print_history(commits, as_json=False)
                return
            await anyio.sleep(0.2)  # polling the history; bounded by the scope above
    console.print("  [red]the order was not cancelled in time[/red]")


def print_history(commits: list, *, as_json: bool) -> None:  # type: ignore[type-arg]
    if as_json:
        for commit in commits:
            for offset, event in enumerate(commit.events):
                console.print_json(
                    codec.dumps(
                        {
                            "version": commit.first_version + offset,
                            "seq": commit.seq,
                            "type": event.type,
                            "data": event.data,
                            "command_id": commit.command_id,
                            "correlation_id": commit.correlation_id,
                            "recorded_at": commit.recorded_at,
                        }
                    ).decode()
                )
        return
    table = Table(show_lines=False)
    for column in ("version", "seq", "type", "data", "command"):
        table.add_column(column, overflow="fold")
    for commit in commits:
        for offset, event in enumerate(commit.events):
            table.add_row(
                str(commit.first_version + offset),
                str(commit.seq),
                event.type,
                codec.dumps(event.data).decode(),
                commit.command,
            )
    if not commits:
        console.print("  (no events)")
    else:
        console.print(table)
