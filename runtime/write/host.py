"""The actor host: routes commands to actors, bounds their mailboxes and their number.

Live actors sit in an LRU: when there are more than ``max_actors``, the least recently used idle
ones are passivated (dropped from memory; the next command reloads them from the stream), and a
sweeper passivates actors idle for longer than ``idle_timeout``. Every drain task runs in the
host's task group, so shutdown waits for commands in flight. Snapshot writes run in the same task
group, after the command's reply (see :class:`~runtime.write.snapshots.SnapshotWriter`).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup
from opentelemetry.trace import Span

from ..domain.aggregate import Aggregate
from ..errors import Busy, CqrsError, Internal, UnknownCommand
from ..log import get_logger
from ..observability import metrics
from ..observability.metrics import NOOP, OK, AggregateMetrics
from ..observability.tracing import activated, end_span
from ..ownership.coordinator import Coordinator
from .actor import Actor, CommandRequest, HostStats
from .snapshots import SnapshotStore, SnapshotWriter
from .store import EventStore

log = get_logger("runtime.write.host")


@dataclass(frozen=True, slots=True)
class HostSettings:
    """Limits of one actor host."""

    mailbox_size: int = 1024
    max_actors: int = 100_000
    idle_timeout: float = 600.0  # seconds an idle actor stays in memory
    max_conflict_retries: int = 10
    dispatchers: int = 256  # actors that may be running a command at the same time
    log_commands: bool = False  # an info line per handled command (on in `cqrs dev`)
    snapshot_drain_timeout: float = 5.0  # seconds shutdown waits for snapshot writes


def outcome_of(result: dict[str, Any] | CqrsError) -> str:
    """A reply's outcome label: its error code, ``ok`` (events appended) or ``noop``."""
    if isinstance(result, CqrsError):
        return result.code
    return OK if result["events"] else NOOP


def answered(
    metrics: AggregateMetrics | None,
    command: str,
    result: dict[str, Any] | CqrsError,
    received: float,
    span: Span | None,
) -> None:
    """Count a command answered (receipt to reply), and end its receipt span."""
    outcome = outcome_of(result)
    if metrics is not None:
        metrics.done(command, outcome, time.perf_counter() - received)
    if span is not None:
        end_span(span, outcome)


class ActorHost:
    """Keeps the live actors of some aggregate types and runs their commands."""

    def __init__(
        self,
        store: EventStore,
        aggregates: list[Aggregate[Any]],
        settings: HostSettings | None = None,
        *,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self.store = store
        self.snapshots = snapshots
        self.snapshot_writer = SnapshotWriter(snapshots) if snapshots is not None else None
        self.aggregates = {a.name: a for a in aggregates}
        self.settings = settings or HostSettings()
        self.actors: collections.OrderedDict[tuple[str, str], Actor] = collections.OrderedDict()
        self._tg: TaskGroup | None = None
        self.in_flight = 0
        self.stats = HostStats()
        process_metrics = metrics.current()
        self.metrics = (
            {a.name: process_metrics.aggregate(a.name, a.command_names) for a in aggregates}
            if process_metrics is not None
            else None
        )
        self.ownership: Coordinator | None = None  # set by run_worker on a partitioned server
        self._idle = anyio.Event()
        self._idle.set()
        # Actors with work wait here for a dispatcher task; starting a task per command would
        # cost more than the command's own Python work. An idle dispatcher waits on a future of
        # its own, and a submit hands it the actor through that future directly (nats-py ties
        # the runtime to asyncio): half the cost of an asyncio.Queue's bookkeeping.
        self._ready: collections.deque[Actor] = collections.deque()
        self._waiting: collections.deque[asyncio.Future[Actor]] = collections.deque()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ActorHost]:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._sweep_idle)
            for _ in range(self.settings.dispatchers):
                tg.start_soon(self._dispatch)
            try:
                yield self
                await self.drained()
                for actor in self.actors.values():
                    self._leaving(actor)
                with anyio.move_on_after(self.settings.snapshot_drain_timeout):
                    await self.snapshots_settled()
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def drained(self) -> None:
        """Wait until no command is queued or running."""
        while self.in_flight:
            await self._idle.wait()

    async def snapshots_settled(self) -> None:
        """Wait until no snapshot write is in flight."""
        if self.snapshot_writer is not None:
            await self.snapshot_writer.settled()

    def submit(self, aggregate: str, aggregate_id: str, request: CommandRequest) -> None:
        """Queue a command for its actor; raise :class:`Busy` when the mailbox is full."""
        if self._tg is None:
            raise Busy("the worker is shutting down")
        definition = self.aggregates.get(aggregate)
        if definition is None:
            raise UnknownCommand(f"this worker does not serve aggregate {aggregate!r}")
        key = (aggregate, aggregate_id)
        actor = self.actors.get(key)
        if actor is None:
            actor = Actor(definition, aggregate_id, self.store, self.snapshots)
            self.actors[key] = actor
            if self.metrics is not None:
                self.metrics[aggregate].live_actors.inc()
            self._evict_over_capacity()
        else:
            self.actors.move_to_end(key)
        if actor.mailbox is None:
            actor.mailbox = collections.deque()
        elif len(actor.mailbox) >= self.settings.mailbox_size:
            if self.metrics is not None:
                self.metrics[aggregate].mailbox_full.inc()
            raise Busy(
                f"{aggregate}/{aggregate_id} has {len(actor.mailbox)} commands queued",
                details={"aggregate": aggregate, "id": aggregate_id},
            )
        actor.mailbox.append(request)
        self.in_flight += 1
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        if not actor.running:
            actor.running = True
            self._hand_over(actor)

    def _hand_over(self, actor: Actor) -> None:
        waiting = self._waiting
        while waiting:
            dispatcher = waiting.popleft()
            if not dispatcher.done():
                dispatcher.set_result(actor)
                return
        self._ready.append(actor)

    async def _dispatch(self) -> None:
        ready, waiting = self._ready, self._waiting
        loop = asyncio.get_running_loop()
        while True:
            if ready:
                actor = ready.popleft()
            else:
                handed: asyncio.Future[Actor] = loop.create_future()
                waiting.append(handed)
                actor = await handed
            await self._drain(actor)

    async def _drain(self, actor: Actor) -> None:
        mailbox = actor.mailbox
        assert mailbox is not None
        try:
            while mailbox:
                request = mailbox.popleft()
                try:
                    await self._run_one(actor, request)
                finally:
                    self.in_flight -= 1
        finally:
            actor.running = False
            actor.mailbox = None
            actor.touched = time.monotonic()
            if not self.in_flight:
                self._idle.set()

    async def _run_one(self, actor: Actor, request: CommandRequest) -> None:
        # The receipt span (tracing on) is current while the actor works: its spans and its
        # log lines belong to the command's trace.
        with activated(request.span):
            result = await self._decide(actor, request)
        try:
            await request.reply(result)
        except Exception:
            log.exception("reply_failed", **self._context(actor, request))
        finally:
            if request.done is not None:
                request.done()
        if self.metrics is not None or request.span is not None:
            metrics = self.metrics[actor.aggregate.name] if self.metrics is not None else None
            answered(metrics, request.command, result, request.received, request.span)
        if self.snapshot_writer is not None and self._tg is not None:
            self.snapshot_writer.after_command(actor, self._tg)

    @staticmethod
    def _context(actor: Actor, request: CommandRequest) -> dict[str, Any]:
        return {
            "aggregate": actor.aggregate.name,
            "id": actor.aggregate_id,
            "command": request.command,
            "command_id": request.command_id,
            "correlation_id": request.correlation_id,
        }

    async def _decide(self, actor: Actor, request: CommandRequest) -> dict[str, Any] | CqrsError:
        """Run one command on its actor; its success reply, or the error to answer."""
        retries = self.settings.max_conflict_retries
        aggregate_metrics = self.metrics[actor.aggregate.name] if self.metrics is not None else None
        try:
            result = await actor.handle(request, retries, self.stats, aggregate_metrics)
            self.stats.handled += 1
            if self.settings.log_commands:
                log.info(
                    "command_handled",
                    **self._context(actor, request),
                    version=result["version"],
                    seq=result["seq"],
                )
            return result
        except CqrsError as exc:
            context = self._context(actor, request)
            if exc.code in ("rejected", "invalid"):
                self.stats.rejected += 1
                log.info("command_rejected", **context, code=exc.code, reason=exc.message)
            else:
                self.stats.failed += 1
                log.warning("command_failed", **context, code=exc.code, reason=exc.message)
                if exc.code not in ("conflict", "busy"):
                    actor.reset()
            return exc
        except Exception as exc:
            self.stats.failed += 1
            log.exception("command_crashed", **self._context(actor, request))
            actor.reset()  # the handler may have left the actor half-way; reload next time
            return Internal(f"{type(exc).__name__} while handling {request.command}")

    def _evict_over_capacity(self) -> None:
        excess = len(self.actors) - self.settings.max_actors
        if excess <= 0:
            return
        # Oldest first; a running actor stays, so look a little further than the excess.
        for key in list(itertools.islice(self.actors, excess + 32)):
            if excess <= 0:
                break
            if not self.actors[key].running:
                self._leaving(self.actors.pop(key))
                excess -= 1

    def _leaving(self, actor: Actor) -> None:
        """An actor leaves memory: snapshot it if its snapshot is behind (see SnapshotWriter)."""
        if self.metrics is not None:
            self.metrics[actor.aggregate.name].live_actors.dec()
        if self.snapshot_writer is not None and self._tg is not None:
            self.snapshot_writer.before_passivation(actor, self._tg)

    async def _sweep_idle(self) -> None:
        period = max(self.settings.idle_timeout / 4, 0.05)
        while True:
            await anyio.sleep(period)
            self.passivate_idle()

    def passivate_idle(self) -> int:
        """Drop actors idle for longer than ``idle_timeout``; return how many."""
        deadline = time.monotonic() - self.settings.idle_timeout
        stale = [
            key
            for key, actor in self.actors.items()
            if not actor.running and actor.touched <= deadline
        ]
        for key in stale:
            self._leaving(self.actors.pop(key))
        if stale:
            log.debug("actors_passivated", count=len(stale), live=len(self.actors))
        return len(stale)
