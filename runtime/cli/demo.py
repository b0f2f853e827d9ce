"""`cqrs demo`: the example domain's scenario on a throw-away embedded server."""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import anyio
import typer
from nats.aio.client import Client as NATS

from ..client import Client
from ..domain.app import DEFAULT_APP
from ..ops.run import run_app
from ..ops.shutdown import graceful_shutdown
from ..transport.connection import connect_embedded
from ..write.store import EventStore
from .common import Context, LogFormatOption, LogLevel, console, run
from .history import print_history
from .write import DEV_SHUTDOWN_TIMEOUT


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo(
    typer_ctx: typer.Context,
    store: Annotated[
        Path | None,
        typer.Option(
            "--store",
            help="State directory to run on (default: a fresh temporary one, removed after).",
        ),
    ] = None,
    log_format: LogFormatOption = "auto",
    log_level: LogLevel = "warning",
) -> None:
    """Start everything on the embedded server, run the seed scenario, print it, exit.

    The payment deadline is 3 seconds here unless CQRS_ORDER_PAYMENT_TIMEOUT says otherwise.
    """
    ctx = Context.of(typer_ctx, "cqrs-demo", app_spec=DEFAULT_APP)
    os.environ.setdefault("CQRS_ORDER_PAYMENT_TIMEOUT", "3")

    async def main(state_dir: Path) -> None:
        from aggregates.scenario import run_scenario
        from projections.scenario import run_queries

        async def scenario(nc: NATS) -> None:
            client = Client(nc)
            ids = await run_scenario(client, console.print)
            events = EventStore(nc)
            await events.start()
            try:
                console.print("[bold]6. Each aggregate's history[/bold]")
                for agg, key in (("user", "user"), ("order", "order_a"), ("order", "order_b")):
                    console.print(f"[cyan]{agg}/{ids[key]}[/cyan]")
                    print_history(await events.history(agg, ids[key]), as_json=False)
                await run_queries(client, ids, console.print)
                await show_payment_deadline(client, events, ids["user"])
            finally:
                await events.stop()

        application = ctx.app()
        # Ctrl-C stops the scenario and drains like `cqrs dev`: the server stops last.
        finished = False
        async with (
            graceful_shutdown(DEV_SHUTDOWN_TIMEOUT) as shutdown,
            connect_embedded(replace(ctx.connect, state_dir=state_dir)) as nc,
        ):
            url = nc.connected_url.geturl() if nc.connected_url else "?"
            console.print(f"embedded nats-server at {url} (store {state_dir})")
            async with run_app(nc, application):
                finished = await shutdown.run_until_signal(lambda: scenario(nc), nc)
        if shutdown.forced:
            raise typer.Exit(1)
        console.print("[green]demo finished[/green]" if finished else "demo stopped")

    if store is not None:
        run(lambda: main(store))
        return
    with tempfile.TemporaryDirectory(prefix="cqrs-demo-") as directory:
        run(lambda: main(Path(directory)))


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
