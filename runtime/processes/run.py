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
from ..transport.micro import MicroService, Request
from ..transport.readiness import mark_not_ready, mark_ready
from ..transport.startup import waiting_for_jetstream
from ..wire.naming import SERVICE_VERSION, process_status_subject, queue_group, service_name
from .instances import InstanceStore
from .reactor import Reactor
from .settings import ProcessSettings
from .timers import TimerStore

log = get_logger("runtime.processes.run")


def replica_status(reactor: Reactor) -> dict[str, Any]:
    return {
        "process_manager": reactor.manager.name,
        "host": socket.gethostname(),
        "pinned": reactor.events.pin is not None,
        "reacted": reactor.reacted,
        "last_seq": reactor.last_seq,
    }


@contextlib.asynccontextmanager
async def run_process_managers(
    nc: NATS,
    managers: Sequence[ProcessManager[Any]],
    settings: ProcessSettings | None = None,
) -> AsyncIterator[list[Reactor]]:
    """Run one replica of each of ``managers`` until the context exits.

    On exit the replicas withdraw from the ready file and stop between batches: what a batch
    had not acknowledged is redelivered to the next replica, which changes nothing twice.
    """
    settings = settings or ProcessSettings()
    instances = InstanceStore(nc, bucket=settings.bucket, replicas=settings.replicas)
    timers = TimerStore(nc, stream=settings.timers_stream, replicas=settings.replicas)
    with waiting_for_jetstream(settings.startup_timeout):
        await instances.start()
        await timers.start()
    reactors = [Reactor(nc, m, settings, instances, timers) for m in managers]
    services: dict[str, MicroService] = {}
    async with anyio.create_task_group() as tg:
        try:
            for reactor in reactors:
                with waiting_for_jetstream(settings.startup_timeout):
                    await reactor.start()
                services[reactor.manager.name] = await _status_service(nc, reactor)
                tg.start_soon(reactor.run)
            ready = {service_name("process", n): s.id for n, s in services.items()}
            mark_ready(settings.ready_file, ready)
            log.info("processes_started", process_managers=[m.name for m in managers])
            try:
                yield reactors
            finally:
                mark_not_ready(settings.ready_file, ready)
        finally:
            for service in services.values():
                await service.stop()
            tg.cancel_scope.cancel()


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
