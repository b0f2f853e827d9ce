"""`cqrs bench projections` at toy sizes, and how it waits for the services it measures."""

from __future__ import annotations

import anyio
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from runtime import Timeout
from runtime.bench.common import wait_for_responders
from runtime.bench.projections import ProjectionBenchConfig, bench_projections
from runtime.transport.embedded import EmbeddedServer


async def test_the_projection_benchmark_runs_and_reports_its_ratios() -> None:
    """A tiny run catches up, snapshots and answers queries on both sides, and deploys a
    version 2 beside version 1 with every query answered, without errors."""
    config = ProjectionBenchConfig(events=1_000, rounds=1, rows=1_000, queries=500, in_flight=8)
    result = await bench_projections(config, lambda line: None)
    assert result["catchup_ratio"] > 0
    assert result["query_ratio"] > 0
    switch = result["rebuild_beside_live"]
    assert switch["ratio"] > 0 and switch["availability"] == 1.0, switch
    assert set(switch["versions"]) == {"1", "2"}


async def test_the_projection_benchmark_runs_only_the_parts_asked_for() -> None:
    """With only the snapshot part, it writes and restores a model and reports the peak memory
    rise of each, and measures no catch-up, queries or switch; nor does it prefill the stream
    they read (the restore is timed on a server holding only the snapshot)."""
    config = ProjectionBenchConfig(events=1_000, rows=2_000, parts=("snapshot",))
    result = await bench_projections(config, lambda line: None)
    snapshot = result["snapshot"]
    assert snapshot["rows"] == 2_000 and snapshot["restore_seconds"] > 0
    assert snapshot["restore_peak_rss_rise_mb"] is not None
    assert result["catchup"]["runtime"]["count"] == 0 and result["queries"]["runtime"]["count"] == 0
    assert result["rebuild_beside_live"] is None
    assert result["events"] == 0


async def test_waiting_for_a_service_on_another_connection(
    nc: NATS, nats_server: EmbeddedServer
) -> None:
    """The wait returns once a responder on another connection answers, and gives up with
    ``Timeout`` when none ever does."""
    with pytest.raises(Timeout):
        await wait_for_responders(nc, "svc.nobody", b"", timeout=0.3)
    other = await nats.connect(nats_server.url)
    try:

        async def answer(msg: Msg) -> None:
            await msg.respond(b"ok")

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_responders, nc, "svc.late", b"")
            await other.subscribe("svc.late", cb=answer)
    finally:
        await other.close()
