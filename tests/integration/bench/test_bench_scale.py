"""`cqrs bench commands --workers N --decide-cpu-us US` at toy sizes, so the scale-out run keeps
working on the CPU-bound bench aggregate and reports the run's ownership work."""

from __future__ import annotations

from runtime.bench.scale import OVERHEAD, ScaleBenchConfig, bench_scale


async def test_workers_share_a_cpu_bound_aggregate_and_report_their_overhead() -> None:
    """Both sides answer every command of the busy aggregate; each reports its lease work."""
    result = await bench_scale(
        ScaleBenchConfig(
            workers=2, commands=200, in_flight=16, aggregates=40, rounds=1, decide_cpu_us=200
        )
    )
    assert result["decide_cpu_us"] == 200
    for side in ("one_worker", "n_workers"):
        assert result[side]["count"] == 200 and result[side]["errors"] == 0
        overhead = result["overhead"][side]
        assert set(overhead) == {*OVERHEAD, "worker_cpu_ms"}
        assert overhead["rounds"] > 0 and overhead["acquired"] > 0
        # Each command burned 200 µs in a worker: the option reached the worker processes.
        assert result[side]["worker_cpu_us_per_command"] >= 200
    assert result["throughput_ratio"] > 0
