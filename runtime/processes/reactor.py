"""One process manager in one replica: it reacts to the events and fired timers of the
partitions whose leases this replica holds.

Replicas share a process manager's instances the way workers share aggregates: instances are
partitioned (by aggregate id for events, by instance key for timers: the same partition with
the default ``key_of``, see :mod:`.layout`), each partition has one owner at a time through a
lease (:mod:`runtime.ownership`, rendezvous hashing over the live replicas), and an owner reads
the partition's two durable consumers. A replica that takes a partition first rewinds them to
what the former owner acknowledged (:meth:`PartitionConsumer.rewind`), so an instance never sees
a later event before an earlier one; a handoff stops fetching, finishes the batch in hand and
acknowledges it before the lease is released.

Each trigger goes through :class:`~runtime.processes.reaction.Reactions` (read the instance,
skip what it already reacted to, react, store state and outbox in one compare-and-set write,
carry the outbox out). A message is acknowledged only once every trigger of its batch went
through, so a crash at any point is followed by a redelivery that finds either nothing done
(and reacts the same way again, with the same ids) or a stored outbox (and sends it again,
changing nothing). Within a batch, the triggers of one instance are reacted to in order; the
instances are read in one batched read and their writes sent together
(:meth:`~runtime.processes.reaction.Reactions.react_runs`), and those that need more (an
outbox, a park, a conflict) go on concurrently, each by itself.

Two kinds of failure are told apart:

- the infrastructure (no worker answers, JetStream unavailable): retried in place with back-off,
  keeping the deliveries in progress, until it succeeds, the lease is lost or the replica stops;
  nothing is skipped and nothing overtakes it;
- the reaction itself (it raises, or its event does not decode): tried ``max_attempts`` times
  with back-off, then the trigger is parked (:mod:`.parking`), and every later trigger of the
  same instance is parked behind it, while the other instances go on.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ..client import Client
from ..domain.process_manager import ProcessManager
from ..errors import CqrsError
from ..log import get_logger
from ..observability import metrics
from ..ownership.leases import Lease
from ..wire.envelope import Commit
from .consumers import PartitionConsumer
from .instances import Instance, InstanceStore
from .layout import (
    PARTITIONED_STREAM,
    consumer_name,
    original,
    partition_subjects,
    partitions_caught_up,
    source_seq,
)
from .parking import ParkedStore
from .reaction import ReactionFailed, Reactions
from .settings import ProcessSettings
from .timers import Fired, TimerStore, fired_subject
from .triggers import Trigger, event_triggers, timer_trigger, unreadable_trigger
from .upgrade import (
    forward,
    legacy_floor,
    legacy_timers_consumer,
    retire_pinned_timers,
    start_sequence,
)

log = get_logger("runtime.processes.reactor")

CATCH_UP_POLL = 0.1  # seconds between looks at the consumers while waiting for them
FINISH_POLL = 0.01  # the same, once this replica has handled what is waited for
LAPSED_POLL = 0.05  # seconds between looks at a lease past its trusted time


class LeaseLapsed(Exception):
    """Raised (internally) when the partition's lease lapsed in the middle of a batch."""


class Reactor:
    """Runs one process manager in this replica: the partitions it owns and their reactions."""

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
        self.parked_now = 0  # triggers this replica parked, for tests and logs
        self.last_seq = 0  # the highest event sequence this replica acknowledged
        self.owned: set[int] = set()
        # Events the consumer of the release before partitions acknowledged (upgrade.py).
        self.legacy_floor = 0

    @property
    def reacted(self) -> int:
        """Triggers reacted to (not skipped), for benchmarks and tests."""
        return self.reactions.reacted

    def _consumer(self, partition: int, kind: str) -> PartitionConsumer:
        settings = self.settings
        name = self.manager.name
        if kind == "events":
            stream, subjects = (
                PARTITIONED_STREAM,
                partition_subjects(list(self.manager.aggregates), partition),
            )
            what = f"cqrs process manager {name}, partition {partition}"
        else:
            stream, subjects = settings.timers_stream, [fired_subject(name, partition)]
            what = f"cqrs process manager {name}, partition {partition}: fired timers"
        return PartitionConsumer(
            self.nc,
            stream=stream,
            name=consumer_name(name, partition, kind),
            subjects=subjects,
            description=what,
            deliver_all=kind != "events" or settings.start == "all",
            ack_wait=settings.ack_wait,
            max_ack_pending=max(1000, settings.batch * 2),
            # Short enough that a handoff (which waits for the fetch in hand) ends well within
            # the third of the lease TTL the coordinator gives it.
            fetch_timeout=min(settings.fetch_timeout, settings.lease_ttl / 6),
            # One owner reads a partition a batch at a time, so acknowledging a batch's last
            # event says the rest is done. (The timers stream is a work queue: explicit acks.)
            ack_all=kind == "events",
            timeout=settings.timeout,
        )

    async def start(self) -> None:
        """Create the consumers of every partition (those that exist keep their position).

        All of them, before the replica says it is ready and whoever owns them: a consumer
        that starts at new events created only when its partition is first taken would miss
        the events sent in between. A deployment upgraded from the release before partitions
        takes up where its consumer left off (:mod:`.upgrade`)."""
        settings, name = self.settings, self.manager.name
        js = self.nc.jetstream(timeout=settings.timeout)
        floor = await legacy_floor(js, settings.stream, name)
        start = None if floor is None else await start_sequence(js, settings.stream, floor)
        self.legacy_floor = floor or 0
        await retire_pinned_timers(self.nc, settings.timers_stream, name, settings.timeout)
        for partition in range(settings.partitions):
            for kind in ("events", "timers"):
                consumer = self._consumer(partition, kind)
                if kind == "events":
                    consumer.start_seq = start
                await consumer.create()
        await self._legacy_timers().create()

    def _legacy_timers(self) -> PartitionConsumer:
        settings = self.settings
        return legacy_timers_consumer(
            self.nc,
            self.manager.name,
            settings.timers_stream,
            fetch_timeout=min(settings.fetch_timeout, settings.lease_ttl / 6),
            ack_wait=settings.ack_wait,
            timeout=settings.timeout,
        )

    async def serve(self, lease: Lease, stopping: anyio.Event) -> None:
        """React to partition ``lease.partition`` while the lease is held, until ``stopping``
        is set (a handoff: the batch in hand is finished first) or the task is cancelled."""
        partition = lease.partition
        consumers = [self._consumer(partition, "events"), self._consumer(partition, "timers")]
        handlers: list[Callable[[list[Msg], Lease], Awaitable[Any]]] = [
            functools.partial(self._handle_batch, triggers=self._event_triggers),
            functools.partial(self._handle_batch, triggers=self._timer_triggers),
        ]
        if partition == 0:  # one reader of the timers fired in the old form (upgrade.py)
            js = self.nc.jetstream(timeout=self.settings.timeout)
            consumers.append(self._legacy_timers())
            handlers.append(
                lambda msgs, lease: self._retrying(
                    functools.partial(forward, js, msgs, self.settings.partitions), msgs, lease
                )
            )
        self.owned.add(partition)
        try:
            for consumer in consumers:
                await consumer.rewind()  # what the former owner did not acknowledge, in order
            fetching: set[anyio.CancelScope] = set()
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._interrupt, stopping, fetching)
                async with anyio.create_task_group() as tg:
                    for consumer, handle in zip(consumers, handlers, strict=True):
                        tg.start_soon(self._consume, consumer, lease, stopping, handle, fetching)
                outer.cancel_scope.cancel()  # the consumers are done: stop waiting to interrupt
        finally:
            self.owned.discard(partition)
            for consumer in consumers:
                with anyio.CancelScope(shield=True):
                    await consumer.stop()

    async def _interrupt(self, stopping: anyio.Event, fetching: set[anyio.CancelScope]) -> None:
        """On a handoff, cut the fetches waiting for messages short (a batch in hand is
        finished): a handoff then takes no longer than that batch. A message the server hands
        to a fetch cut short is simply not acknowledged: the next owner rewinds to it."""
        await stopping.wait()
        for scope in list(fetching):
            scope.cancel()

    # -- consuming -----------------------------------------------------------------------------

    async def _consume(
        self,
        consumer: PartitionConsumer,
        lease: Lease,
        stopping: anyio.Event,
        handle: Callable[[list[Msg], Lease], Awaitable[Any]],
        fetching: set[anyio.CancelScope],
    ) -> None:
        failures = 0
        # Until the coordinator hands the partition off (stopping) or drops it (cancelled,
        # lease.lost). A lease past its trusted time but not yet given up (renewals late under
        # load, a pause) reacts to nothing: a renewal in time trusts it again, a lost one ends
        # here; what was fetched meanwhile stays unacknowledged and comes back.
        while not stopping.is_set() and not lease.lost:
            if not lease.held():
                await anyio.sleep(LAPSED_POLL)
                continue
            try:
                with anyio.CancelScope() as scope:
                    fetching.add(scope)
                    if stopping.is_set():
                        break
                    msgs = await consumer.fetch(self.settings.batch)
                fetching.discard(scope)
                if scope.cancelled_caught:
                    break
            except CqrsError as exc:
                failures += 1
                self.log.warning("fetch_failed", consumer=consumer.name, error=exc.message)
                await anyio.sleep(self.settings.retry.delay(failures))
                continue
            failures = 0
            if not msgs:
                continue
            try:
                if not lease.held():
                    raise LeaseLapsed
                await handle(msgs, lease)
                await consumer.acknowledge(msgs)
            except* LeaseLapsed:
                # Given up unacknowledged: if the lease is trusted again, take the batch up
                # again from its first message, so nothing newer overtakes it.
                self.log.warning("partition_lease_lapsed", partition=lease.partition)
                if not lease.lost and not stopping.is_set():
                    await consumer.rewind()

    def _event_triggers(self, msg: Msg) -> list[Trigger]:
        raw = original(msg)
        if raw.seq <= self.legacy_floor:
            return []  # done by the release before partitions (upgrade.py)
        try:
            commit = Commit.from_message(raw, keep_encoded=True)
        except Exception as exc:  # an unreadable body is parked, never lost nor blocking
            return [unreadable_trigger(raw.subject, raw.seq, exc)]
        return event_triggers(self.manager, commit)

    def _timer_triggers(self, msg: Msg) -> list[Trigger]:
        fired_at = msg.metadata.timestamp  # when the server stored (fired) it
        return [timer_trigger(Fired.parse(msg.subject, msg.headers or {}, msg.data, fired_at))]

    async def _handle_batch(
        self, msgs: list[Msg], lease: Lease, *, triggers: Callable[[Msg], list[Trigger]]
    ) -> None:
        by_key: dict[str, list[Trigger]] = {}
        # Decoding is pure, so one retry scope covers the whole batch (what cannot be decoded
        # is a trigger with its error, parked later; a raise is a misconfigured stream).
        decoded = await self._retrying(functools.partial(_decode, triggers, msgs), msgs, lease)
        for trigger in decoded:
            by_key.setdefault(trigger.key, []).append(trigger)
        runs = list(by_key.values())
        # One batched read of every instance of the batch and their writes sent together;
        # what that cannot take (an outbox to carry out, a park, a conflict, a failure)
        # goes on per instance, concurrently, and in order within each.
        outcomes = await self._retrying(
            functools.partial(self.reactions.react_runs, runs), msgs, lease
        )
        limiter = anyio.CapacityLimiter(self.settings.concurrency)

        async def instance(
            key_triggers: list[Trigger], handled: int | None, stored: Instance | None
        ) -> None:
            async with limiter:
                if stored is not None:
                    key = key_triggers[0].key
                    carry = functools.partial(self.reactions.carry_out, key, stored)
                    await self._retrying(carry, msgs, lease)
                if handled is None:
                    run = functools.partial(self.reactions.react_run, key_triggers)
                    handled = await self._retrying(run, msgs, lease)
                for trigger in key_triggers[handled:]:
                    await self._react(trigger, msgs, lease)

        async with anyio.create_task_group() as tg:
            for key_triggers, (handled, stored) in zip(runs, outcomes, strict=True):
                if stored is not None or handled is None or handled < len(key_triggers):
                    tg.start_soon(instance, key_triggers, handled, stored)
        if msgs[0].metadata.stream == PARTITIONED_STREAM:
            # A partition's copies come in the event stream's order: the last is the highest.
            self.last_seq = max(self.last_seq, source_seq(msgs[-1]))

    async def caught_up(self, seq: int) -> bool:
        """Whether every event up to ``seq`` is acknowledged, by whichever replica."""
        js = self.nc.jetstream(timeout=self.settings.timeout)
        return await partitions_caught_up(js, self.manager.name, self.settings.partitions, seq)

    async def wait_for(self, seq: int) -> None:
        """Return once every event up to ``seq`` is acknowledged (by whichever replica).

        No event says so (the consumers live on the server), so the server is asked every
        :data:`CATCH_UP_POLL`, and every :data:`FINISH_POLL` once this replica has handled
        ``seq`` itself: the other partitions are then finishing their last batches."""
        asked: float | None = None  # when the server was last asked
        while True:
            now = anyio.current_time()
            if self.last_seq >= seq or asked is None or now - asked >= CATCH_UP_POLL:
                if await self.caught_up(seq):
                    return
                asked = now
            await anyio.sleep(FINISH_POLL)

    async def refresh(self) -> None:
        """Count the parked instances for the metrics (at each scrape; every replica reports
        the same count, read from the parked stream)."""
        if self.metrics is not None:
            counts = await self.parked.counts(self.manager.name)
            self.metrics.parked_instances.labels(self.manager.name).set(len(counts))

    async def _react(self, trigger: Trigger, msgs: list[Msg], lease: Lease) -> None:
        """React to ``trigger``; a reaction that keeps raising parks it (see the module doc)."""
        failures = 0
        while True:
            if not lease.held():
                raise LeaseLapsed  # another replica may own the instance now
            try:
                if not await self.reactions.react(trigger):
                    self._count_parked()  # parked behind the instance's first failure
                return
            except ReactionFailed as exc:
                failures += 1
                if failures >= self.settings.max_attempts or not exc.retry:
                    await self._retrying(
                        functools.partial(self._park, trigger, exc.error, failures), msgs, lease
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

    async def _retrying(
        self, attempt: Callable[[], Awaitable[Any]], msgs: list[Msg], lease: Lease
    ) -> Any:
        attempts = 0
        while True:
            if not lease.held():
                raise LeaseLapsed
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


async def _decode(fn: Callable[[Msg], list[Trigger]], msgs: list[Msg]) -> list[Trigger]:
    return [trigger for msg in msgs for trigger in fn(msg)]
