"""Running an application's parts in one process: workers for its aggregates (and, where asked,
projection replicas for its projections), all under one task group."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS

from .app import App
from .domain import Aggregate
from .host import ActorHost
from .worker import WorkerSettings, run_worker


@dataclass
class RunningApp:
    """Handles on what :func:`run_app` started."""

    host: ActorHost | None
    projectors: list[Any]


@contextlib.asynccontextmanager
async def run_app(
    nc: NATS,
    app: App,
    *,
    aggregates: Sequence[Aggregate[Any]] | None = None,
    projections: Sequence[Any] | None = None,
    settings: WorkerSettings | None = None,
) -> AsyncIterator[RunningApp]:
    """Serve ``aggregates`` (default: all of the app's) until the context exits."""
    aggs = list(app.aggregates if aggregates is None else aggregates)
    async with contextlib.AsyncExitStack() as stack:
        host = await stack.enter_async_context(run_worker(nc, aggs, settings)) if aggs else None
        yield RunningApp(host=host, projectors=[])
