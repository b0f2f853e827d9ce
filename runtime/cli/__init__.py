"""The ``cqrs`` command line."""

from __future__ import annotations

import typer

from . import deploy, processes, read, write
from .bench import bench_app

app = typer.Typer(
    name="cqrs",
    help="Actor-style CQRS and event sourcing on NATS JetStream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
write.register(app)
read.register(app)
processes.register(app)
deploy.register(app)
app.add_typer(bench_app)


def main() -> None:
    app()
