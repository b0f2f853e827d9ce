"""Traces from a command to the projection that applies its commit, through a process with the
OpenTelemetry SDK and its in-memory exporter (see trace_probe.py)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson

from runtime.transport.embedded import EmbeddedServer

from ..procs import REPO

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
QUERY_TRACE = "0af7651916cd43dd8448eb211c80319c"


def probe(url: str) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.observability.trace_probe",
            url,
            f"00-{TRACE}-{CALLER_SPAN}-01",
            f"00-{QUERY_TRACE}-b7ad6b7169203331-01",
        ],
        cwd=REPO,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    # The last line: log lines of the probe (structlog prints to stdout) come before it.
    return orjson.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


async def test_a_commands_trace_reaches_its_commit_and_the_projection(
    nats_server: EmbeddedServer,
) -> None:
    """A traceparent sent with a command continues in its spans, is stored in the commit's
    headers, and the projection's apply span links to it; a query's continues its trace too."""
    await nats_server.wait_ready()
    result = probe(nats_server.url)
    spans = result["spans"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)

    receipt = by_name["command counter"][-1]
    assert receipt["trace_id"] == TRACE and receipt["parent_id"] == CALLER_SPAN
    assert receipt["attributes"]["cqrs.outcome"] == "ok"
    append = by_name["append"][-1]
    assert append["trace_id"] == TRACE and append["parent_id"] == receipt["span_id"]
    seq = append["attributes"]["cqrs.seq"]
    assert append["attributes"]["cqrs.id"] == "t-1"
    assert [s["parent_id"] for s in by_name["decide"]][-1] == receipt["span_id"]

    headers = result["commit_headers"]
    assert headers["traceparent"] == f"00-{TRACE}-{append['span_id']}-01"
    assert headers["tracestate"] == "vendor=1"

    apply = next(s for s in by_name["apply fragile"] if s["attributes"]["cqrs.seq"] == seq)
    assert apply["links"] == [{"trace_id": TRACE, "span_id": append["span_id"]}]
    assert apply["trace_id"] != TRACE

    query = by_name["query fragile"][-1]
    assert query["trace_id"] == QUERY_TRACE and query["attributes"]["cqrs.outcome"] == "ok"

    assert result["rejected"] == "rejected"
    rejected = by_name["command counter"][0]
    assert rejected["attributes"]["cqrs.outcome"] == "rejected"
    [log_line] = result["rejection_logs"]
    assert log_line["trace_id"] == TRACE and log_line["span_id"] == rejected["span_id"]
