"""A process's telemetry, switched on from the command line: metrics with their endpoints when
``--metrics-port`` (``CQRS_METRICS_PORT``) is given, on the interface ``--metrics-host`` names,
traces when the ``OTEL_*`` variables ask for them (see
:func:`runtime.observability.tracing.configure_sdk`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
from nats.aio.client import Client as NATS

from ..observability import metrics
from ..observability.http import serve_endpoints
from ..observability.tracing import configure_sdk


@contextlib.asynccontextmanager
async def process_telemetry(
    service_name: str, nc: NATS, metrics_port: int | None, metrics_host: str
) -> AsyncIterator[None]:
    """Turn on what is configured before the process builds its services; on exit stop the
    endpoints and flush the spans still buffered."""
    stop_tracing = configure_sdk(service_name)
    try:
        if metrics_port is None:
            yield
        else:
            async with serve_endpoints(metrics_port, metrics.enable(), nc, host=metrics_host):
                yield
    finally:
        if stop_tracing is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(stop_tracing)
