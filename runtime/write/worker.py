"""A worker: the event store, the actor host and one command service per aggregate type."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog
from nats.aio.client import Client as NATS

from ..domain.aggregate import Aggregate
from ..transport.readiness import mark_not_ready, mark_ready
from ..transport.streams import StreamSettings
from ..wire.naming import service_name
from .command_service import CommandService
from .host import ActorHost, HostSettings
from .snapshots import SnapshotSettings, SnapshotStore
from .store import EventStore

log = structlog.get_logger("runtime.write.worker")


@dataclass(frozen=True)
class WorkerSettings:
    stream: StreamSettings = field(default_factory=StreamSettings)
    host: HostSettings = field(default_factory=HostSettings)
    snapshots: SnapshotSettings = field(default_factory=SnapshotSettings)
    timeout: float = 5.0
    ready_file: Path | None = None  # see runtime/transport/readiness.py


@contextlib.asynccontextmanager
async def run_worker(
    nc: NATS,
    aggregates: Sequence[Aggregate[Any]],
    settings: WorkerSettings | None = None,
) -> AsyncIterator[ActorHost]:
    """Serve the commands of ``aggregates`` until the context exits, then drain.

    On exit the process first withdraws from the ready file, then the services stop taking
    requests (draining their subscriptions, so every request already delivered is queued), then
    the commands already queued finish and answer, and only then does the event store close.
    """
    settings = settings or WorkerSettings()
    store = EventStore(nc, settings.stream, timeout=settings.timeout)
    await store.start()
    try:
        snapshots: SnapshotStore | None = None
        if settings.snapshots.enabled and any(a.snapshot_every is not None for a in aggregates):
            snapshots = SnapshotStore(
                nc,
                settings.stream.name,
                settings.snapshots,
                stream_replicas=settings.stream.replicas,
                timeout=settings.timeout,
            )
            await snapshots.start()
        host = ActorHost(store, list(aggregates), settings.host, snapshots=snapshots)
        services = [CommandService(nc, host, a) for a in aggregates]
        async with host.running():
            try:
                for service in services:
                    await service.start()
                mark_ready(settings.ready_file, _instances(services))
                log.info("worker_started", aggregates=[a.name for a in aggregates])
                yield host
            finally:
                mark_not_ready(settings.ready_file, _instances(services))
                async with anyio.create_task_group() as tg:
                    for service in services:
                        tg.start_soon(service.stop)
                log.info("worker_draining", in_flight=host.in_flight)
    finally:
        await store.stop()


def _instances(services: Sequence[CommandService]) -> dict[str, str]:
    return {
        service_name("aggregate", s.aggregate.name): s.service.id
        for s in services
        if s.service is not None
    }
