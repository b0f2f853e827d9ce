"""Running process manager replicas: what ``cqrs processes`` (and ``cqrs dev``) runs.

Each process manager gets a :class:`~runtime.processes.reactor.Reactor` and a small micro
service ``process-<name>`` whose endpoint answers the replica's status; the service is what the
ready file lists, so ``cqrs health`` checks a processes replica end to end like any other.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from nats.aio.client import Client as NATS

from ..domain.process_manager import ProcessManager
from ..log import get_logger
from ..observability import metrics
from ..ownership.coordinator import Coordinator, OwnershipSettings
from ..ownership.leases import LeaseBucket
from ..transport.micro import MicroService, Request
from ..transport.readiness import mark_not_ready, mark_ready
from ..transport.startup import waiting_for_jetstream
from ..transport.streams import StreamSettings, ensure_event_stream
from ..wire.naming import SERVICE_VERSION, process_status_subject, queue_group, service_name
from .instances import InstanceStore
from .layout import ensure_partitioned_stream
from .parking import ParkedStore
from .partitions import PartitionHost
from .reactor import Reactor
from .settings import ProcessSettings
from .timers import TimerStore

log = get_logger("runtime.processes.run")


def replica_status(reactor: Reactor) -> dict[str, Any]:
    return {
        "process_manager": reactor.manager.name,
        "host": socket.gethostname(),
        "partitions_owned": sorted(reactor.owned),
        "reacted": reactor.reacted,
        "parked": reactor.parked_now,
        "last_seq": reactor.last_seq,
    }


@contextlib.asynccontextmanager
async def run_process_managers(
    nc: NATS,
    managers: Sequence[ProcessManager[Any]],
    settings: ProcessSettings | None = None,
) -> AsyncIterator[list[Reactor]]:
    """Run one replica of each of ``managers`` until the context exits.

    The replica joins the ownership protocol for the managers' partitions (:mod:`.partitions`).
    On exit it withdraws from the ready file, hands every partition off (each finishes and
    acknowledges its batch in hand, then releases its lease, so the other replicas take over
    at once) and stops.
    """
    settings = settings or ProcessSettings()
    instances = InstanceStore(nc, bucket=settings.bucket, replicas=settings.replicas)
    timers = TimerStore(
        nc,
        stream=settings.timers_stream,
        replicas=settings.replicas,
        partitions=settings.partitions,
    )
    parked = ParkedStore(
        nc, settings.parked_stream, replicas=settings.replicas, timeout=settings.timeout
    )
    leases = LeaseBucket(
        nc,
        settings.lease_bucket,
        ttl=settings.lease_ttl,
        replicas=settings.replicas,
        timeout=settings.timeout,
    )
    js = nc.jetstream(timeout=settings.timeout)
    with waiting_for_jetstream(settings.startup_timeout):
        # A fresh deployment may start its process managers first: the stream they follow is
        # created (or checked) as every other reader of it does.
        await ensure_event_stream(
            js, StreamSettings(name=settings.stream, replicas=settings.replicas)
        )
        await ensure_partitioned_stream(js, settings.stream, settings.partitions, settings.replicas)
        await instances.start()
        await timers.start()
        await parked.start()
        await leases.start()
    reactors = {m.name: Reactor(nc, m, settings, instances, timers, parked) for m in managers}
    process_metrics = metrics.current()
    services: dict[str, MicroService] = {}
    try:
        async with anyio.create_task_group() as tg:
            host = PartitionHost(reactors, tg)
            ownership = OwnershipSettings(
                partitions=settings.partitions,
                lease_ttl=settings.lease_ttl,
                handoff_timeout=settings.ack_wait,
            )
            coordinator = Coordinator(leases, list(reactors), host, ownership)
            try:
                for reactor in reactors.values():
                    with waiting_for_jetstream(settings.startup_timeout):
                        await reactor.start()
                    services[reactor.manager.name] = await _status_service(nc, reactor)
                    if process_metrics is not None:
                        process_metrics.processes.append(reactor)
                await coordinator.round()
                tg.start_soon(coordinator.run)
                ready = {service_name("process", n): s.id for n, s in services.items()}
                mark_ready(settings.ready_file, ready)
                log.info(
                    "processes_started",
                    process_managers=list(reactors),
                    member=coordinator.member,
                    partitions_owned=coordinator.owned,
                )
                try:
                    yield list(reactors.values())
                finally:
                    mark_not_ready(settings.ready_file, ready)
            finally:
                with anyio.CancelScope(shield=True):
                    for service in services.values():
                        await service.stop()
                    await coordinator.release_all()
                if process_metrics is not None:
                    for reactor in reactors.values():
                        if reactor in process_metrics.processes:
                            process_metrics.processes.remove(reactor)
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await instances.stop()


async def _status_service(nc: NATS, reactor: Reactor) -> MicroService:
    name = reactor.manager.name

    async def status(request: Request) -> None:
        await request.respond(replica_status(reactor))

    service = MicroService(
        nc,
        name=service_name("process", name),
        version=SERVICE_VERSION,
        queue_group=queue_group("process", name),
        description=f"process manager {name}",
        metadata={"process_manager": name},
    )
    service.add_endpoint("status", process_status_subject(name), status)
    await service.start()
    return service
