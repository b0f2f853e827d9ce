"""`cqrs bench load` at toy sizes, so the benchmark keeps working between real runs."""

from __future__ import annotations

from runtime.bench.load import LoadBenchConfig, bench_load


async def test_the_load_benchmark_runs_and_reports_its_keys() -> None:
    """A tiny run loads through the snapshot and by full replay and measures idle orders."""
    config = LoadBenchConfig(
        messages=3000, aggregates=30, events=300, tail=10, loads=3, full_loads=2, live=300
    )
    result = await bench_load(config)
    assert result["events"] == 300
    assert 0 < result["load_p50_ms_snapshot"] < result["load_p50_ms_full_replay"]
    assert 0 < result["load_p50_ms_snapshot_current"] < result["load_p50_ms_full_replay"]
    assert result["memory_live_aggregates"] == 300
    assert result["memory_runtime_bytes_per_aggregate"] > 0
