"""``cqrs projections retire``: delete the consumers and snapshots of a version no longer run."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..read.retire import retire
from ..transport.connection import DEFAULT_CONNECT_TIMEOUT, STATE_DIR, connect
from ..wire import codec
from .common import (
    ConnectTimeout,
    Context,
    Creds,
    Json,
    NatsUrl,
    Password,
    StateDir,
    Stream,
    TlsCa,
    User,
    console,
    run,
)


def register(projections_app: typer.Typer) -> None:
    projections_app.command("retire")(retire_command)


def retire_command(
    typer_ctx: typer.Context,
    name: str,
    version: Annotated[
        int, typer.Option("--version", min=1, help="The projection version to retire.")
    ],
    as_json: Json = False,
    nats_url: NatsUrl = None,
    creds: Creds = None,
    user: User = None,
    password: Password = None,
    tls_ca: TlsCa = None,
    stream: Stream = "EVENTS",
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
    state_dir: StateDir = STATE_DIR,
) -> None:
    """Delete the durable consumers and snapshots of one version of a projection, once none of
    its replicas runs (after a deploy of a newer version, when rolling back is off the table).
    Refuses (exit 75) while a replica of that version is live."""
    ctx = Context.of(typer_ctx, "cqrs-retire")

    async def main() -> dict[str, Any]:
        async with connect(ctx.connect, embedded=False) as nc:
            return (await retire(nc, name, version, stream=ctx.stream)).to_dict()

    result = run(main, as_json=as_json)
    if as_json:
        print(codec.dumps(result).decode())
        return
    for consumer in result["consumers"]:
        console.print(f"deleted consumer {consumer}")
    for snapshot in result["snapshots"]:
        console.print(f"deleted snapshot {snapshot}")
    if not result["consumers"] and not result["snapshots"]:
        console.print(f"nothing of {name} version {version} was left")
