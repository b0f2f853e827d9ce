"""CLI commands of the write side: dev, worker, send and events."""

from __future__ import annotations

import shlex
import uuid
from typing import Annotated

import typer

from ..client import Client
from ..domain.app import DEFAULT_APP
from ..errors import CqrsError, Timeout
from ..gateway import GatewaySettings, run_gateway
from ..log import get_logger
from ..ops.run import run_app
from ..ops.shutdown import graceful_shutdown
from ..ops.telemetry import process_telemetry
from ..ownership.coordinator import DEFAULT_LEASE_TTL, OwnershipSettings
from ..processes.settings import ProcessSettings
from ..read.settings import ProjectorSettings
from ..transport.connection import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RECONNECTS,
    STATE_DIR,
    connect,
)
from ..transport.startup import DEFAULT_STARTUP_TIMEOUT
from ..transport.streams import StreamSettings
from ..wire import codec
from ..wire.naming import check_id, check_name
from ..wire.partitions import DEFAULT_PARTITIONS, MAX_PARTITIONS
from ..write.history import AggregateHistory
from ..write.host import HostSettings
from ..write.store import EventStore
from ..write.worker import WorkerSettings
from . import apps
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
    ScopedReads,
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
    parse_json_arg,
    run,
)
from .devserver import DevServer
from .history import check_history_options, print_history, show_history
from .serve import Serving, serve

log = get_logger("runtime.cli")

DEV_SHUTDOWN_TIMEOUT = 10.0
# Of that, what HTTP requests in flight get (one stalled upload must not use up the deadline
# the workers and projections need to hand over and snapshot).
DEV_GATEWAY_DRAIN = 3.0


def register(app: typer.Typer) -> None:
    for command in (dev, worker, send, events):
        app.command()(command)


def dev(
    typer_ctx: typer.Context,
    gateway_host: Annotated[
        str, typer.Option("--gateway-host", envvar="CQRS_GATEWAY_HOST", help="HTTP gateway's.")
    ] = "127.0.0.1",
    gateway_port: Annotated[
        int,
        typer.Option("--gateway-port", envvar="CQRS_GATEWAY_PORT", help="0: any free port."),
    ] = 8080,
    nats_url: NatsUrl = None,
    app_spec: AppSpec = DEFAULT_APP,
    stream: Stream = "EVENTS",
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
    metrics_port: MetricsPort = None,
    startup_timeout: StartupTimeout = DEFAULT_STARTUP_TIMEOUT,
    metrics_host: MetricsHost = LOOPBACK,
    state_dir: StateDir = STATE_DIR,
    log_format: LogFormatOption = "auto",
    log_level: LogLevel = "info",
) -> None:
    """Embedded NATS server + workers, projections, process managers and the HTTP gateway,
    until Ctrl-C.

    One `cqrs dev` per state directory: a second one is refused while the first runs. Ctrl-C,
    SIGTERM or SIGHUP (a closed terminal) stop it: the clients drain (leases and claims
    released), then the embedded server stops. With --nats or NATS_URL it uses that server
    instead of the embedded one, and says so.
    """
    ctx = Context.of(typer_ctx, "cqrs-dev")
    server = DevServer.of(typer_ctx, ctx.connect)

    async def main() -> None:
        log.info("dev_server", **server.fields())
        application = ctx.app()
        apps.record(ctx.app_choice, state_dir)  # for the commands run against this server
        settings = WorkerSettings(
            stream=StreamSettings(name=ctx.stream),
            host=HostSettings(log_commands=True),
            startup_timeout=startup_timeout,
        )
        async with (
            graceful_shutdown(DEV_SHUTDOWN_TIMEOUT) as shutdown,
            connect(ctx.connect, join=False) as nc,
            process_telemetry("cqrs-dev", nc, metrics_port, metrics_host),
            run_app(
                nc,
                application,
                settings=settings,
                projector_settings=ProjectorSettings(
                    stream=ctx.stream, startup_timeout=startup_timeout
                ),
                process_settings=ProcessSettings(
                    stream=ctx.stream, startup_timeout=startup_timeout
                ),
            ),
            run_gateway(
                nc,
                application,
                GatewaySettings(host=gateway_host, port=gateway_port),
                drain_timeout=DEV_GATEWAY_DRAIN,
            ) as gateway,
        ):
            log.info(
                "dev_ready",
                nats=nc.connected_url.geturl() if nc.connected_url else None,
                http=gateway.url,
                openapi=f"{gateway.url}/docs",
                commands=[
                    f"cmd.{a.name}.<id>.<{'|'.join(a.command_names)}>"
                    for a in application.aggregates
                ],
                queries=[
                    f"query.{p.name}.<{'|'.join(p.queries)}>" for p in application.projections
                ],
                process_managers=[m.name for m in application.process_managers],
                try_it=apps.try_it(application),
            )
            await shutdown.wait(nc)
            log.info("dev_stopping")
        if shutdown.forced:
            raise typer.Exit(1)

    run(main, hint=server.hint)


def worker(
    typer_ctx: typer.Context,
    aggregates: Annotated[
        str | None,
        typer.Option(
            "--aggregates", envvar="CQRS_AGGREGATES", help="Comma-separated; default all."
        ),
    ] = None,
    replicas: Annotated[int, typer.Option("--replicas", envvar="CQRS_REPLICAS")] = 1,
    mailbox_size: Annotated[int, typer.Option("--mailbox-size", envvar="CQRS_MAILBOX_SIZE")] = 1024,
    max_actors: Annotated[int, typer.Option("--max-actors", envvar="CQRS_MAX_ACTORS")] = 100_000,
    idle_timeout: Annotated[
        float, typer.Option("--idle-timeout", envvar="CQRS_IDLE_TIMEOUT")
    ] = 600.0,
    partitions: Annotated[
        int,
        typer.Option(
            "--partitions",
            envvar="CQRS_PARTITIONS",
            min=1,
            max=MAX_PARTITIONS,
            help="Command partitions; must match the server's mapping.",
        ),
    ] = DEFAULT_PARTITIONS,
    lease_ttl: Annotated[
        int,
        typer.Option(
            "--lease-ttl",
            envvar="CQRS_LEASE_TTL",
            min=1,
            help="Seconds a partition lease lives unrenewed (a dead worker's partitions move "
            "within this).",
        ),
    ] = DEFAULT_LEASE_TTL,
    shutdown_timeout: ShutdownTimeout = 30.0,
    startup_timeout: StartupTimeout = DEFAULT_STARTUP_TIMEOUT,
    scoped_reads: ScopedReads = False,
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
    """A worker process serving the commands of some aggregate types.

    Run as many as you like: on a server that partitions commands each partition is owned by
    one worker at a time; on one without, every worker confirms its decisions against the
    stream. SIGTERM or Ctrl-C drains it: it stops taking commands, answers the ones it has,
    hands its partitions over, closes its connection and exits 0, all within
    --shutdown-timeout (exit 1 if cut short). When its connection closes for good it leaves its
    ready file and exits 69.
    """
    ctx = Context.of(typer_ctx, "cqrs-worker")
    settings = WorkerSettings(
        stream=StreamSettings(name=ctx.stream, replicas=replicas, scoped_reads=scoped_reads),
        host=HostSettings(
            mailbox_size=mailbox_size, max_actors=max_actors, idle_timeout=idle_timeout
        ),
        ownership=OwnershipSettings(partitions=partitions, lease_ttl=lease_ttl),
        startup_timeout=startup_timeout,
        ready_file=ready_file,
    )

    def setup() -> Serving:
        application = ctx.app()
        selected = application.select_aggregates(names(aggregates))
        return lambda nc: run_app(
            nc,
            application,
            aggregates=selected,
            projections=[],
            process_managers=[],
            settings=settings,
        )

    serve(
        ctx,
        "worker",
        shutdown_timeout=shutdown_timeout,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        setup=setup,
    )


def send(
    typer_ctx: typer.Context,
    aggregate: str,
    aggregate_id: str,
    command: str,
    args: Annotated[
        str, typer.Argument(help="The command's arguments as JSON ('-' = stdin).")
    ] = "{}",
    command_id: Annotated[
        str | None, typer.Option("--command-id", help="Idempotency key (default: a new one).")
    ] = None,
    correlation_id: Annotated[str | None, typer.Option("--correlation-id")] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the reply.")
    ] = 10.0,
    nats_url: NatsUrl = None,
    creds: Creds = None,
    user: User = None,
    password: Password = None,
    tls_ca: TlsCa = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
    state_dir: StateDir = STATE_DIR,
    as_json: Json = False,
) -> None:
    """Send one command and print its reply (exit codes: see the errors reference)."""
    ctx = Context.of(typer_ctx, "cqrs-send")
    command_id = command_id or uuid.uuid4().hex

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
        if as_json:
            print(codec.dumps(result).decode())
        else:
            console.print_json(codec.dumps(result).decode())

    def retry_hint(error: CqrsError) -> str | None:
        if not isinstance(error, Timeout):
            return None
        again = ["cqrs", "send", aggregate, aggregate_id, command, args, "--command-id", command_id]
        return (
            f"command id {command_id}: it may or may not have been applied; retrying it with "
            f"the same id is safe: {shlex.join(again)}"
        )

    run(main, as_json=as_json, hint=retry_hint)


def events(
    typer_ctx: typer.Context,
    aggregate: str,
    aggregate_id: str,
    at_version: Annotated[
        int | None,
        typer.Option("--at-version", min=0, help="Print the state after this many events."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="Print the state at this RFC 3339 time (e.g. 2026-11-26T10:00:00Z)."
        ),
    ] = None,
    diff: Annotated[
        tuple[int, int] | None,
        typer.Option("--diff", help="Print the fields that changed between two versions: A B."),
    ] = None,
    as_json: Json = False,
    nats_url: NatsUrl = None,
    app_spec: AppSpec = DEFAULT_APP,
    creds: Creds = None,
    user: User = None,
    password: Password = None,
    tls_ca: TlsCa = None,
    stream: Stream = "EVENTS",
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
    state_dir: StateDir = STATE_DIR,
) -> None:
    """Print an aggregate's event history, oldest first (--json: one JSON object per event
    and line), or its state at a version or time.

    The past states fold the history with the app's aggregate definition (--app).
    """
    ctx = Context.of(typer_ctx, "cqrs-events")
    past = check_history_options(at_version, at, diff)

    async def main() -> None:
        check_name(aggregate, field="aggregate")
        check_id(aggregate_id)
        definition = ctx.app().aggregate(aggregate) if past else None
        async with connect(ctx.connect, embedded=False) as nc:
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

    run(main, as_json=as_json)
