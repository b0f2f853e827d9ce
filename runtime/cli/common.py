"""What every CLI command shares: its options as ``Annotated`` types, the context they make,
running async code and reporting its errors.

A command declares the shared options it takes like any typer option, with the aliases below
(``nats_url: NatsUrl = None``), and a ``typer.Context`` parameter; :func:`Context.of` reads the
shared values back from typer's context, so each command lists its options once and passes none
of them by hand.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

import anyio
import typer
from rich.console import Console

from ..domain.app import App
from ..errors import CqrsError
from ..ops.logs import LogFormat, configure_logging
from ..transport.connection import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RECONNECTS,
    STATE_DIR,
    ConnectOptions,
)
from . import apps, exits
from .apps import AppChoice

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats",
        envvar="NATS_URL",
        help="NATS URL (comma-separated for a cluster); without it the development server.",
    ),
]
AppSpec = Annotated[
    str,
    typer.Option(
        "--app",
        envvar="CQRS_APP",
        show_default=False,
        help="Your definitions: comma-separated module[:attribute] (attribute defaults to APP), "
        "each an App, a list of definitions or one definition. Without it: the app of the cqrs "
        "dev here, else [tool.cqrs] app in pyproject.toml, else the example domain.",
    ),
]
Creds = Annotated[
    str | None, typer.Option("--creds", envvar="NATS_CREDS", help="NATS credentials file.")
]
User = Annotated[str | None, typer.Option("--user", envvar="NATS_USER", help="NATS user name.")]
Password = Annotated[
    str | None, typer.Option("--password", envvar="NATS_PASSWORD", help="NATS password.")
]
TlsCa = Annotated[
    str | None, typer.Option("--tls-ca", envvar="NATS_TLS_CA", help="CA file for TLS.")
]
TlsCert = Annotated[
    str | None,
    typer.Option("--tls-cert", envvar="NATS_TLS_CERT", help="Client certificate (mutual TLS)."),
]
TlsKey = Annotated[
    str | None, typer.Option("--tls-key", envvar="NATS_TLS_KEY", help="Client key file.")
]
ConnectTimeout = Annotated[
    float,
    typer.Option(
        "--connect-timeout",
        envvar="CQRS_CONNECT_TIMEOUT",
        min=0.1,
        help="Seconds the first connection may take before the command gives up.",
    ),
]
MaxReconnects = Annotated[
    int,
    typer.Option(
        "--max-reconnects",
        envvar="CQRS_MAX_RECONNECTS",
        min=-1,
        help="Reconnect attempts per server once connected (-1: forever, 0: none); then exit 69.",
    ),
]
Stream = Annotated[str, typer.Option("--stream", envvar="CQRS_STREAM", help="Event stream name.")]
StateDir = Annotated[
    Path,
    typer.Option(
        "--state-dir", envvar="CQRS_STATE_DIR", help="The development server's directory."
    ),
]
LogFormatOption = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        envvar="CQRS_LOG_FORMAT",
        help="Log lines for a terminal (console) or for collectors (json); auto: console on a "
        "terminal.",
    ),
]
LogLevel = Annotated[
    Literal["debug", "info", "warning", "error"],
    typer.Option(
        "--log-level",
        envvar="CQRS_LOG_LEVEL",
        case_sensitive=False,
        help="The lowest level logged.",
    ),
]
Json = Annotated[bool, typer.Option("--json", help='Print JSON (errors too, as {"error": ...}).')]
ShutdownTimeout = Annotated[
    float,
    typer.Option(
        "--shutdown-timeout",
        envvar="CQRS_SHUTDOWN_TIMEOUT",
        help="Seconds to drain after SIGTERM/Ctrl-C (finish in-flight work, close) before "
        "giving up.",
    ),
]
MetricsPort = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        envvar="CQRS_METRICS_PORT",
        help="Serve /metrics, /healthz and /readyz on this port (off when unset).",
    ),
]
LOOPBACK = "127.0.0.1"
MetricsHost = Annotated[
    str,
    typer.Option(
        "--metrics-host",
        envvar="CQRS_METRICS_HOST",
        help="Interface the metrics endpoints listen on (0.0.0.0: all, as in a container "
        "scraped from outside).",
    ),
]
StartupTimeout = Annotated[
    float,
    typer.Option(
        "--startup-timeout",
        envvar="CQRS_STARTUP_TIMEOUT",
        help="Seconds to wait at start for JetStream (a cluster electing leaders) before "
        "giving up.",
    ),
]
ScopedReads = Annotated[
    bool,
    typer.Option(
        "--scoped-reads/--no-scoped-reads",
        envvar="CQRS_SCOPED_READS",
        help="Read aggregate histories through consumers scoped to the aggregates served, so "
        "the NATS user needs no stream-wide direct get (the generated worker users have none). "
        "Without it, a worker switches to them when the server first refuses the direct get.",
    ),
]
ReadyFile = Annotated[
    Path | None,
    typer.Option(
        "--ready-file",
        envvar="CQRS_READY_FILE",
        help="File listing this process's services while they serve (read by `cqrs health`).",
    ),
]


@dataclass(frozen=True)
class Context:
    """The shared options of one CLI invocation, resolved."""

    connect: ConnectOptions
    app_choice: AppChoice
    stream: str
    as_json: bool

    @property
    def app_spec(self) -> str:
        return self.app_choice.spec

    def app(self) -> App:
        return self.app_choice.load()

    @classmethod
    def of(cls, typer_ctx: typer.Context, name: str, *, app_spec: str | None = None) -> Context:
        """The context a command's shared options make (read from typer's context); also sets
        up logging (``--log-format``/``--log-level``, or warnings on the console)."""
        params = typer_ctx.params
        fmt = cast(LogFormat, params.get("log_format", "console"))
        configure_logging(fmt, str(params.get("log_level", "warning")))
        state_dir = params.get("state_dir", STATE_DIR)
        choice = (
            AppChoice(app_spec, "the command")
            if app_spec is not None
            else apps.choose(
                typer_ctx, state_dir, dev_server=apps.talks_to_dev_server(params.get("nats_url"))
            )
        )
        return cls(
            ConnectOptions(
                url=params.get("nats_url"),
                creds=params.get("creds"),
                user=params.get("user"),
                password=params.get("password"),
                tls_ca=params.get("tls_ca"),
                tls_cert=params.get("tls_cert"),
                tls_key=params.get("tls_key"),
                name=name,
                state_dir=state_dir,
                connect_timeout=params.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
                max_reconnects=params.get("max_reconnects", DEFAULT_MAX_RECONNECTS),
            ),
            choice,
            params.get("stream", "EVENTS"),
            bool(params.get("as_json", False)),
        )


def quiet_logging() -> None:
    """Warnings on the console: for commands without logging options."""
    configure_logging("console", "warning")


def run(
    fn: Callable[[], Awaitable[T]],
    *,
    as_json: bool = False,
    hint: Callable[[CqrsError], str | None] | None = None,
) -> T:
    """Run an async command. A failure becomes one line on stderr (and ``{"error": ...}`` on
    stdout with ``as_json``) and the exit code of its class (see :mod:`runtime.cli.exits`)."""
    try:
        return anyio.run(fn)
    except KeyboardInterrupt:
        raise typer.Exit(exits.INTERRUPTED) from None
    except typer.Exit:
        raise
    except Exception as exc:
        bare = [e for e in exits.leaves(exc) if isinstance(e, typer.Exit)]
        if bare:
            raise bare[0] from None
        error = exits.as_cqrs_error(exc)
        raise typer.Exit(
            exits.report(error, as_json=as_json, hint=hint(error) if hint else None)
        ) from None


def parse_json_arg(text: str) -> Any:
    from ..wire import codec

    if text == "-":
        text = sys.stdin.read()
    return codec.loads_object(text.encode())


def names(value: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given)."""
    return [n.strip() for n in value.split(",") if n.strip()] if value else None
