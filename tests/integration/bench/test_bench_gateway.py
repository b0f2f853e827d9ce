"""`cqrs bench gateway` at toy sizes, so the benchmark keeps working between real runs."""

from __future__ import annotations

from runtime.bench.gateway import GatewayBenchConfig, bench_gateway


async def test_the_gateway_benchmark_drives_both_sides_without_errors() -> None:
    """A tiny run sends commands and queries through the gateway and the baseline, all 200."""
    result = await bench_gateway(GatewayBenchConfig(requests=40, aggregates=10, rounds=1))
    for kind in ("commands", "queries"):
        for side in ("baseline", "runtime"):
            assert result[kind][side]["count"] == 40
            assert result[kind][side]["errors"] == 0
        assert result[kind]["throughput_ratio"] > 0
