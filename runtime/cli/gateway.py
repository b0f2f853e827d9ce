"""CLI command of the HTTP API gateway: ``cqrs gateway``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import structlog
import typer

from ..domain.app import DEFAULT_APP
from ..gateway import GatewaySettings, Tokens, run_gateway
from ..ops.shutdown import budgets as shutdown_budgets
from ..transport.connection import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RECONNECTS,
    STATE_DIR,
)
from .common import (
    LOOPBACK,
    AppSpec,
    ConnectTimeout,
    Context,
    Creds,
    LogFormatOption,
    LogLevel,
    MaxReconnects,
    MetricsHost,
    MetricsPort,
    NatsUrl,
    Password,
    ShutdownTimeout,
    StateDir,
    TlsCa,
    TlsCert,
    TlsKey,
    User,
)
from .serve import Serving, serve

log = structlog.get_logger("runtime.cli")


def register(app: typer.Typer) -> None:
    app.command()(gateway)


def gateway(
    typer_ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", envvar="CQRS_GATEWAY_HOST", help="Interface to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", envvar="CQRS_GATEWAY_PORT", help="Port to listen on.")
    ] = 8080,
    tokens_file: Annotated[
        Path | None,
        typer.Option(
            "--tokens-file",
            envvar="CQRS_GATEWAY_TOKENS_FILE",
            help="JSON object of bearer token -> scopes; without it no token is asked for.",
        ),
    ] = None,
    max_body_size: Annotated[
        int,
        typer.Option("--max-body-size", envvar="CQRS_GATEWAY_MAX_BODY_SIZE", min=2),
    ] = 512 * 1024,
    timeout: Annotated[
        float,
        typer.Option("--timeout", envvar="CQRS_GATEWAY_TIMEOUT", help="Seconds per request (504)."),
    ] = 10.0,
    shutdown_timeout: ShutdownTimeout = 30.0,
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
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
    max_reconnects: MaxReconnects = DEFAULT_MAX_RECONNECTS,
    state_dir: StateDir = STATE_DIR,
    log_format: LogFormatOption = "auto",
    log_level: LogLevel = "info",
) -> None:
    """The HTTP API gateway: commands and queries over HTTP, OpenAPI at /openapi.json.

    It is a NATS client like any other and keeps no state: run as many as needed behind a load
    balancer. SIGTERM drains it: it stops accepting, answers what is in flight, exits 0.
    """
    ctx = Context.of(typer_ctx, "cqrs-gateway")
    drain_budget = shutdown_budgets(shutdown_timeout)[0]

    def setup() -> Serving:
        settings = GatewaySettings(
            host=host,
            port=port,
            tokens=Tokens.load(tokens_file) if tokens_file else Tokens(),
            max_body_size=max_body_size,
            timeout=timeout,
        )
        application = ctx.app()
        return lambda nc: run_gateway(nc, application, settings, drain_timeout=drain_budget)

    serve(
        ctx,
        "gateway",
        shutdown_timeout=shutdown_timeout,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        setup=setup,
        embedded=False,
    )
