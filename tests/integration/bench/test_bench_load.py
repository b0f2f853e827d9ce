"""`cqrs bench load` at toy sizes, so the benchmark keeps working between real runs."""

from __future__ import annotations

from dataclasses import replace

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


async def test_the_load_benchmark_times_scoped_reads_beside_direct_get() -> None:
    """With scoped reads every kind of load is also timed through scoped consumers (each load
    checks the state it folded), with its ratio to direct get."""
    config = LoadBenchConfig(
        messages=2000, aggregates=20, events=200, tail=10, loads=2, full_loads=2, live=0
    )
    result = await bench_load(replace(config, scoped_reads=True))
    for kind in ("full_replay", "snapshot", "snapshot_current"):
        assert result[f"load_p50_ms_{kind}_scoped"] > 0
        assert result[f"scoped_p50_ratio_{kind}"] > 0
