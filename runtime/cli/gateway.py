"""CLI command of the HTTP API gateway: ``cqrs gateway``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..domain.app import DEFAULT_APP
from ..gateway import ConnectionLimits, GatewaySettings, Tokens, run_gateway
from ..log import get_logger
from ..ops.shutdown import budgets as shutdown_budgets
from ..transport.connection import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RECONNECTS,
    STATE_DIR,
)
from ..transport.startup import DEFAULT_STARTUP_TIMEOUT
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
    StartupTimeout,
    StateDir,
    TlsCa,
    TlsCert,
    TlsKey,
    User,
)
from .serve import Serving, serve

log = get_logger("runtime.cli")
DEFAULTS = ConnectionLimits()


def _option(name: str, help: str, min: float) -> Any:
    """A ``cqrs gateway`` limit option, read also from ``CQRS_GATEWAY_<NAME>``."""
    env = "CQRS_GATEWAY_" + name.removeprefix("--").replace("-", "_").upper()
    return typer.Option(name, envvar=env, help=help, min=min)


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
    max_connections: Annotated[
        int,
        _option(
            "--max-connections",
            "Connections open at once; at the cap the oldest idle or unfinished one is closed.",
            min=1,
        ),
    ] = DEFAULTS.max_connections,
    header_timeout: Annotated[
        float,
        _option(
            "--header-timeout",
            "Seconds from a request's first byte to its last header (then 408, closed).",
            min=0.1,
        ),
    ] = DEFAULTS.header_timeout,
    body_timeout: Annotated[
        float,
        _option(
            "--body-timeout",
            "Seconds a request body may take, plus its length at --body-min-rate (then 408).",
            min=0.1,
        ),
    ] = DEFAULTS.body_timeout,
    body_min_rate: Annotated[
        int, _option("--body-min-rate", "Bytes per second a body must at least arrive at.", min=1)
    ] = DEFAULTS.body_min_rate,
    idle_timeout: Annotated[
        float,
        _option(
            "--idle-timeout",
            "Seconds a connection may stay open without a request (keep-alive) before closing.",
            min=0.1,
        ),
    ] = DEFAULTS.idle_timeout,
    max_header_size: Annotated[
        int,
        _option("--max-header-size", "Bytes of request line and headers (431 beyond).", min=256),
    ] = DEFAULTS.max_header_size,
    max_headers: Annotated[
        int, _option("--max-headers", "Header lines of a request (431 beyond).", min=1)
    ] = DEFAULTS.max_headers,
    max_url_length: Annotated[
        int, _option("--max-url-length", "Bytes of a request's target (414 beyond).", min=16)
    ] = DEFAULTS.max_url_length,
    max_in_flight_per_client: Annotated[
        int,
        _option(
            "--max-in-flight-per-client",
            "Commands and queries one token (without tokens: one address) may have in flight "
            "(429 beyond).",
            min=1,
        ),
    ] = DEFAULTS.max_in_flight_per_client,
    shutdown_timeout: ShutdownTimeout = 30.0,
    # Taken like every long-running command's, so that one CQRS_STARTUP_TIMEOUT serves a whole
    # deployment; the gateway itself makes no JetStream call while it starts, so nothing waits.
    startup_timeout: StartupTimeout = DEFAULT_STARTUP_TIMEOUT,
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
            limits=ConnectionLimits(
                max_connections=max_connections,
                header_timeout=header_timeout,
                body_timeout=body_timeout,
                body_min_rate=body_min_rate,
                idle_timeout=idle_timeout,
                max_header_size=max_header_size,
                max_headers=max_headers,
                max_url_length=max_url_length,
                max_in_flight_per_client=max_in_flight_per_client,
            ),
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
