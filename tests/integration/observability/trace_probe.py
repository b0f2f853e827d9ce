"""Run by test_tracing.py in a process of its own (OpenTelemetry's tracer provider can be set
once per process): a worker and a projection replica with the SDK's in-memory exporter, one
command and one query carrying a ``traceparent``; prints what was stored and the spans as JSON.

Usage: python -m tests.integration.observability.trace_probe NATS_URL COMMAND_TP QUERY_TP
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import nats
import orjson
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from runtime import ProjectorSettings, run_replica, run_worker
from runtime.observability.tracing import add_trace_ids

from ..support import counter
from .support import fragile


def describe(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
            }
            for link in span.links
        ],
        "attributes": dict(span.attributes or {}),
    }


async def main(url: str, command_tp: str, query_tp: str) -> dict[str, Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    settings = ProjectorSettings(replica="t1", snapshot_every=None, snapshot_interval=None)
    nc = await nats.connect(url)
    try:
        async with run_worker(nc, [counter]), run_replica(nc, fragile, settings) as projector:
            with capture_logs(processors=[add_trace_ids]) as logs:
                reply = await nc.request(
                    "cmd.counter.t-1.add",
                    b'{"amount": -1}',
                    headers={"traceparent": command_tp},
                    timeout=10,
                )
            rejected = orjson.loads(reply.data)["error"]["code"]
            reply = await nc.request(
                "cmd.counter.t-1.add",
                b'{"amount": 2}',
                headers={"traceparent": command_tp, "tracestate": "vendor=1"},
                timeout=10,
            )
            seq = orjson.loads(reply.data)["seq"]
            assert await projector.wait_for(seq, 10)
            await nc.request(
                "query.fragile.total", b'{"id": "t-1"}', headers={"traceparent": query_tp}
            )
            stored = await nc.jetstream().get_msg("EVENTS", seq)
    finally:
        await nc.close()
    provider.shutdown()
    return {
        "rejected": rejected,
        "rejection_logs": [line for line in logs if line["event"] == "command_rejected"],
        "commit_headers": dict(stored.headers or {}),
        "spans": [describe(span) for span in exporter.get_finished_spans()],
    }


if __name__ == "__main__":
    result = anyio.run(main, *sys.argv[1:4])
    sys.stdout.write("\n" + orjson.dumps(result, default=str).decode() + "\n")
