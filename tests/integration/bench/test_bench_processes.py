"""`cqrs bench processes` at toy sizes, so the benchmark keeps working between real runs."""

from __future__ import annotations

from runtime.bench.processes import ProcessBenchConfig, bench_processes


async def test_the_process_benchmark_runs_and_reports_its_keys() -> None:
    """A tiny run times both catch-ups over the whole stream and every timer's delays."""
    result = await bench_processes(ProcessBenchConfig(events=400, rounds=1, timers=5), print)
    assert result["events"] == 400
    assert result["process_manager_events_per_second"] > 0
    assert result["projection_events_per_second"] > 0
    assert result["state_only_events_per_second"] > 0 and len(result["state_only_rounds"]) == 1
    for side in ("fired", "reacted"):
        assert result["timers"][side]["count"] == 5
    assert result["timers"]["reacted"]["min_ms"] >= result["timers"]["fired"]["min_ms"]
