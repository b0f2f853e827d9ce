"""A projection worker: replicas of some projections, each with its query service.

This is what ``cqrs projector`` runs (and ``cqrs dev``, through :func:`runtime.ops.run.run_app`):
one :class:`~runtime.read.projector.Projector` per projection, all in one task group, each taking
queries once it has caught up and its version is the one that answers
(:mod:`runtime.read.election`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import anyio
from nats.aio.client import Client as NATS

from ..domain.projection import Projection
from ..log import get_logger
from ..observability import metrics
from ..transport.readiness import mark_not_ready, mark_ready
from ..wire.naming import service_name
from .election import Election
from .gauges import ReplicaGaugeSource
from .presence import claimed
from .projector import Projector
from .query_service import QueryService
from .settings import ProjectorSettings

log = get_logger("runtime.read.replicas")

M = TypeVar("M")


def claim_name(projection: Projection[Any]) -> str:
    """What a replica's claim is made under: its projection, and its version from 2 on (so the
    replicas of two versions on one host, both named after it, do not refuse each other)."""
    if projection.version == 1:
        return projection.name
    return f"{projection.name}.v{projection.version}"


@contextlib.asynccontextmanager
async def _replica(
    nc: NATS, projection: Projection[M], settings: ProjectorSettings | None
) -> AsyncIterator[tuple[Projector[M], Election]]:
    projector = Projector(nc, projection, settings)
    async with (
        claimed(
            nc,
            claim_name(projection),
            projector.replica,
            ttl=projector.settings.presence_ttl,
            replicas=projector.settings.replicas,
            startup_timeout=projector.settings.startup_timeout,
        ),
        projector.running(),
        QueryService(nc, projector).running() as queries,
        Election(projector, queries).running() as election,
    ):
        projector.standing = election.standing
        process_metrics = metrics.current()
        gauges = ReplicaGaugeSource(projector)
        if process_metrics is not None:
            process_metrics.watch(gauges)  # from the start: a catching-up replica reports too
        try:
            yield projector, election
        finally:
            if process_metrics is not None:
                process_metrics.unwatch(gauges)


@contextlib.asynccontextmanager
async def _ready(
    replicas: Sequence[tuple[Projector[Any], Election]],
) -> AsyncIterator[None]:
    """Wait until every replica has caught up (or halted trying); then be ready until the
    context exits."""
    async with anyio.create_task_group() as tg:
        for _, election in replicas:
            tg.start_soon(election.settled.wait)
    instances = {}
    for projector, election in replicas:
        service = election.queries.service
        if service is not None:
            instances[service_name("projection", projector.projection.name)] = service.id
        log.info(
            "replica_started",
            projection=projector.projection.name,
            version=projector.projection.version,
            replica=projector.replica,
            applied_seq=projector.applied,
            serving=election.serving,
        )
    settings = replicas[0][0].settings if replicas else None
    ready_file = settings.ready_file if settings is not None else None
    mark_ready(ready_file, instances)
    try:
        yield
    finally:
        mark_not_ready(ready_file, instances)


@contextlib.asynccontextmanager
async def run_replica(
    nc: NATS, projection: Projection[M], settings: ProjectorSettings | None = None
) -> AsyncIterator[Projector[M]]:
    """Run one replica of ``projection`` until the context exits; enter once it has caught up.

    It first claims its replica id (see :mod:`runtime.read.presence`): another live replica
    with the same id and version makes it refuse with :class:`~runtime.errors.ReplicaInUse`.
    It takes queries once it has caught up, unless a newer version serves. On exit the replica
    withdraws from the ready file, hands its queries over (see :mod:`runtime.read.election`),
    stops taking them (answering the waiting ones), stops consuming, writes a final snapshot and
    releases its id. While it runs, the process's metrics (when on) report its gauges.
    """
    async with _replica(nc, projection, settings) as pair, _ready([pair]):
        yield pair[0]


@contextlib.asynccontextmanager
async def run_projections(
    nc: NATS,
    projections: Sequence[Projection[Any]],
    settings: ProjectorSettings | None = None,
) -> AsyncIterator[list[Projector[Any]]]:
    """Run one replica of each of ``projections`` until the context exits; enter once all of
    them have caught up (they catch up side by side)."""
    async with contextlib.AsyncExitStack() as stack:
        pairs = [
            await stack.enter_async_context(_replica(nc, projection, settings))
            for projection in projections
        ]
        await stack.enter_async_context(_ready(pairs))
        yield [projector for projector, _ in pairs]
