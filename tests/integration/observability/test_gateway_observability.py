"""``cqrs gateway`` with ``--metrics-port``: HTTP requests counted by route, target and outcome,
and an HTTP ``traceparent`` carried through NATS onto the commit."""

from __future__ import annotations

from pathlib import Path

import httpx
import nats

from runtime.transport.embedded import EmbeddedServer
from tests.ports import free_port

from ..procs import TEST_APP, WorkerProcess, wait_until, workers
from .support import scrape, value

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_gateway_counts_requests_and_passes_the_trace_on(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Each HTTP command is counted once under its target and outcome, and the traceparent it
    carried is stored on its commit."""
    await nats_server.wait_ready()
    http_port, metrics_port = free_port(), free_port()
    worker = WorkerProcess(tmp_path / "worker", nats_server.url, user=None, app=TEST_APP)
    gateway = WorkerProcess(
        tmp_path / "gateway",
        nats_server.url,
        user=None,
        command="gateway",
        app=TEST_APP,
        extra=["--port", str(http_port), "--metrics-port", str(metrics_port)],
    )
    with workers(worker, gateway):
        await worker.wait_ready()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=15) as http:

            async def ready() -> bool:
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, 60, "the gateway's /readyz", period=0.2)
            added = await http.post(
                "/commands/counter/g-1/add",
                json={"amount": 2},
                headers={"traceparent": TRACEPARENT, "tracestate": "vendor=1"},
            )
            assert added.status_code == 200, added.text
            rejected = await http.post("/commands/counter/g-1/add", json={"amount": -1})
            unknown = await http.post("/commands/counter/g-1/explode", json={})
            assert (rejected.status_code, unknown.status_code) == (409, 404)

        nc = await nats.connect(nats_server.url)
        try:
            stored = await nc.jetstream().get_msg("EVENTS", int(added.headers["cqrs-seq"]))
        finally:
            await nc.close()
        assert stored.headers is not None
        assert stored.headers["traceparent"] == TRACEPARENT
        assert stored.headers["tracestate"] == "vendor=1"

        series = await scrape(metrics_port)
        counted = "cqrs_http_requests_total"
        command = {"route": "command"}
        assert value(series, counted, **command, target="counter.add", outcome="ok") == 1
        assert value(series, counted, **command, target="counter.add", outcome="rejected") == 1
        assert value(series, counted, **command, target="_unknown", outcome="unknown_command") == 1
        timed = "cqrs_http_request_duration_seconds_count"
        assert value(series, timed, **command, target="counter.add") == 2
