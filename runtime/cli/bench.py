"""``cqrs bench ...``: benchmarks of the runtime against hand-written nats-py baselines."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from ..wire import codec
from .common import Json, NatsUrl, console, quiet_logging, run

InFlightOption = typer.Option(64, "--in-flight", help="Concurrent requests.")
RoundsOption = typer.Option(4, "--rounds", help="Alternating timed rounds per side.")
MetricsFlag = typer.Option(
    False,
    "--metrics/--no-metrics",
    help="Also time a side with Prometheus metrics on (tracing: API only), against the runtime.",
)

bench_app = typer.Typer(
    name="bench", help="Measure the runtime against nats-py baselines.", no_args_is_help=True
)


def print_comparison(result: dict[str, Any], ratio_key: str, *, as_json: bool) -> None:
    """Print a baseline/runtime comparison as a table, or the whole result as one JSON object."""
    if as_json:
        print(codec.dumps(result).decode())
        return
    table = Table(title=f"cqrs bench {result['benchmark']}")
    for column in ("side", "count", "seconds", "per second", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="right")
    for side in ("baseline", "runtime", "metrics"):
        if side not in result:
            continue
        s = result[side]
        table.add_row(
            side,
            str(s["count"]),
            f"{s['seconds']:.2f}",
            f"{s['per_second']:.0f}",
            f"{s['p50_ms']:.2f}",
            f"{s['p99_ms']:.2f}",
            str(s["errors"]),
        )
    console.print(table)
    console.print(f"{ratio_key} (runtime / baseline): [bold]{result[ratio_key]:.2f}[/bold]")
    if "metrics_ratio" in result:
        ratio = result["metrics_ratio"]
        console.print(f"metrics_ratio (metrics / runtime): [bold]{ratio:.3f}[/bold]")
    if "metrics_cpu_ratio" in result:
        cpu = result["metrics_cpu_ratio"]
        console.print(f"metrics_cpu_ratio (runtime / metrics CPU per op): [bold]{cpu:.3f}[/bold]")


@bench_app.command("commands")
def commands(
    count: int = typer.Option(20_000, "--commands", help="Timed commands per side."),
    in_flight: int = InFlightOption,
    aggregates: int = typer.Option(10_000, "--aggregates", help="Distinct aggregate ids."),
    rounds: int = RoundsOption,
    with_metrics: bool = MetricsFlag,
    workers: int = typer.Option(
        0,
        "--workers",
        min=0,
        help="Compare N `cqrs worker` processes with one (0: one in-process worker against "
        "the nats-py baseline).",
    ),
    decide_cpu_us: int = typer.Option(
        0,
        "--decide-cpu-us",
        min=0,
        help="With --workers: serve a bench-only aggregate whose decide burns this many "
        "microseconds of CPU per command (a CPU-bound domain, where scale-out can show).",
    ),
    nats_url: NatsUrl = None,
    as_json: Json = False,
) -> None:
    """Commands/s and latency of a worker vs a hand-written nats-py responder (same I/O), or
    of N worker processes vs one (--workers)."""
    quiet_logging()
    if decide_cpu_us and not workers:
        raise typer.BadParameter("needs --workers", param_hint="--decide-cpu-us")
    if workers:
        from ..bench.scale import ScaleBenchConfig, bench_scale

        scale = ScaleBenchConfig(
            workers, count, in_flight, aggregates, nats_url, decide_cpu_us=decide_cpu_us
        )
        print_scale(run(lambda: bench_scale(scale), as_json=as_json), as_json=as_json)
        return
    from ..bench.commands import CommandBenchConfig, bench_commands

    config = CommandBenchConfig(count, in_flight, aggregates, nats_url, rounds, with_metrics)
    result = run(lambda: bench_commands(config), as_json=as_json)
    print_comparison(result, "throughput_ratio", as_json=as_json)


def print_scale(result: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(codec.dumps(result).decode())
        return
    title = f"cqrs bench commands --workers {result['workers']}"
    if result["decide_cpu_us"]:
        title += f" --decide-cpu-us {result['decide_cpu_us']}"
    table = Table(title=title)
    columns = ("workers", "count", "per second", "p50 ms", "p99 ms", "errors", "conflicts")
    for column in (*columns, "worker CPU µs/cmd"):
        table.add_column(column, justify="right")
    for label, key in (("1", "one_worker"), (str(result["workers"]), "n_workers")):
        s = result[key]
        table.add_row(
            label,
            str(s["count"]),
            f"{s['per_second']:.0f}",
            f"{s['p50_ms']:.2f}",
            f"{s['p99_ms']:.2f}",
            str(s["errors"]),
            str(s["conflicts"]),
            f"{s['worker_cpu_us_per_command']:.0f}",
        )
    console.print(table)
    console.print(
        f"throughput_ratio ({result['workers']} workers / 1): "
        f"[bold]{result['throughput_ratio']:.2f}[/bold], "
        f"conflicts {100 * result['conflict_rate']:.3f} % of commands"
    )
    for label, key in (("1 worker", "one_worker"), (f"{result['workers']} workers", "n_workers")):
        counts = result["overhead"][key]
        console.print(f"{label}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@bench_app.command("queries")
def queries(
    count: int = typer.Option(20_000, "--queries", help="Timed queries per side."),
    rows: int = typer.Option(10_000, "--rows", help="Rows of the read model."),
    in_flight: int = InFlightOption,
    rounds: int = RoundsOption,
    with_metrics: bool = MetricsFlag,
    nats_url: NatsUrl = None,
    as_json: Json = False,
) -> None:
    """Queries/s and latency of a projection replica vs a hand-written nats-py responder."""
    from ..bench.queries import QueryBenchConfig, bench_queries

    quiet_logging()
    config = QueryBenchConfig(rows, count, in_flight, rounds, with_metrics, nats_url)
    result = run(lambda: bench_queries(config), as_json=as_json)
    print_comparison(result, "query_ratio", as_json=as_json)


@bench_app.command("load")
def load(
    messages: int = typer.Option(1_000_000, "--messages", help="Commits in the stream."),
    aggregates: int = typer.Option(10_000, "--aggregates", help="Aggregates they belong to."),
    events: int = typer.Option(10_000, "--events", help="Events of the measured aggregate."),
    tail: int = typer.Option(50, "--tail", help="Its events after the snapshot."),
    loads: int = typer.Option(50, "--loads", help="Timed cold loads from the snapshot."),
    full_loads: int = typer.Option(10, "--full-loads", help="Timed cold loads by full replay."),
    live: int = typer.Option(100_000, "--live", help="Idle orders for the memory part (0: skip)."),
    scoped_reads: bool = typer.Option(
        False, "--scoped-reads", help="Also time each load through scoped consumers."
    ),
    as_json: Json = False,
) -> None:
    """Cold load of an old, busy aggregate with and without a snapshot; memory per idle one.

    Runs on a throw-away embedded server (the stream it fills can never be purged).
    """
    from ..bench.load import LoadBenchConfig, bench_load

    quiet_logging()
    config = LoadBenchConfig(
        messages, aggregates, events, tail, loads, full_loads, live, scoped_reads
    )
    try:
        config.check()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    say = (lambda _: None) if as_json else (lambda text: console.print(f"[dim]{text}[/dim]"))
    result = run(lambda: bench_load(config, say), as_json=as_json)
    if as_json:
        print(codec.dumps(result).decode())
        return
    table = Table(title="cqrs bench load")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int | float) else str(value))
    console.print(table)


@bench_app.command("projections")
def projections(
    events: int = typer.Option(
        200_000,
        "--events",
        help="Commits in the prefilled stream (read by the catch-up, queries and switch parts).",
    ),
    rounds: int = typer.Option(2, "--rounds", help="Alternating rounds per side."),
    rows: int = typer.Option(1_000_000, "--rows", help="Rows of the snapshotted read model."),
    queries: int = typer.Option(20_000, "--queries", help="Timed queries per side."),
    in_flight: int = typer.Option(64, "--in-flight", help="Concurrent queries."),
    parts: str = typer.Option(
        "catchup,snapshot,queries,switch",
        "--parts",
        help="The measurements to run, comma-separated (all by default).",
    ),
    nats_url: NatsUrl = None,
    as_json: Json = False,
) -> None:
    """Catch-up rate, snapshot write/restore and queries/s of a projection vs nats-py baselines."""
    from ..bench.projections import ProjectionBenchConfig, bench_projections, print_result

    quiet_logging()
    chosen = tuple(p.strip() for p in parts.split(",") if p.strip())
    config = ProjectionBenchConfig(events, rounds, rows, queries, in_flight, nats_url, chosen)
    try:
        config.check()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    say = (lambda _: None) if as_json else (lambda text: console.print(f"[dim]{text}[/dim]"))
    result = run(lambda: bench_projections(config, say), as_json=as_json)
    if as_json:
        print(codec.dumps(result).decode())
    else:
        print_result(result, console)


@bench_app.command("processes")
def processes(
    events: int = typer.Option(20_000, "--events", help="Commits in the prefilled stream."),
    rounds: int = typer.Option(2, "--rounds", help="Alternating rounds per side."),
    timers: int = typer.Option(100, "--timers", help="Timers whose delay is measured."),
    nats_url: NatsUrl = None,
    as_json: Json = False,
) -> None:
    """Events/s of a process manager reacting vs a projection catching up; timer delays."""
    from ..bench.processes import ProcessBenchConfig, bench_processes

    quiet_logging()
    config = ProcessBenchConfig(events, rounds, timers, nats_url)
    try:
        config.check()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    say = (lambda _: None) if as_json else (lambda text: console.print(f"[dim]{text}[/dim]"))
    result = run(lambda: bench_processes(config, say), as_json=as_json)
    if as_json:
        print(codec.dumps(result).decode())
        return
    table = Table(title=f"cqrs bench processes: {result['events']:,} commits")
    for column in ("measure", "value"):
        table.add_column(column, justify="right")
    table.add_row("projection catch-up events/s", f"{result['projection_events_per_second']:,.0f}")
    table.add_row("process manager events/s", f"{result['process_manager_events_per_second']:,.0f}")
    table.add_row("process manager / projection", f"{result['reacting_ratio']:.2f}")
    table.add_row("state-only reactions events/s", f"{result['state_only_events_per_second']:,.0f}")
    table.add_row("state-only reactions / projection", f"{result['state_only_ratio']:.2f}")
    for count, rate in result["replicas_events_per_second"].items():
        table.add_row(f"{count} `cqrs processes` replicas events/s", f"{rate:,.0f}")
    for side in ("fired", "reacted"):
        d = result["timers"][side]
        table.add_row(
            f"timer delay when {side} (p50 / p99 / max ms, n={d['count']})",
            f"{d['p50_ms']} / {d['p99_ms']} / {d['max_ms']}",
        )
    console.print(table)


@bench_app.command("gateway")
def gateway(
    requests: int = typer.Option(8_000, "--requests", help="Timed requests per side and kind."),
    in_flight: int = typer.Option(64, "--in-flight", help="Concurrent HTTP requests."),
    aggregates: int = typer.Option(1_000, "--aggregates", help="Distinct aggregate ids."),
    rounds: int = typer.Option(8, "--rounds", help="Alternating rounds per side."),
    nats_url: NatsUrl = None,
    as_json: Json = False,
) -> None:
    """Commands and queries/s through the HTTP gateway vs a hand-written ASGI forwarder."""
    from ..bench.gateway import GatewayBenchConfig, bench_gateway

    quiet_logging()
    config = GatewayBenchConfig(requests, in_flight, aggregates, rounds, nats_url)
    result = run(lambda: bench_gateway(config), as_json=as_json)
    if as_json:
        print(codec.dumps(result).decode())
        return
    for kind in ("commands", "queries"):
        print_comparison(result[kind], "throughput_ratio", as_json=False)
        part = result[kind]
        console.print(f"per round: {', '.join(f'{r:.2f}' for r in part['round_ratios'])}")
        base_cpu, gateway_cpu = part["baseline"]["server_cpu_us"], part["runtime"]["server_cpu_us"]
        console.print(
            f"server CPU per request: baseline {base_cpu} µs, gateway {gateway_cpu} µs "
            f"(cpu_ratio [bold]{part['cpu_ratio']:.2f}[/bold])"
        )
