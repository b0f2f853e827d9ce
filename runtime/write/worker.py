"""A worker: the event store, the actor host and one command service per aggregate type.

On a server that partitions commands (see :mod:`runtime.ownership.partitions`) the worker joins
the ownership protocol: it serves only the partitions whose leases it holds. On a server without
the mapping it says so once and serves every command through the queue group, in fenced mode
(every decision that appends nothing is confirmed against the stream).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
from nats.aio.client import Client as NATS

from ..domain.aggregate import Aggregate
from ..log import get_logger
from ..observability import metrics
from ..ownership.coordinator import Coordinator, OwnershipSettings
from ..ownership.leases import LeaseBucket
from ..ownership.probe import server_partitions
from ..transport.readiness import mark_not_ready, mark_ready
from ..transport.startup import DEFAULT_STARTUP_TIMEOUT, waiting_for_jetstream
from ..transport.streams import StreamSettings
from ..wire.naming import service_name
from .command_service import CommandService
from .host import ActorHost, HostSettings
from .partitioned import PartitionRouter
from .snapshots import SnapshotSettings, SnapshotStore
from .store import EventStore

log = get_logger("runtime.write.worker")


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker runs: its event stream, actor host, snapshots and ownership of partitions."""

    stream: StreamSettings = field(default_factory=StreamSettings)
    host: HostSettings = field(default_factory=HostSettings)
    snapshots: SnapshotSettings = field(default_factory=SnapshotSettings)
    ownership: OwnershipSettings = field(default_factory=OwnershipSettings)
    partitioned: bool | None = None  # None: ask the server whether it maps commands
    timeout: float = 5.0
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT  # see runtime/transport/startup.py
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
    start_by = time.monotonic() + settings.startup_timeout
    store = EventStore(nc, settings.stream, timeout=settings.timeout)
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
        with waiting_for_jetstream(settings.startup_timeout):
            await store.start()
            if snapshots is not None:
                await snapshots.start()
            host = ActorHost(store, list(aggregates), settings.host, snapshots=snapshots)
            services = [CommandService(nc, host, a) for a in aggregates]
            router = PartitionRouter(nc, {s.aggregate.name: s for s in services})
            coordinator = await _coordinator(nc, aggregates, settings, router)
        host.ownership = coordinator
        process_metrics = metrics.current()
        if process_metrics is not None and coordinator is not None:
            process_metrics.ownership.append(coordinator)
        async with host.running():
            async with anyio.create_task_group() as tg:
                try:
                    for service in services:
                        await service.start(any_partition=settings.partitioned is False)
                    if coordinator is not None:
                        # The first round is part of starting: its lease bucket may be new.
                        with waiting_for_jetstream(start_by - time.monotonic()):
                            await coordinator.round()
                        tg.start_soon(coordinator.run)
                    mark_ready(settings.ready_file, _instances(services))
                    log.info(
                        "worker_started",
                        aggregates=[a.name for a in aggregates],
                        member=coordinator.member if coordinator is not None else None,
                        partitions_owned=coordinator.owned if coordinator is not None else None,
                    )
                    yield host
                finally:
                    mark_not_ready(settings.ready_file, _instances(services))
                    tg.cancel_scope.cancel()
                    with anyio.CancelScope(shield=True):
                        await router.stop()
                        for service in services:
                            await service.stop()
            log.info("worker_draining", in_flight=host.in_flight)
            await host.drained()
            if coordinator is not None:
                with anyio.CancelScope(shield=True):
                    await coordinator.release_all()
                if process_metrics is not None and coordinator in process_metrics.ownership:
                    process_metrics.ownership.remove(coordinator)
            log.info(
                "worker_stopped",
                **asdict(host.stats),
                ignored=router.ignored,
                **(asdict(coordinator.stats) if coordinator is not None else {}),
            )
    finally:
        await store.stop()


async def _coordinator(
    nc: NATS,
    aggregates: Sequence[Aggregate[Any]],
    settings: WorkerSettings,
    router: PartitionRouter,
) -> Coordinator | None:
    """The ownership coordinator, or None on a server that does not partition commands."""
    ownership = settings.ownership
    partitioned = settings.partitioned
    if partitioned is None:
        partitioned = await server_partitions(nc, ownership.partitions)
    if not partitioned:
        log.warning(
            "commands_not_partitioned",
            detail="the server has no partition mapping for commands; every worker takes any "
            "command through the queue group and confirms decisions against the stream",
        )
        return None
    bucket = LeaseBucket(
        nc,
        ownership.bucket_for(settings.stream.name),
        ttl=ownership.lease_ttl,
        replicas=settings.stream.replicas,
        timeout=settings.timeout,
    )
    await bucket.start()
    return Coordinator(bucket, [a.name for a in aggregates], router, ownership)


def _instances(services: Sequence[CommandService]) -> dict[str, str]:
    return {
        service_name("aggregate", s.aggregate.name): s.service.id
        for s in services
        if s.service is not None
    }
