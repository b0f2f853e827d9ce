"""The ``cqrs`` command line."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from . import demo, deploy, exits, gateway, processes, read, workers, write
from .bench import bench_app

app = typer.Typer(
    name="cqrs",
    help="Actor-style CQRS and event sourcing on NATS JetStream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _version(show: bool) -> None:
    if show:
        try:
            typer.echo(f"cqrs-runtime {version('cqrs-runtime')}")
        except PackageNotFoundError:
            typer.echo("cqrs-runtime (not installed)")
        raise typer.Exit()


@app.callback()
def cqrs(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Actor-style CQRS and event sourcing on NATS JetStream."""


write.register(app)
demo.register(app)
read.register(app)
processes.register(app)
workers.register(app)
deploy.register(app)
gateway.register(app)
app.add_typer(bench_app)


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        # click ends a usage error (a bad option or value) with 2; sysexits calls it 64.
        if exc.code == 2:
            raise SystemExit(exits.USAGE) from None
        raise
