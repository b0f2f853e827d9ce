"""A worker: the event store, the actor host and one command service per aggregate type."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from nats.aio.client import Client as NATS

from .commands import CommandService
from .domain import Aggregate
from .host import ActorHost, HostSettings
from .store import EventStore, StreamSettings

log = structlog.get_logger("runtime.worker")


@dataclass(frozen=True)
class WorkerSettings:
    stream: StreamSettings = field(default_factory=StreamSettings)
    host: HostSettings = field(default_factory=HostSettings)
    timeout: float = 5.0


@contextlib.asynccontextmanager
async def run_worker(
    nc: NATS,
    aggregates: Sequence[Aggregate[Any]],
    settings: WorkerSettings | None = None,
) -> AsyncIterator[ActorHost]:
    """Serve the commands of ``aggregates`` until the context exits, then drain.

    On exit the services stop taking requests first, then the commands already queued finish.
    """
    settings = settings or WorkerSettings()
    store = EventStore(nc, settings.stream, timeout=settings.timeout)
    await store.start()
    host = ActorHost(store, list(aggregates), settings.host)
    services = [CommandService(nc, host, a) for a in aggregates]
    try:
        async with host.running():
            try:
                for service in services:
                    await service.start()
                log.info("worker_started", aggregates=[a.name for a in aggregates])
                yield host
            finally:
                for service in services:
                    await service.stop()
    finally:
        await store.stop()
