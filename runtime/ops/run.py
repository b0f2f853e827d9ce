"""Running an application's parts in one process: workers for its aggregates (and, where asked,
projection replicas for its projections), all under one task group."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS

from ..domain.aggregate import Aggregate
from ..domain.app import App
from ..domain.projection import Projection
from ..read.projector import Projector
from ..read.replicas import run_projections
from ..read.settings import ProjectorSettings
from ..write.host import ActorHost
from ..write.worker import WorkerSettings, run_worker


@dataclass
class RunningApp:
    """Handles on what :func:`run_app` started."""

    host: ActorHost | None
    projectors: list[Projector[Any]]


@contextlib.asynccontextmanager
async def run_app(
    nc: NATS,
    app: App,
    *,
    aggregates: Sequence[Aggregate[Any]] | None = None,
    projections: Sequence[Projection[Any]] | None = None,
    settings: WorkerSettings | None = None,
    projector_settings: ProjectorSettings | None = None,
) -> AsyncIterator[RunningApp]:
    """Serve ``aggregates`` and run replicas of ``projections`` (default: all of the app's)
    until the context exits.

    The projections' consumers read the stream named by ``settings`` unless
    ``projector_settings`` says otherwise. On exit the projections stop first (each writes a
    final snapshot), then the workers drain.
    """
    aggs = list(app.aggregates if aggregates is None else aggregates)
    projs = list(app.projections if projections is None else projections)
    if projector_settings is None:
        stream = settings.stream.name if settings is not None else "EVENTS"
        projector_settings = ProjectorSettings(stream=stream)
    async with contextlib.AsyncExitStack() as stack:
        host = await stack.enter_async_context(run_worker(nc, aggs, settings)) if aggs else None
        projectors = (
            await stack.enter_async_context(run_projections(nc, projs, projector_settings))
            if projs
            else []
        )
        yield RunningApp(host=host, projectors=projectors)
