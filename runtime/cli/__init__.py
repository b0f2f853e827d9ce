"""The ``cqrs`` command line."""

from __future__ import annotations

import inspect
import re
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


def unwrapped(doc: str) -> str:
    """A docstring with each paragraph on one line: help text wraps at the terminal's width,
    and the docstring's own line breaks would otherwise cut its sentences in the middle."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(doc))
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _unwrap_help(typer_app: typer.Typer) -> None:
    for command in typer_app.registered_commands:
        doc = command.help or (command.callback.__doc__ if command.callback else None)
        if doc:
            command.help = unwrapped(doc)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            info = group.typer_instance.info
            if isinstance(info.help, str):
                info.help = unwrapped(info.help)
            _unwrap_help(group.typer_instance)


_unwrap_help(app)


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        # click ends a usage error (a bad option or value) with 2; sysexits calls it 64.
        if exc.code == 2:
            raise SystemExit(exits.USAGE) from None
        raise
