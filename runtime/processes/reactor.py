"""One process manager replica: it consumes events and fired timers and reacts to them.

Each trigger goes through :class:`~runtime.processes.reaction.Reactions` (read the instance,
skip what it already reacted to, react, store state and outbox in one compare-and-set write,
carry the outbox out). A message is acknowledged only once every trigger of its batch went
through, so a crash at any point is followed by a redelivery that finds either nothing done
(and reacts the same way again, with the same ids) or a stored outbox (and sends it again,
changing nothing). Within a batch, different instances react concurrently and the triggers of
one instance in order.

Two kinds of failure are told apart:

- the infrastructure (no worker answers, JetStream unavailable): retried in place with back-off,
  keeping the deliveries in progress, until it succeeds or the replica stops; nothing is
  skipped and nothing overtakes it;
- the reaction itself (it raises, or its event does not decode): tried ``max_attempts`` times
  with back-off, then the trigger is parked (:mod:`.parking`), and every later trigger of the
  same instance is parked behind it, while the other instances go on.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ..client import Client
from ..domain.process_manager import ProcessManager
from ..errors import CqrsError
from ..observability import metrics
from ..read.consumer import commit_of
from ..transport.streams import StreamSettings, ensure_event_stream
from .instances import InstanceStore
from .parking import ParkedStore
from .pinned import PinnedConsumer
from .reaction import ReactionFailed, Reactions
from .settings import ProcessSettings
from .timers import Fired, TimerStore, fired_subject
from .triggers import Trigger, event_triggers, timer_trigger, unreadable_trigger

log = structlog.get_logger("runtime.processes.reactor")


def consumer_name(manager: str, kind: str = "events") -> str:
    return f"cqrs-pm-{manager}" if kind == "events" else f"cqrs-pm-{manager}-timers"


class Reactor:
    """Runs one process manager: its two pinned consumers and the reactions they trigger."""

    def __init__(
        self,
        nc: NATS,
        manager: ProcessManager[Any],
        settings: ProcessSettings,
        instances: InstanceStore,
        timers: TimerStore,
        parked: ParkedStore,
    ) -> None:
        self.nc = nc
        self.manager = manager
        self.settings = settings
        self.client = Client(nc, timeout=settings.command_timeout)
        self.reactions = Reactions(manager, instances, timers, parked, self.client)
        self.parked = parked
        self.metrics = metrics.current()
        self.log = log.bind(process_manager=manager.name)
        common = {
            "ack_wait": settings.ack_wait,
            "pin_timeout": settings.pin_timeout,
            "max_ack_pending": max(1000, settings.batch * 2),
            "timeout": settings.timeout,
        }
        self.events = PinnedConsumer(
            nc,
            stream=settings.stream,
            name=consumer_name(manager.name),
            subjects=manager.subjects(),
            description=f"cqrs process manager {manager.name}",
            deliver_all=settings.start == "all",
            **common,  # type: ignore[arg-type]
        )
        self.fired = PinnedConsumer(
            nc,
            stream=settings.timers_stream,
            name=consumer_name(manager.name, "timers"),
            subjects=[fired_subject(manager.name, "*", "*")],
            description=f"cqrs process manager {manager.name}: fired timers",
            deliver_all=True,
            **common,  # type: ignore[arg-type]
        )
        self.parked_now = 0  # triggers this replica parked, for tests and logs
        self.last_seq = 0  # the last event sequence acknowledged
        self._advanced = anyio.Event()

    @property
    def reacted(self) -> int:
        """Triggers reacted to (not skipped), for benchmarks and tests."""
        return self.reactions.reacted

    async def start(self) -> None:
        # A fresh deployment may start its process managers first: the stream they follow is
        # created (or checked) as every other reader of it does.
        js = self.nc.jetstream(timeout=self.settings.timeout)
        stream = StreamSettings(name=self.settings.stream, replicas=self.settings.replicas)
        await ensure_event_stream(js, stream)
        await self.events.start()
        await self.fired.start()

    async def run(self) -> None:
        """Consume events and fired timers until cancelled."""
        if self.metrics is not None:
            self.metrics.processes.append(self)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._consume, self.events, self._event_triggers)
                tg.start_soon(self._consume, self.fired, self._timer_triggers)
        finally:
            if self.metrics is not None and self in self.metrics.processes:
                self.metrics.processes.remove(self)

    async def refresh(self) -> None:
        """Count the parked instances for the metrics (at each scrape; every replica reports
        the same count, read from the parked stream)."""
        if self.metrics is not None:
            counts = await self.parked.counts(self.manager.name)
            self.metrics.parked_instances.labels(self.manager.name).set(len(counts))

    # -- consuming -----------------------------------------------------------------------------

    async def _consume(
        self, consumer: PinnedConsumer, triggers: Callable[[Msg], list[Trigger]]
    ) -> None:
        failures = 0
        while True:
            try:
                msgs = await consumer.fetch(self.settings.batch, self.settings.fetch_timeout)
            except CqrsError as exc:
                failures += 1
                self.log.warning("fetch_failed", consumer=consumer.name, error=exc.message)
                await anyio.sleep(self.settings.retry.delay(failures))
                continue
            failures = 0
            if msgs:
                await self._handle_batch(consumer, msgs, triggers)

    def _event_triggers(self, msg: Msg) -> list[Trigger]:
        try:
            commit = commit_of(msg)
        except Exception as exc:  # an unreadable body is parked, never lost nor blocking
            return [unreadable_trigger(msg.subject, msg.metadata.sequence.stream, exc)]
        return event_triggers(self.manager, commit)

    def _timer_triggers(self, msg: Msg) -> list[Trigger]:
        fired_at = msg.metadata.timestamp  # when the server stored (fired) it
        return [timer_trigger(Fired.parse(msg.subject, msg.headers or {}, msg.data, fired_at))]

    async def _handle_batch(
        self,
        consumer: PinnedConsumer,
        msgs: list[Msg],
        triggers: Callable[[Msg], list[Trigger]],
    ) -> None:
        by_key: dict[str, list[Trigger]] = {}
        for msg in msgs:
            decoded = await self._retrying(functools.partial(_sync, triggers, msg), msgs)
            for trigger in decoded:
                by_key.setdefault(trigger.key, []).append(trigger)
        limiter = anyio.CapacityLimiter(self.settings.concurrency)

        async def instance(key_triggers: list[Trigger]) -> None:
            async with limiter:
                for trigger in key_triggers:
                    await self._react(trigger, msgs)

        async with anyio.create_task_group() as tg:
            for key_triggers in by_key.values():
                tg.start_soon(instance, key_triggers)
        for msg in msgs:
            try:
                await msg.ack()
            except Exception as exc:  # the connection is gone: the redelivery changes nothing
                self.log.debug("ack_failed", error=repr(exc))
        if consumer is self.events:
            self.last_seq = max(self.last_seq, msgs[-1].metadata.sequence.stream)
            self._advanced.set()
            self._advanced = anyio.Event()

    async def wait_for(self, seq: int) -> None:
        """Return once every event up to ``seq`` is acknowledged."""
        while self.last_seq < seq:
            await self._advanced.wait()

    async def _react(self, trigger: Trigger, msgs: list[Msg]) -> None:
        """React to ``trigger``; a reaction that keeps raising parks it (see the module doc)."""
        failures = 0
        while True:
            try:
                if not await self.reactions.react(trigger):
                    self._count_parked()  # parked behind the instance's first failure
                return
            except ReactionFailed as exc:
                failures += 1
                if failures >= self.settings.max_attempts or not exc.retry:
                    await self._retrying(
                        functools.partial(self._park, trigger, exc.error, failures), msgs
                    )
                    return
                self.log.warning(
                    "process_reaction_failed",
                    key=trigger.key,
                    trigger=trigger.id,
                    attempts=failures,
                    error=exc.error,
                )
            except Exception as exc:
                # The infrastructure: not the reaction's fault, so it never parks an instance.
                self.log.warning(
                    "process_retrying",
                    key=trigger.key,
                    trigger=trigger.id,
                    error=exc.message if isinstance(exc, CqrsError) else repr(exc),
                )
            await self._hold(msgs)
            await anyio.sleep(self.settings.retry.delay(failures or 1))

    async def _park(self, trigger: Trigger, error: str, attempts: int) -> None:
        if await self.reactions.park(trigger, error, attempts):
            self._count_parked()
        else:  # an operator cleared the park meanwhile: react after all
            await self.reactions.react(trigger)

    def _count_parked(self) -> None:
        self.parked_now += 1
        if self.metrics is not None:
            self.metrics.triggers_parked.labels(self.manager.name).inc()

    async def _hold(self, msgs: list[Msg]) -> None:
        """Keep the deliveries this replica's while it retries."""
        for msg in msgs:
            try:
                await msg.in_progress()
            except Exception as exc:
                self.log.debug("in_progress_failed", error=repr(exc))

    async def _retrying(self, attempt: Callable[[], Awaitable[Any]], msgs: list[Msg]) -> Any:
        attempts = 0
        while True:
            attempts += 1
            try:
                return await attempt()
            except Exception as exc:
                self.log.warning(
                    "process_retrying",
                    attempts=attempts,
                    error=exc.message if isinstance(exc, CqrsError) else repr(exc),
                )
            await self._hold(msgs)
            await anyio.sleep(self.settings.retry.delay(attempts))


async def _sync(fn: Callable[[Msg], list[Trigger]], msg: Msg) -> list[Trigger]:
    return fn(msg)
