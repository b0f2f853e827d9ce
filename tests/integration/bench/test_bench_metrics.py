"""`cqrs bench commands|queries --metrics` at toy sizes, so the cost measurement keeps working."""

from __future__ import annotations

from runtime.bench.commands import CommandBenchConfig, bench_commands
from runtime.bench.queries import QueryBenchConfig, bench_queries
from runtime.observability import metrics


async def test_the_command_benchmark_times_a_side_with_metrics() -> None:
    """Every side answers every command, and the metrics side is reported against the runtime."""
    result = await bench_commands(
        CommandBenchConfig(commands=300, in_flight=16, aggregates=50, rounds=2, metrics=True)
    )
    for side in ("baseline", "runtime", "metrics"):
        assert result[side]["count"] == 300 and result[side]["errors"] == 0
    assert result["metrics_ratio"] > 0 and result["metrics_cpu_ratio"] > 0
    assert metrics.current() is None  # on only while the metrics side was built


async def test_the_query_benchmark_times_a_side_with_metrics() -> None:
    """Every side answers every query from the same rows; the runtime's CPU per query is
    compared with the baseline's too."""
    result = await bench_queries(
        QueryBenchConfig(rows=200, queries=400, in_flight=16, rounds=2, metrics=True)
    )
    for side in ("baseline", "runtime", "metrics"):
        assert result[side]["count"] == 400 and result[side]["errors"] == 0
    assert result["query_ratio"] > 0 and result["metrics_cpu_ratio"] > 0
    assert result["query_cpu_ratio"] > 0
