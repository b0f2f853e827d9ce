"""What every CLI command shares: connection and app options, running async code, errors."""

from __future__ import annotations

import functools
import inspect
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import typer
from rich.console import Console
from rich.markup import escape

from ..domain.app import DEFAULT_APP, App, load_app
from ..errors import CqrsError
from ..ops.logs import LogFormat, configure_logging
from ..transport.connection import ConnectOptions

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)

NatsOption = typer.Option(
    None, "--nats", envvar="NATS_URL", help="NATS URL; without it the embedded server is used."
)
AppOption = typer.Option(
    DEFAULT_APP, "--app", envvar="CQRS_APP", help="module:attribute list of definitions."
)
CredsOption = typer.Option(None, "--creds", envvar="NATS_CREDS", help="NATS credentials file.")
UserOption = typer.Option(None, "--user", envvar="NATS_USER", help="NATS user name.")
PasswordOption = typer.Option(None, "--password", envvar="NATS_PASSWORD", help="NATS password.")
TlsCaOption = typer.Option(None, "--tls-ca", envvar="NATS_TLS_CA", help="CA file for TLS.")
TlsCertOption = typer.Option(
    None, "--tls-cert", envvar="NATS_TLS_CERT", help="Client certificate (mutual TLS)."
)
TlsKeyOption = typer.Option(None, "--tls-key", envvar="NATS_TLS_KEY", help="Client key file.")
StreamOption = typer.Option("EVENTS", "--stream", envvar="CQRS_STREAM", help="Event stream name.")
StateDirOption = typer.Option(
    Path(".cqrs"), "--state-dir", envvar="CQRS_STATE_DIR", help="Embedded server's directory."
)
LogFormatOption = typer.Option(
    "auto", "--log-format", envvar="CQRS_LOG_FORMAT", help="auto, console or json."
)
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")
ShutdownTimeoutOption = typer.Option(
    30.0,
    "--shutdown-timeout",
    envvar="CQRS_SHUTDOWN_TIMEOUT",
    help="Seconds to drain after SIGTERM/Ctrl-C (finish in-flight work, close) before giving up.",
)
ReadyFileOption = typer.Option(
    None,
    "--ready-file",
    envvar="CQRS_READY_FILE",
    help="File listing this process's services while they serve (read by `cqrs health`).",
)


@dataclass(frozen=True)
class Context:
    """The options of one CLI invocation, resolved."""

    connect: ConnectOptions
    app_spec: str
    stream: str

    def app(self) -> App:
        return load_app(self.app_spec)


def make_context(
    nats_url: str | None,
    app: str,
    *,
    creds: str | None = None,
    user: str | None = None,
    password: str | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    stream: str = "EVENTS",
    state_dir: Path = Path(".cqrs"),
    log_format: str = "auto",
    log_level: str = "info",
    name: str = "cqrs",
) -> Context:
    if log_format not in ("auto", "console", "json"):
        raise typer.BadParameter("--log-format must be auto, console or json")
    fmt: LogFormat = log_format  # type: ignore[assignment]
    configure_logging(fmt, log_level)
    return Context(
        ConnectOptions(
            url=nats_url,
            creds=creds,
            user=user,
            password=password,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            name=name,
            state_dir=state_dir,
        ),
        app,
        stream,
    )


# The shared options of the commands: (parameter name, type, typer option), in the order --help
# lists them. The first groups take the place of a command's ``ctx`` parameter; the state
# directory and logging options come after all of the command's own.
_NATS: list[tuple[str, Any, Any]] = [("nats_url", str | None, NatsOption)]
_APP: list[tuple[str, Any, Any]] = [("app_spec", str, AppOption)]
_AUTH: list[tuple[str, Any, Any]] = [
    ("creds", str | None, CredsOption),
    ("user", str | None, UserOption),
    ("password", str | None, PasswordOption),
    ("tls_ca", str | None, TlsCaOption),
]
_CLIENT_CERT: list[tuple[str, Any, Any]] = [
    ("tls_cert", str | None, TlsCertOption),
    ("tls_key", str | None, TlsKeyOption),
]
_STREAM: list[tuple[str, Any, Any]] = [("stream", str, StreamOption)]
_STATE_DIR: list[tuple[str, Any, Any]] = [("state_dir", Path, StateDirOption)]


def with_context(
    name: str,
    *,
    nats: bool = True,
    app: bool | str = True,
    auth: bool = True,
    client_cert: bool = False,
    stream: bool = False,
    state_dir: bool = True,
    log_level: str | None = None,
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Give a command the shared options it takes, and pass it the :class:`Context` they make.

    The command declares a ``ctx: Context`` parameter (keyword-only if own options follow it,
    since the shared ones are keyword-only); in its place typer sees the connection
    options chosen here (``--nats``, ``--app`` or a fixed app spec, ``--creds`` ... ``--tls-ca``,
    ``--tls-cert``/``--tls-key``, ``--stream``), and after the command's own options
    ``--state-dir`` and, when ``log_level`` gives the default level, ``--log-format`` and
    ``--log-level``. Without them the command logs warnings to the console.
    """
    head = [
        *(_NATS if nats else []),
        *(_APP if app is True else []),
        *(_AUTH if auth else []),
        *(_CLIENT_CERT if client_cert else []),
        *(_STREAM if stream else []),
    ]
    tail = _STATE_DIR if state_dir else []
    if log_level is not None:
        tail = [
            *tail,
            ("log_format", str, LogFormatOption),
            ("log_level", str, typer.Option(log_level, "--log-level", envvar="CQRS_LOG_LEVEL")),
        ]
    shared = [*head, *tail]

    def decorate(command: Callable[..., T]) -> Callable[..., T]:
        signature = inspect.signature(command)
        own = list(signature.parameters.values())
        at = [p.name for p in own].index("ctx")

        def option(param: str, kind: Any, default: Any) -> inspect.Parameter:
            return inspect.Parameter(
                param, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind
            )

        parameters = [
            *own[:at],
            *(option(*o) for o in head),
            *own[at + 1 :],
            *(option(*o) for o in tail),
        ]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            values = {param: kwargs.pop(param) for param, _, _ in shared}
            ctx = make_context(
                values.pop("nats_url", None),
                app if isinstance(app, str) else values.pop("app_spec", ""),
                log_format=values.pop("log_format", "console"),
                log_level=values.pop("log_level", "warning"),
                name=name,
                **values,
            )
            return command(*args, ctx=ctx, **kwargs)

        # typer reads the parameters from the signature and their types from the annotations.
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {
            **{k: v for k, v in command.__annotations__.items() if k != "ctx"},
            **{param: kind for param, kind, _ in shared},
        }
        return wrapper

    return decorate


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async command; a :class:`CqrsError` becomes a message and exit code 1."""
    try:
        return anyio.run(fn)
    except CqrsError as exc:
        # The message is text, not markup ("$.lines[0]", "cqrs-runtime[embedded]"), on one line.
        err_console.print(f"[red]error[/red] ({exc.code}): {escape(exc.message)}", soft_wrap=True)
        if exc.details:
            err_console.print(exc.details)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def wait_for_shutdown() -> int:
    """Block until SIGINT or SIGTERM; return the signal number."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            return int(signum)
    return 0


def parse_json_arg(text: str) -> Any:
    from ..wire import codec

    if text == "-":
        text = sys.stdin.read()
    return codec.loads_object(text.encode())
