"""CLI commands for running in production: ``cqrs deploy nats-config`` and ``cqrs health``."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated

import typer

from ..domain.app import DEFAULT_APP
from ..errors import ConfigurationError, NoResponders
from ..ops.deployment import DeployOptions, render
from ..ops.permissions import UserPlan, inbox_prefix
from ..transport.connection import DEFAULT_CONNECT_TIMEOUT, STATE_DIR, connect
from ..transport.readiness import ping, ready_services
from ..wire.partitions import DEFAULT_PARTITIONS, MAX_PARTITIONS
from . import apps
from .common import (
    AppSpec,
    ConnectTimeout,
    Context,
    Creds,
    Json,
    NatsUrl,
    Password,
    ReadyFile,
    Stream,
    TlsCa,
    TlsCert,
    TlsKey,
    User,
    console,
    err_console,
    quiet_logging,
    run,
)

deploy_app = typer.Typer(
    name="deploy", help="Generate production deployment files.", no_args_is_help=True
)


def _served(values: list[str] | None, default: str) -> dict[str, tuple[str, ...]]:
    """``name`` or ``name=a,b`` options as {user: names it serves} (empty: all)."""
    out: dict[str, tuple[str, ...]] = {}
    for value in values or [default]:
        name, _, serves = value.partition("=")
        out[name.strip()] = tuple(s.strip() for s in serves.split(",") if s.strip())
    return out


@deploy_app.command("nats-config")
def nats_config(
    typer_ctx: typer.Context,
    out: Path = typer.Option(Path("deploy"), "--out", help="Directory to write into."),
    app_spec: AppSpec = DEFAULT_APP,
    stream: Stream = "EVENTS",
    client: list[str] | None = typer.Option(
        None,
        "--client",
        help="A client user (repeat for several; default: client and gateway).",
    ),
    worker: list[str] | None = typer.Option(
        None, "--worker", help="A worker user, as NAME or NAME=agg1,agg2 (default: worker)."
    ),
    projector: list[str] | None = typer.Option(
        None, "--projector", help="A projector user, as NAME or NAME=p1,p2 (default: projector)."
    ),
    processes: list[str] | None = typer.Option(
        None,
        "--processes",
        help="A processes user, as NAME or NAME=pm1,pm2 (default: processes).",
    ),
    admin: list[str] | None = typer.Option(None, "--admin", help="An admin user."),
    mtls: bool = typer.Option(False, "--mtls", help="Clients must present certificates."),
    tls_dir: str = typer.Option(DeployOptions("").tls_dir, "--tls-dir"),
    store_dir: str = typer.Option(DeployOptions("").store_dir, "--store-dir"),
    max_file_store: str = typer.Option(DeployOptions("").max_file_store, "--max-file-store"),
    max_memory_store: str = typer.Option(DeployOptions("").max_memory_store, "--max-memory-store"),
    snapshot_bucket: str | None = typer.Option(
        None, "--snapshot-bucket", help="Aggregate snapshot KV bucket, if not the default."
    ),
    projection_bucket: str | None = typer.Option(
        None, "--projection-bucket", help="Projection snapshot bucket, if not the default."
    ),
    partitions: int = typer.Option(
        DEFAULT_PARTITIONS,
        "--partitions",
        min=1,
        max=MAX_PARTITIONS,
        help="Command partitions in the subject mapping (workers need the same --partitions).",
    ),
    check: bool = typer.Option(
        False, "--check", help="Write nothing; exit 78 if the files on disk differ."
    ),
) -> None:
    """Write the nats-server configs (accounts and per-role permissions from the app's
    aggregates and projections, single node, 3-node cluster, Kubernetes ConfigMap)."""
    choice = apps.choose(typer_ctx, STATE_DIR, dev_server=False)
    options = DeployOptions(
        app_spec=choice.spec,
        stream=stream,
        plan=UserPlan(
            clients=tuple(client) if client else UserPlan().clients,
            workers=_served(worker, "worker"),
            projectors=_served(projector, "projector"),
            processes=_served(processes, "processes"),
            admins=tuple(admin or ("admin",)),
        ),
        mutual_tls=mtls,
        tls_dir=tls_dir,
        store_dir=store_dir,
        max_file_store=max_file_store,
        max_memory_store=max_memory_store,
        aggregate_snapshot_bucket=snapshot_bucket,
        projection_snapshot_bucket=projection_bucket,
        partitions=partitions,
    )

    async def main() -> None:
        files = render(choice.load(), options)
        stale = []
        for relative, text in files.items():
            path = out / relative
            current = path.read_text() if path.is_file() else None
            if current == text:
                continue
            stale.append(relative)
            if check:
                diff = difflib.unified_diff(
                    (current or "").splitlines(),
                    text.splitlines(),
                    str(path),
                    "generated",
                    lineterm="",
                    n=1,
                )
                err_console.print("\n".join(list(diff)[:40]), markup=False, highlight=False)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            console.print(f"wrote {path}")
        if check and stale:
            raise ConfigurationError(
                f"{len(stale)} generated file(s) are out of date: {', '.join(stale)}; "
                f"run: {options.command_line()}"
            )
        if not stale:
            console.print(f"{out}: up to date")
        if not check:
            console.print(inbox_note(options.plan.admins[0]), markup=False, soft_wrap=True)

    run(main)


def inbox_note(user: str) -> str:
    """How other NATS clients get replies as a generated user: responders may answer only
    under the users' own inbox prefixes, and the nats CLI's default ``_INBOX`` is none."""
    return (
        "each user receives replies only under its own inbox prefix _INBOX_<user> (the cqrs "
        "commands use it by themselves); give it to other clients too, e.g. the nats CLI: "
        f"nats --user {user} --inbox-prefix {inbox_prefix(user)} micro ls"
    )


def bench_cluster(
    count: int = typer.Option(20_000, "--commands", help="Timed commands per side and run."),
    in_flight: int = typer.Option(64, "--in-flight", help="Concurrent requests."),
    aggregates: int = typer.Option(10_000, "--aggregates", help="Distinct aggregate ids."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """`bench commands` on a single node and on a 3-node R3 cluster, in one run."""
    from ..bench.cluster import bench_cluster as run_bench
    from ..bench.commands import CommandBenchConfig
    from .bench import print_comparison

    quiet_logging()
    config = CommandBenchConfig(count, in_flight, aggregates)
    say = (lambda _: None) if as_json else (lambda text: console.print(f"[dim]{text}[/dim]"))
    result = run(lambda: run_bench(config, say))
    if as_json:
        print_comparison(result, "", as_json=True)
        return
    for label in ("single", "cluster_r3"):
        console.print(f"[bold]{label}[/bold]")
        print_comparison(result[label], "throughput_ratio", as_json=False)


def register(app: typer.Typer) -> None:
    from .bench import bench_app

    app.add_typer(deploy_app)
    bench_app.command("cluster")(bench_cluster)

    app.command()(health)


def health(
    typer_ctx: typer.Context,
    ready_file: ReadyFile = None,
    service: Annotated[
        list[str] | None,
        typer.Option(
            "--service", help="Also ping any instance of this micro service (repeatable)."
        ),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout")] = 2.0,
    as_json: Json = False,
    nats_url: NatsUrl = None,
    creds: Creds = None,
    user: User = None,
    password: Password = None,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT,
) -> None:
    """Readiness check: ping this process's services (from its ready file) over NATS.

    Exit 0 when every service answers, 69 otherwise (78 when there is nothing to check). Use
    the same environment as the process it checks (NATS_URL, NATS_USER, ... and
    CQRS_READY_FILE).
    """
    ctx = Context.of(typer_ctx, "cqrs-health")

    async def main() -> None:
        services: dict[str, str] = {}
        if ready_file is not None:
            services = ready_services(ready_file)
            if not services:
                raise NoResponders(f"not ready: {ready_file} lists no serving service")
        services.update({name: "" for name in service or []})
        if not services:
            raise ConfigurationError("nothing to check: pass --ready-file or --service")
        async with connect(ctx.connect, embedded=False) as nc:
            problems = await ping(nc, services, timeout=timeout)
        if problems:
            raise NoResponders("not ready: " + "; ".join(problems))
        console.print("ready: " + ", ".join(sorted(services)))

    run(main, as_json=as_json)
