"""CLI command running process managers: ``cqrs processes``."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from ..domain.app import DEFAULT_APP
from ..log import get_logger
from ..ops.run import run_app
from ..processes.settings import ProcessSettings
from ..transport.connection import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RECONNECTS,
    STATE_DIR,
)
from ..transport.startup import DEFAULT_STARTUP_TIMEOUT
from ..transport.streams import StreamSettings
from ..write.worker import WorkerSettings
from .common import (
    AppSpec,
    ConnectTimeout,
    Context,
    Creds,
    LogFormatOption,
    LogLevel,
    MaxReconnects,
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
    names,
)
from .serve import Serving, serve

log = get_logger("runtime.cli")


def register(app: typer.Typer) -> None:
    app.command()(processes)


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
    pin_timeout: Annotated[
        float,
        typer.Option(
            "--pin-timeout",
            envvar="CQRS_PIN_TIMEOUT",
            help="Seconds without pulling before another replica takes over (> --ack-wait).",
        ),
    ] = 15.0,
    replicas: Annotated[int, typer.Option("--replicas", envvar="CQRS_REPLICAS")] = 1,
    shutdown_timeout: ShutdownTimeout = 30.0,
    startup_timeout: StartupTimeout = DEFAULT_STARTUP_TIMEOUT,
    ready_file: ReadyFile = None,
    metrics_port: MetricsPort = None,
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

    Replicas of one process manager share its consumer: each event is handled by one of them.
    SIGTERM or Ctrl-C stops it between batches and exits 0 within --shutdown-timeout; when its
    connection closes for good it exits 69.
    """
    ctx = Context.of(typer_ctx, "cqrs-processes")
    try:
        settings = ProcessSettings(
            stream=ctx.stream,
            replicas=replicas,
            start=start,
            ack_wait=ack_wait,
            pin_timeout=pin_timeout,
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
        ctx, "processes", shutdown_timeout=shutdown_timeout, metrics_port=metrics_port, setup=setup
    )
