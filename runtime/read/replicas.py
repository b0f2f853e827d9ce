"""A projection worker: replicas of some projections, each with its query service.

This is what ``cqrs projector`` runs (and ``cqrs dev``, through :func:`runtime.ops.run.run_app`):
one :class:`~runtime.read.projector.Projector` per projection, all in one task group, each serving
its queries once its model is restored and its consumer positioned.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

from nats.aio.client import Client as NATS

from ..domain.projection import Projection
from ..log import get_logger
from ..observability import metrics
from ..transport.readiness import mark_not_ready, mark_ready
from ..wire.naming import service_name
from .gauges import ReplicaGaugeSource
from .presence import claimed
from .projector import Projector
from .query_service import QueryService
from .settings import ProjectorSettings

log = get_logger("runtime.read.replicas")

M = TypeVar("M")


@contextlib.asynccontextmanager
async def run_replica(
    nc: NATS, projection: Projection[M], settings: ProjectorSettings | None = None
) -> AsyncIterator[Projector[M]]:
    """Run one replica of ``projection`` and serve its queries until the context exits.

    It first claims its replica id (see :mod:`runtime.read.presence`): another live replica
    with the same id makes it refuse with :class:`~runtime.errors.ReplicaInUse`. On exit the
    replica withdraws from the ready file, stops taking queries (answering the waiting ones),
    stops consuming, writes a final snapshot and releases its id. While it runs, the process's
    metrics (when on) report its gauges.
    """
    projector = Projector(nc, projection, settings)
    process_metrics = metrics.current()
    gauges = ReplicaGaugeSource(projector)
    async with (
        claimed(
            nc,
            projection.name,
            projector.replica,
            ttl=projector.settings.presence_ttl,
            replicas=projector.settings.replicas,
            startup_timeout=projector.settings.startup_timeout,
        ),
        projector.running(),
        QueryService(nc, projector).running() as queries,
    ):
        instances = (
            {service_name("projection", projection.name): queries.service.id}
            if queries.service
            else {}
        )
        mark_ready(projector.settings.ready_file, instances)
        if process_metrics is not None:
            process_metrics.watch(gauges)
        log.info(
            "replica_started",
            projection=projection.name,
            replica=projector.replica,
            applied_seq=projector.applied,
        )
        try:
            yield projector
        finally:
            if process_metrics is not None:
                process_metrics.unwatch(gauges)
            mark_not_ready(projector.settings.ready_file, instances)


@contextlib.asynccontextmanager
async def run_projections(
    nc: NATS,
    projections: Sequence[Projection[Any]],
    settings: ProjectorSettings | None = None,
) -> AsyncIterator[list[Projector[Any]]]:
    """Run one replica of each of ``projections`` until the context exits."""
    async with contextlib.AsyncExitStack() as stack:
        projectors = [
            await stack.enter_async_context(run_replica(nc, projection, settings))
            for projection in projections
        ]
        yield projectors
