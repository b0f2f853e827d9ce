"""``cqrs workers``: the live command workers and the partitions each one owns."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from ..ownership.coordinator import OwnershipSettings
from ..ownership.report import workers_report
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


def register(app: typer.Typer) -> None:
    app.command()(workers)


def workers(
    typer_ctx: typer.Context,
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
    """The live workers, which partitions of which aggregate each owns, and any partition that
    has no owner right now (its commands get no responders until one takes it)."""
    ctx = Context.of(typer_ctx, "cqrs-workers")

    async def main() -> dict[str, Any]:
        async with connect(ctx.connect, embedded=False) as nc:
            return await workers_report(nc, ctx.stream, OwnershipSettings())

    report = run(main, as_json=as_json)
    if as_json:
        print(codec.dumps(report).decode())
        return
    print_workers(report)


def print_workers(report: dict[str, Any]) -> None:
    if not report["workers"]:
        console.print(
            f"no partitioned workers (lease bucket {report['bucket']} is empty or absent): "
            "either none runs, or the server has no partition mapping and they share the "
            "queue group"
        )
        return
    table = Table(title=f"command workers (lease bucket {report['bucket']})")
    for column in ("worker", "host", "pid", "owns"):
        table.add_column(column)
    for w in report["workers"]:
        owns = "; ".join(f"{a}: {_ranges(ps)}" for a, ps in sorted(w["owns"].items())) or "-"
        name = w["member"] if w["live"] else f"{w['member']} [red](gone)[/red]"
        table.add_row(name, str(w["host"] or "-"), str(w["pid"] or "-"), owns)
    console.print(table)
    for aggregate, missing in sorted(report["unowned"].items()):
        console.print(f"[yellow]unowned[/yellow] {aggregate}: {_ranges(missing)}")
    for aggregate, moving in sorted(report["moving"].items()):
        console.print(f"[yellow]moving[/yellow] {aggregate}: {_ranges(moving)}")


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``0-2,5``."""
    out: list[str] = []
    for n in sorted(numbers):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ",".join(out)
