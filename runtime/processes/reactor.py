"""One process manager replica: it consumes events and fired timers, reacts, and carries the
reactions out exactly once.

For every trigger (an event of a commit, or a fired timer) of instance ``key``:

1. read the instance entry; if it holds an outbox, carry that out first (an earlier reaction
   stored it and may have been cut short);
2. skip the trigger if the instance already reacted to it (an event at or below its position, a
   timer that is no longer the instance's running timer of that name);
3. react, and store the new state, position, timers and the outbox in one compare-and-set write
   (on a conflict, start again from 1);
4. carry out the outbox: timer changes, then the commands, each with a deterministic command id
   (``<pm>-<trigger>-<n>``), the trigger as causation id and the triggering command's correlation
   id; a worker that sees the same command id again answers with the first result. Then clear
   the outbox.

A message is acknowledged only once every trigger of its batch went through those steps, so a
crash at any point is followed by a redelivery that finds either nothing done (and reacts the
same way again, with the same ids) or a stored outbox (and sends it again, changing nothing).
Within a batch, different instances react concurrently and the triggers of one instance in
order. A failure (no worker answers, JetStream unavailable, a reaction that raises) is retried
in place with back-off, keeping the deliveries in progress, until it succeeds or the replica
stops: nothing is skipped and nothing overtakes it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import anyio
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ..client import Client
from ..domain.process_manager import CancelTimer, ProcessManager, SetTimer, TimerFired
from ..domain.projection import EventMeta
from ..errors import Conflict, CqrsError, InvalidInput, Rejected, UnknownCommand
from ..log import get_logger
from ..read.consumer import commit_of
from ..transport.streams import StreamSettings, ensure_event_stream
from .instances import CasConflict, Instance, InstanceStore, Outbox
from .pinned import PinnedConsumer
from .settings import ProcessSettings
from .timers import Fired, TimerStore, fired_subject, rfc3339

log = get_logger("runtime.processes.reactor")

MAX_CAS_ATTEMPTS = 50


def consumer_name(manager: str, kind: str = "events") -> str:
    return f"cqrs-pm-{manager}" if kind == "events" else f"cqrs-pm-{manager}-timers"


@dataclass(frozen=True, slots=True)
class Trigger:
    """One thing an instance reacts to: an event (with its meta) or a fired timer."""

    key: str
    id: str  # e<seq>-<index> or the timer's id: the root of command and timer ids
    correlation_id: str
    event: Any = None
    meta: EventMeta | None = None
    timer: Fired | None = None

    @property
    def position(self) -> tuple[int, int]:
        assert self.meta is not None
        return (self.meta.seq, int(self.id.rsplit("-", 1)[1]))


def derived_id(manager: str, key: str, trigger: str, index: int) -> str:
    """A timer's id: the same for the same reaction, unique across instances and triggers."""
    digest = hashlib.blake2b(f"{manager}/{key}/{trigger}/{index}".encode(), digest_size=10)
    return "t" + digest.hexdigest()


class Reactor:
    """Runs one process manager: its two pinned consumers and the reactions they trigger."""

    def __init__(
        self,
        nc: NATS,
        manager: ProcessManager[Any],
        settings: ProcessSettings,
        instances: InstanceStore,
        timers: TimerStore,
    ) -> None:
        self.nc = nc
        self.manager = manager
        self.settings = settings
        self.instances = instances
        self.timers = timers
        self.client = Client(nc, timeout=settings.command_timeout)
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
        self.reacted = 0  # triggers reacted to (not skipped), for benchmarks and tests
        self.last_seq = 0  # the last event sequence acknowledged
        self._advanced = anyio.Event()

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
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._consume, self.events, self._event_triggers)
            tg.start_soon(self._consume, self.fired, self._timer_triggers)

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
        commit = commit_of(msg)
        found = []
        for index, stored in enumerate(commit.events):
            if not self.manager.handles(stored.type, commit.aggregate):
                continue
            meta = EventMeta.of(commit, index)
            decoded = self.manager.decode(stored.type, stored.data, meta)
            if decoded is not None:
                key, event = decoded
                trigger_id = f"e{commit.seq}-{index}"
                found.append(Trigger(key, trigger_id, commit.correlation_id, event, meta))
        return found

    def _timer_triggers(self, msg: Msg) -> list[Trigger]:
        fired_at = msg.metadata.timestamp  # when the server stored (fired) it
        fired = Fired.parse(msg.subject, msg.headers or {}, msg.data, fired_at)
        return [Trigger(fired.key, fired.id, fired.correlation_id, timer=fired)]

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
                    await self._retrying(functools.partial(self._react, trigger), msgs)

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
            for msg in msgs:  # keep the deliveries ours while we retry
                try:
                    await msg.in_progress()
                except Exception as exc:
                    self.log.debug("in_progress_failed", error=repr(exc))
            await anyio.sleep(self.settings.retry.delay(attempts))

    # -- reacting ------------------------------------------------------------------------------

    async def _react(self, trigger: Trigger) -> None:
        name = self.manager.name
        for _ in range(MAX_CAS_ATTEMPTS):
            instance = await self.instances.get(name, trigger.key)
            if instance.outbox:
                await self._carry_out(trigger.key, instance)
                continue
            if self._done(instance, trigger):
                return
            state = (
                self.manager.initial
                if instance.state is None
                else self.manager.decode_state(instance.state)
            )
            if trigger.timer is not None:
                fired = trigger.timer
                what = TimerFired(fired.name, fired.key, fired.due, fired.data, fired.fired_at)
                reaction = self.manager.react(state, what)
            else:
                reaction = self.manager.react(state, trigger.event, trigger.meta)
            timers = dict(instance.timers)
            if trigger.timer is not None:
                timers.pop(trigger.timer.name, None)
            ops = []
            for index, op in enumerate(reaction.timers):
                if isinstance(op, SetTimer):
                    timer_id = derived_id(name, trigger.key, trigger.id, index)
                    timers[op.name] = timer_id
                    ops.append(
                        {
                            "op": "set",
                            "name": op.name,
                            "id": timer_id,
                            "at": rfc3339(op.at),
                            "data": op.data,
                        }
                    )
                elif isinstance(op, CancelTimer) and timers.pop(op.name, None) is not None:
                    ops.append({"op": "cancel", "name": op.name})
            unchanged = reaction.state == state and not ops and not reaction.commands
            if unchanged and trigger.timer is None:
                return  # nothing changed: a redelivery of it would change nothing either
            commands = tuple(
                {
                    "aggregate": c.aggregate,
                    "id": c.id,
                    "command": c.command,
                    "args": self.manager.encode_state(c.args),
                    "command_id": f"{name}-{trigger.id}-{index}",
                }
                for index, c in enumerate(reaction.commands)
            )
            stored = replace(
                instance,
                state=self.manager.encode_state(reaction.state),
                position=instance.position if trigger.meta is None else trigger.position,
                timers=timers,
                outbox=Outbox(commands, tuple(ops)),
            )
            try:
                stored = await self.instances.put(
                    name,
                    trigger.key,
                    self._with_trigger(stored, trigger),
                    self.manager.state_version,
                )
            except CasConflict:
                continue
            self.reacted += 1
            if stored.outbox:
                await self._carry_out(trigger.key, stored)
            return
        raise CasConflict(f"{name}.{trigger.key}: too many concurrent changes")

    def _with_trigger(self, instance: Instance, trigger: Trigger) -> Instance:
        """Remember the trigger's correlation and causation on the commands to send."""
        commands = tuple(
            {**c, "causation_id": trigger.id, "correlation_id": trigger.correlation_id}
            for c in instance.outbox.commands
        )
        timers = tuple(
            {**t, "correlation_id": trigger.correlation_id} for t in instance.outbox.timers
        )
        return replace(instance, outbox=Outbox(commands, timers))

    def _done(self, instance: Instance, trigger: Trigger) -> bool:
        if trigger.timer is not None:
            current = instance.timers.get(trigger.timer.name)
            if current != trigger.timer.id:
                self.log.info(
                    "timer_ignored", key=trigger.key, timer=trigger.timer.name, id=trigger.id
                )
                return True
            return False
        return trigger.position <= instance.position

    async def _carry_out(self, key: str, instance: Instance) -> None:
        """Apply an outbox's timer changes, send its commands, then clear it (compare-and-set:
        if someone else cleared it first, that is as good)."""
        name = self.manager.name
        for op in instance.outbox.timers:
            if op["op"] == "set":
                await self.timers.set(
                    name,
                    key,
                    op["name"],
                    timer_id=op["id"],
                    at=datetime.fromisoformat(op["at"]),
                    data=op.get("data"),
                    correlation_id=op.get("correlation_id", ""),
                )
            else:
                await self.timers.cancel(name, key, op["name"])
        for command in instance.outbox.commands:
            await self._send(command)
        # On a conflict another reaction read the outbox and carried it out too: same ids, no harm.
        with contextlib.suppress(CasConflict):
            await self.instances.put(
                name, key, replace(instance, outbox=Outbox()), self.manager.state_version
            )

    async def _send(self, command: dict[str, Any]) -> None:
        bound = self.log.bind(
            aggregate=command["aggregate"],
            id=command["id"],
            command=command["command"],
            command_id=command["command_id"],
        )
        try:
            result = await self.client.send(
                command["aggregate"],
                command["id"],
                command["command"],
                command.get("args"),
                command_id=command["command_id"],
                correlation_id=command.get("correlation_id") or None,
                causation_id=command.get("causation_id"),
            )
        except Rejected as exc:
            # A business answer, not a fault: the aggregate decided against it (e.g. a cancel
            # that lost the race with the payment). Retrying would get the same answer.
            bound.info("process_command_rejected", rule=exc.details.get("rule"), error=exc.message)
            return
        except (InvalidInput, UnknownCommand, Conflict) as exc:
            # A reaction that sends what no worker can accept: a bug to fix in the reaction,
            # reported loudly; retrying the same command would get the same answer.
            bound.error("process_command_refused", code=exc.code, error=exc.message)
            return
        bound.info("process_command_sent", seq=result.seq, version=result.version)


async def _sync(fn: Callable[[Msg], list[Trigger]], msg: Msg) -> list[Trigger]:
    return fn(msg)
