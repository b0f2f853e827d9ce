"""CLI commands of the read side: projector, query, status, projections rebuild|dead-letters."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ..client import Client
from ..domain.app import DEFAULT_APP
from ..errors import NoResponders, UnknownQuery
from ..log import get_logger
from ..ops.run import run_app
from ..processes.status import collect_processes
from ..read.dead_letters import DeadLetters
from ..read.rebuild import rebuild
from ..read.settings import ProjectorSettings, default_replica
from ..read.status import collect
from ..transport.connection import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RECONNECTS,
    STATE_DIR,
    connect,
)
from ..transport.startup import DEFAULT_STARTUP_TIMEOUT
from ..transport.streams import StreamSettings
from ..wire import codec
from ..wire.naming import check_name
from ..write.worker import WorkerSettings
from . import exits, retire
from .apps import AppChoice
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
    parse_json_arg,
    run,
)
from .serve import Serving, serve
from .status_tables import print_status

log = get_logger("runtime.cli")

projections_app = typer.Typer(
    name="projections", help="Operate on read models: rebuild, dead letters.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.command()(projector)
    app.command()(query)
    app.command()(status)
    retire.register(projections_app)
    app.add_typer(projections_app)


def projector(
    typer_ctx: typer.Context,
    projections: Annotated[
        str | None,
        typer.Option(
            "--projections", envvar="CQRS_PROJECTIONS", help="Comma-separated; default all."
        ),
    ] = None,
    replica: Annotated[
        str | None,
        typer.Option(
            "--replica",
            envvar="CQRS_REPLICA",
            help="Replica id (its consumer's name): unique among live replicas and stable "
            "across restarts. Default: the host name.",
        ),
    ] = None,
    snapshot_every: Annotated[
        int,
        typer.Option(
            "--snapshot-every", envvar="CQRS_SNAPSHOT_EVERY", help="Commits between snapshots."
        ),
    ] = 20_000,
    snapshot_interval: Annotated[
        float,
        typer.Option(
            "--snapshot-interval",
            envvar="CQRS_SNAPSHOT_INTERVAL",
            help="Seconds between snapshots while events arrive.",
        ),
    ] = 30.0,
    stale_timeout: Annotated[
        float,
        typer.Option(
            "--stale-timeout",
            envvar="CQRS_STALE_TIMEOUT",
            help="How long a query waits for its minimum sequence before answering `stale`.",
        ),
    ] = 5.0,
    batch: Annotated[
        int, typer.Option("--batch", envvar="CQRS_BATCH", min=1, help="Fetch batch size.")
    ] = 500,
    catch_up_lag: Annotated[
        int,
        typer.Option(
            "--catch-up-lag",
            envvar="CQRS_CATCH_UP_LAG",
            min=0,
            help="A starting replica serves once at most this many commits are left to it.",
        ),
    ] = 100,
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
    """A projection worker: one replica of each projection, serving its queries once it has
    caught up (and unless a newer version of the projection serves).

    SIGTERM or Ctrl-C stops it gracefully: it stops taking queries, writes a final snapshot of
    each read model and exits 0, within --shutdown-timeout. It refuses to start (exit 75) while
    another live replica holds its replica id.
    """
    ctx = Context.of(typer_ctx, "cqrs-projector")

    def setup() -> Serving:
        settings = ProjectorSettings(
            stream=ctx.stream,
            replica=replica or default_replica(),
            batch=batch,
            catch_up_lag=catch_up_lag,
            snapshot_every=snapshot_every or None,
            snapshot_interval=snapshot_interval or None,
            stale_timeout=stale_timeout,
            replicas=replicas,
            startup_timeout=startup_timeout,
            ready_file=ready_file,
        )
        application = ctx.app()
        selected = application.select_projections(names(projections))
        return lambda nc: run_app(
            nc,
            application,
            aggregates=[],
            projections=selected,
            process_managers=[],
            settings=WorkerSettings(stream=StreamSettings(name=ctx.stream, replicas=replicas)),
            projector_settings=settings,
        )

    serve(
        ctx,
        "projector",
        shutdown_timeout=shutdown_timeout,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        setup=setup,
    )


def query(
    typer_ctx: typer.Context,
    projection: str,
    query_name: Annotated[str, typer.Argument(metavar="QUERY")],
    args: Annotated[
        str, typer.Argument(help="The query's arguments as JSON ('-' = stdin).")
    ] = "{}",
    min_seq: Annotated[
        int, typer.Option("--min-seq", min=0, help="Answer only once this seq is reflected.")
    ] = 0,
    timeout: Annotated[float, typer.Option("--timeout")] = 10.0,
    nats_url: NatsUrl = None,
    app_spec: AppSpec = DEFAULT_APP,
    creds: Creds = None,
    user: User = None,
    password: Password = None,
    tls_ca: TlsCa = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
    state_dir: StateDir = STATE_DIR,
    as_json: Json = False,
) -> None:
    """Ask one query and print its answer (exit codes: see the errors reference)."""
    ctx = Context.of(typer_ctx, "cqrs-query")

    async def main() -> None:
        body = parse_json_arg(args)
        async with connect(ctx.connect, embedded=False) as nc:
            try:
                result = await Client(nc, timeout=timeout).query(
                    projection, query_name, body, min_seq=min_seq or None
                )
            except NoResponders:
                known = _known_projections(ctx.app_choice)
                if known is not None and projection not in known:
                    raise UnknownQuery(
                        f"no projection {projection!r}; the app defines {sorted(known)}",
                        details={"projection": projection},
                    ) from None
                raise
        answer = codec.dumps(
            {"result": result.result, "seq": result.seq, "version": result.version}
        ).decode()
        if as_json:
            print(answer)
        else:
            console.print_json(answer)

    run(main, as_json=as_json)


def _known_projections(choice: AppChoice) -> set[str] | None:
    from ..errors import ConfigurationError

    try:
        return {p.name for p in choice.load().projections}
    except ConfigurationError:
        return None


def status(
    typer_ctx: typer.Context,
    as_json: Json = False,
    projections: Annotated[str | None, typer.Option("--projections", help="Only these.")] = None,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to collect replica replies.")
    ] = 0.5,
    nats_url: NatsUrl = None,
    creds: Creds = None,
    user: User = None,
    password: Password = None,
    tls_ca: TlsCa = None,
    stream: Stream = "EVENTS",
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
    state_dir: StateDir = STATE_DIR,
) -> None:
    """Every projection replica (applied seq, lag, pending, last snapshot, halted state), the
    consumers no live replica uses (orphaned), and every process manager (position, lag,
    pending timers, live replicas)."""
    ctx = Context.of(typer_ctx, "cqrs-status")

    async def main() -> dict[str, Any]:
        async with connect(ctx.connect, embedded=False) as nc:
            report = await collect(
                nc, stream=ctx.stream, projections=names(projections), timeout=wait
            )
            report["process_managers"] = await collect_processes(
                nc, stream=ctx.stream, timeout=wait
            )
            return report

    report = run(main, as_json=as_json)
    if as_json:
        print(codec.dumps(report).decode())
        return
    print_status(report)


@projections_app.command("rebuild")
def rebuild_command(
    typer_ctx: typer.Context,
    name: str,
    replace_snapshots: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Delete the projection's other snapshots afterwards "
            "(stop its replicas first), so replicas start from the rebuilt model.",
        ),
    ] = False,
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
    """Rebuild a read model from the first event, compare it with a live replica's, store it
    (exit 65 when it differs from the live replica's model)."""
    ctx = Context.of(typer_ctx, "cqrs-rebuild")
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("commits"),
        TextColumn("{task.fields[rate]:>8.0f}/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )

    async def main() -> dict[str, Any]:
        projection = ctx.app().projection(name)
        with Progress(*columns, console=console, disable=as_json) as bar:
            task = bar.add_task(f"rebuilding {name}", total=None, rate=0.0)
            started = bar.get_time()

            def progress(done: int, total: int) -> None:
                elapsed = max(bar.get_time() - started, 1e-9)
                bar.update(task, completed=done, total=total, rate=done / elapsed)

            async with connect(ctx.connect, embedded=False) as nc:
                result = await rebuild(
                    nc,
                    projection,
                    ProjectorSettings(stream=ctx.stream),
                    progress=progress,
                    replace_snapshots=replace_snapshots,
                )
        return result.to_dict()

    result = run(main, as_json=as_json)
    if as_json:
        print(codec.dumps(result).decode())
        return
    console.print(
        f"rebuilt [bold]{name}[/bold]: {result['events']} events in {result['commits']} commits "
        f"up to seq {result['applied_seq']} in {result['seconds']:.2f}s"
    )
    if result["equal"] is True:
        console.print(
            f"[green]equal[/green] to the live replica's model (sha256 "
            f"{result['digest'][:16]}…) at seq {result['applied_seq']}"
        )
    elif result["equal"] is False:
        console.print(
            f"[red]differs[/red] from the live replica's model at seq "
            f"{result['applied_seq']}: stop its replicas and rebuild with --replace"
        )
    else:
        console.print("no live replica at the same sequence to compare with")
    if result["snapshot"]:
        console.print(f"stored as snapshot {name}.rebuild at seq {result['snapshot']['seq']}")
    for replaced in result["replaced"]:
        console.print(f"deleted snapshot {replaced}")
    if result["equal"] is False:
        raise typer.Exit(exits.DATA)


@projections_app.command("dead-letters")
def dead_letters_command(
    typer_ctx: typer.Context,
    name: str,
    as_json: Json = False,
    nats_url: NatsUrl = None,
    creds: Creds = None,
    user: User = None,
    password: Password = None,
    tls_ca: TlsCa = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
    state_dir: StateDir = STATE_DIR,
) -> None:
    """List the events a projection skipped (``on_poison="skip"``), with their errors."""
    ctx = Context.of(typer_ctx, "cqrs-dead-letters")

    async def main() -> list[dict[str, Any]]:
        check_name(name, field="projection")
        async with connect(ctx.connect, embedded=False) as nc:
            return [letter.to_wire() for letter in await DeadLetters(nc).list(name)]

    letters = run(main, as_json=as_json)
    if as_json:
        print(codec.dumps(letters).decode())
        return
    if not letters:
        console.print(f"no dead letters for {name}")
        return
    table = Table(title=f"dead letters of {name}")
    for column in ("seq", "index", "subject", "type", "error", "attempts", "at"):
        table.add_column(column)
    for d in letters:
        table.add_row(
            str(d["seq"]),
            str(d["index"]),
            d["subject"],
            d["type"],
            d["error"][:80],
            str(d["attempts"]),
            d["at"],
        )
    console.print(table)
