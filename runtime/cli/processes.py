"""CLI commands of process managers: ``cqrs processes`` runs replicas; ``cqrs processes
dead-letters|retry|discard`` operate on parked instances (runtime/processes/parking.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer
from nats.aio.client import Client as NATS
from rich.table import Table

from ..domain.app import DEFAULT_APP
from ..log import get_logger
from ..ops.run import run_app
from ..ownership.coordinator import DEFAULT_LEASE_TTL
from ..processes.replay import Replay
from ..processes.settings import ProcessSettings
from ..transport.connection import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RECONNECTS,
    STATE_DIR,
    connect,
)
from ..transport.startup import DEFAULT_STARTUP_TIMEOUT
from ..transport.streams import StreamSettings
from ..wire import codec
from ..wire.partitions import DEFAULT_PARTITIONS, MAX_PARTITIONS
from ..write.worker import WorkerSettings
from .common import (
    LOOPBACK,
    AppSpec,
    ConnectTimeout,
    Context,
    Creds,
    Json,
    LogFormatOption,
    LogLevel,
    MaxReconnects,
    MetricsHost,
    MetricsPort,
    NatsUrl,
    Password,
    ReadyFile,
    ShutdownTimeout,
    StartupTimeout,
    StateDir,
    Stream,
    TlsCa,
    TlsCert,
    TlsKey,
    User,
    console,
    names,
    run,
)
from .serve import Serving, serve

log = get_logger("runtime.cli")


processes_app = typer.Typer(
    name="processes",
    help="Run process manager replicas; list, retry and discard parked instances.",
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(processes_app)


@processes_app.callback()
def processes(
    typer_ctx: typer.Context,
    process_managers: Annotated[
        str | None,
        typer.Option(
            "--process-managers",
            envvar="CQRS_PROCESS_MANAGERS",
            help="Comma-separated; default all.",
        ),
    ] = None,
    start: Annotated[
        Literal["new", "all"],
        typer.Option(
            "--start",
            envvar="CQRS_PROCESS_START",
            help="Where a process manager's new consumer starts: `new` events or `all`.",
        ),
    ] = "new",
    ack_wait: Annotated[
        float,
        typer.Option(
            "--ack-wait", envvar="CQRS_ACK_WAIT", help="Seconds before a delivery is retried."
        ),
    ] = 10.0,
    partitions: Annotated[
        int,
        typer.Option(
            "--partitions",
            envvar="CQRS_PARTITIONS",
            min=1,
            max=MAX_PARTITIONS,
            help="Partitions of the process managers' instances (the same on every replica).",
        ),
    ] = DEFAULT_PARTITIONS,
    lease_ttl: Annotated[
        int,
        typer.Option(
            "--lease-ttl",
            envvar="CQRS_LEASE_TTL",
            min=1,
            help="Seconds a partition lease lives unrenewed (a dead replica's partitions move "
            "within this, plus --ack-wait).",
        ),
    ] = DEFAULT_LEASE_TTL,
    max_attempts: Annotated[
        int,
        typer.Option(
            "--max-attempts",
            envvar="CQRS_MAX_ATTEMPTS",
            help="Tries of a raising reaction (with back-off) before its instance is parked.",
        ),
    ] = 5,
    bucket: Annotated[
        str,
        typer.Option(
            "--instances-bucket",
            envvar="CQRS_PROCESS_BUCKET",
            help="The KV bucket of the instances (another app on the same server: another).",
        ),
    ] = "cqrs-processes",
    replicas: Annotated[int, typer.Option("--replicas", envvar="CQRS_REPLICAS")] = 1,
    shutdown_timeout: ShutdownTimeout = 30.0,
    startup_timeout: StartupTimeout = DEFAULT_STARTUP_TIMEOUT,
    ready_file: ReadyFile = None,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = LOOPBACK,
    nats_url: NatsUrl = None,
    app_spec: AppSpec = DEFAULT_APP,
    creds: Creds = None,
    user: User = None,
    password: Password = None,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    stream: Stream = "EVENTS",
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
    max_reconnects: MaxReconnects = DEFAULT_MAX_RECONNECTS,
    state_dir: StateDir = STATE_DIR,
    log_format: LogFormatOption = "auto",
    log_level: LogLevel = "info",
) -> None:
    """A process manager replica for each process manager: reacts to events and timers.

    Replicas of one process manager share its instances by partition, each partition owned by
    one replica at a time (leases, as workers share aggregates).
    SIGTERM or Ctrl-C stops it between batches and exits 0 within --shutdown-timeout; when its
    connection closes for good it exits 69.
    """
    if typer_ctx.invoked_subcommand is not None:
        return
    ctx = Context.of(typer_ctx, "cqrs-processes")
    try:
        settings = ProcessSettings(
            stream=ctx.stream,
            replicas=replicas,
            start=start,
            ack_wait=ack_wait,
            partitions=partitions,
            lease_ttl=lease_ttl,
            bucket=bucket,
            max_attempts=max_attempts,
            startup_timeout=startup_timeout,
            ready_file=ready_file,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None

    def setup() -> Serving:
        application = ctx.app()
        selected = application.select_process_managers(names(process_managers))
        return lambda nc: run_app(
            nc,
            application,
            aggregates=[],
            projections=[],
            process_managers=selected,
            settings=WorkerSettings(stream=StreamSettings(name=ctx.stream, replicas=replicas)),
            process_settings=settings,
        )

    serve(
        ctx,
        "processes",
        shutdown_timeout=shutdown_timeout,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        setup=setup,
    )


Key = Annotated[str | None, typer.Option("--key", help="One instance key (default: every one).")]


Partitions = Annotated[
    int,
    typer.Option(
        "--partitions",
        envvar="CQRS_PARTITIONS",
        min=1,
        max=MAX_PARTITIONS,
        help="The replicas' --partitions (where a replayed reaction's timers fire).",
    ),
]


def _replaying(
    typer_ctx: typer.Context, name: str, what: str
) -> tuple[Context, Callable[[NATS], Replay]]:
    ctx = Context.of(typer_ctx, f"cqrs-processes-{what}")
    partitions = int(typer_ctx.params.get("partitions", DEFAULT_PARTITIONS))

    def opened(nc: NATS) -> Replay:
        manager = ctx.app().process_manager(name)
        return Replay(nc, manager, ProcessSettings(stream=ctx.stream, partitions=partitions))

    return ctx, opened


@processes_app.command("dead-letters")
def dead_letters_command(
    typer_ctx: typer.Context,
    name: str,
    as_json: Json = False,
    app_spec: AppSpec = DEFAULT_APP,
    stream: Stream = "EVENTS",
    nats_url: NatsUrl = None,
    creds: Creds = None,
    user: User = None,
    password: Password = None,
    tls_ca: TlsCa = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
    state_dir: StateDir = STATE_DIR,
) -> None:
    """List the parked instances of a process manager: the first failing event or timer of
    each, its error, and how many triggers wait behind it."""
    ctx, opened = _replaying(typer_ctx, name, "dead-letters")

    async def main() -> list[dict[str, Any]]:
        async with connect(ctx.connect, embedded=False) as nc, opened(nc) as replay:
            return [p.to_dict() for p in await replay.parked_instances()]

    parked = run(main, as_json=as_json)
    if as_json:
        print(codec.dumps(parked).decode())
        return
    if not parked:
        console.print(f"no parked instances of {name}")
        return
    table = Table(title=f"parked instances of {name}")
    for column in ("key", "first trigger", "error", "behind", "since"):
        table.add_column(column)
    for p in parked:
        first = p["first"]
        where = (
            f"event seq {first['seq']}/{first['index']}"
            if first.get("kind") == "event"
            else f"timer {first['timer']['name']}"
        )
        table.add_row(p["key"], where, first["error"][:80], str(p["behind"]), first["at"])
    console.print(table)


@processes_app.command("retry")
def retry_command(
    typer_ctx: typer.Context,
    name: str,
    key: Key = None,
    partitions: Partitions = DEFAULT_PARTITIONS,
    as_json: Json = False,
    app_spec: AppSpec = DEFAULT_APP,
    stream: Stream = "EVENTS",
    nats_url: NatsUrl = None,
    creds: Creds = None,
    user: User = None,
    password: Password = None,
    tls_ca: TlsCa = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
    state_dir: StateDir = STATE_DIR,
    log_format: LogFormatOption = "auto",
    log_level: LogLevel = "info",
) -> None:
    """Replay the parked triggers of one instance (--key) or of all, in order, and unpark
    them. Commands keep their ids, so a retry cut short and run again sends nothing twice;
    a trigger that fails again stays parked, with the instances after it."""
    ctx, opened = _replaying(typer_ctx, name, "retry")

    async def main() -> dict[str, list[str]]:
        async with connect(ctx.connect, embedded=False) as nc, opened(nc) as replay:
            return {k: await replay.retry(k) for k in await replay.keys(key)}

    done = run(main, as_json=as_json)
    if as_json:
        print(codec.dumps(done).decode())
        return
    for k, triggers in done.items():
        console.print(f"{name}.{k}: replayed {len(triggers)} parked triggers, unparked")
    if not done:
        console.print(f"no parked instances of {name}")


@processes_app.command("discard")
def discard_command(
    typer_ctx: typer.Context,
    name: str,
    key: Annotated[str, typer.Option("--key", help="The instance key.")],
    as_json: Json = False,
    app_spec: AppSpec = DEFAULT_APP,
    stream: Stream = "EVENTS",
    nats_url: NatsUrl = None,
    creds: Creds = None,
    user: User = None,
    password: Password = None,
    tls_ca: TlsCa = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
    state_dir: StateDir = STATE_DIR,
    log_format: LogFormatOption = "auto",
    log_level: LogLevel = "info",
) -> None:
    """Drop the parked triggers of one instance and unpark it; each dropped trigger is logged
    (``process_trigger_discarded``). The instance reacts again from its next trigger."""
    ctx, opened = _replaying(typer_ctx, name, "discard")

    async def main() -> list[dict[str, Any]]:
        async with connect(ctx.connect, embedded=False) as nc, opened(nc) as replay:
            await replay.keys(key)
            return await replay.discard(key)

    dropped = run(main, as_json=as_json)
    if as_json:
        print(codec.dumps(dropped).decode())
        return
    console.print(f"{name}.{key}: discarded {len(dropped)} parked triggers, unparked")
