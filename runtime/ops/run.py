"""Running an application's parts in one process: workers for its aggregates (and, where asked,
projection replicas for its projections and replicas of its process managers), all under one
task group."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS

from ..domain.aggregate import Aggregate
from ..domain.app import App
from ..domain.process_manager import ProcessManager
from ..domain.projection import Projection
from ..processes.reactor import Reactor
from ..processes.run import run_process_managers
from ..processes.settings import ProcessSettings
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
    reactors: list[Reactor]


@contextlib.asynccontextmanager
async def run_app(
    nc: NATS,
    app: App,
    *,
    aggregates: Sequence[Aggregate[Any]] | None = None,
    projections: Sequence[Projection[Any]] | None = None,
    settings: WorkerSettings | None = None,
    projector_settings: ProjectorSettings | None = None,
    process_managers: Sequence[ProcessManager[Any]] | None = None,
    process_settings: ProcessSettings | None = None,
) -> AsyncIterator[RunningApp]:
    """Serve ``aggregates`` and run replicas of ``projections`` and ``process_managers``
    (default: all of the app's) until the context exits.

    The projections' and process managers' consumers read the stream named by ``settings``
    unless their own settings say otherwise. On exit the process managers stop first, then the
    projections (each writes a final snapshot), then the workers drain.
    """
    aggs = list(app.aggregates if aggregates is None else aggregates)
    projs = list(app.projections if projections is None else projections)
    managers = list(app.process_managers if process_managers is None else process_managers)
    stream = settings.stream.name if settings is not None else "EVENTS"
    if projector_settings is None:
        projector_settings = ProjectorSettings(stream=stream)
    if process_settings is None:
        process_settings = ProcessSettings(stream=stream)
    async with contextlib.AsyncExitStack() as stack:
        host = await stack.enter_async_context(run_worker(nc, aggs, settings)) if aggs else None
        projectors = (
            await stack.enter_async_context(run_projections(nc, projs, projector_settings))
            if projs
            else []
        )
        reactors = (
            await stack.enter_async_context(run_process_managers(nc, managers, process_settings))
            if managers
            else []
        )
        yield RunningApp(host=host, projectors=projectors, reactors=reactors)
