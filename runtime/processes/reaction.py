"""Reacting to one trigger of one instance, exactly once in effect.

For every trigger (an event of a commit, or a fired timer) of instance ``key``:

1. read the instance entry; if it holds an outbox, carry that out first (an earlier reaction
   stored it and may have been cut short);
2. skip the trigger if the instance already reacted to it (an event at or below its position, a
   timer that is no longer the instance's running timer of that name);
3. if the instance is parked, park the trigger behind the others (:mod:`.parking`);
4. react, and store the new state, position, timers and the outbox in one compare-and-set write
   (on a conflict, start again from 1);
5. carry out the outbox: timer changes, then the commands, each with a deterministic command id
   (``<pm>-<trigger>-<n>``), the trigger as causation id, the triggering command's correlation
   id and the trigger's trace context; a worker that sees the same command id again answers with
   the first result. Then clear the outbox.

The consuming replicas and ``cqrs processes retry`` both react through this one class, so a
parked trigger replayed by an operator obeys the same exactly-once rules as a live one.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from msgspec.structs import replace

from ..client import Client
from ..domain.process_manager import CancelTimer, ProcessManager, SetTimer, TimerFired
from ..errors import Conflict, InvalidInput, Rejected, UnknownCommand
from ..log import get_logger
from .instances import CasConflict, Instance, InstanceStore, Outbox
from .parking import ParkedStore, parked_marker
from .timers import TimerStore, rfc3339
from .triggers import Trigger, derived_id

log = get_logger("runtime.processes.reaction")

MAX_CAS_ATTEMPTS = 50
UNREAD = object()  # a state not decoded yet


class ReactionFailed(Exception):
    """Raised (internally) when a reaction, or decoding what it reacts to, raises: the fault
    is in the process manager's code or in the data, not in the infrastructure."""

    def __init__(self, error: str, *, retry: bool = True) -> None:
        super().__init__(error)
        self.error = error
        self.retry = retry  # False: trying again cannot help (an event that does not decode)


def compact_timer_ops(
    ops: list[dict[str, Any]], running: dict[str, str]
) -> tuple[dict[str, Any], ...]:
    """The timer changes of several reactions, reduced to their net effect: the last change of
    each timer (a set replaces any earlier schedule), and nothing for a timer that was not
    running before them and ends cancelled (set, then cancelled, within the run)."""
    last: dict[str, dict[str, Any]] = {}
    for op in ops:
        last.pop(op["name"], None)  # keep the order of the last changes
        last[op["name"]] = op
    return tuple(op for op in last.values() if op["op"] == "set" or op["name"] in running)


class Reactions:
    """Reacts to triggers of one process manager's instances and carries the reactions out."""

    def __init__(
        self,
        manager: ProcessManager[Any],
        instances: InstanceStore,
        timers: TimerStore,
        parked: ParkedStore,
        client: Client,
    ) -> None:
        self.manager = manager
        self.instances = instances
        self.timers = timers
        self.parked = parked
        self.client = client
        self.log = log.bind(process_manager=manager.name)
        self.reacted = 0  # triggers reacted to (not skipped), for benchmarks and tests

    async def react(self, trigger: Trigger, *, unparking: bool = False) -> bool:
        """React to ``trigger`` once in effect; False when the instance is parked and the
        trigger was parked behind it instead. ``unparking`` (a retry) reacts despite the park.

        Raises :class:`ReactionFailed` when the reaction raises or the event does not decode.
        """
        name = self.manager.name
        for _ in range(MAX_CAS_ATTEMPTS):
            instance = await self.instances.get(name, trigger.key)
            if instance.outbox:
                await self.carry_out(trigger.key, instance)
                continue
            if self._done(instance, trigger):
                return True
            if instance.parked and not unparking:
                if await self.park(trigger, ""):
                    return False
                continue  # the park was cleared meanwhile: react after all
            if trigger.error:
                raise ReactionFailed(trigger.error, retry=False)
            stored, _ = self._reacted(instance, trigger)
            if stored is None:
                return True
            try:
                stored = await self.instances.put(
                    name, trigger.key, stored, self.manager.state_version
                )
            except CasConflict:
                continue
            self.reacted += 1
            if stored.outbox:
                await self.carry_out(trigger.key, stored)
            return True
        raise CasConflict(f"{name}.{trigger.key}: too many concurrent changes")

    async def react_run(self, triggers: list[Trigger]) -> int:
        """React to consecutive triggers of one instance with one read and one compare-and-set
        write (state, position, timers and the outbox of all of them), then carry the outbox
        out; how many of ``triggers``, from the first, were handled (reacted to or skipped).

        It stops before the first trigger that cannot simply be reacted to here (a parked
        instance, an event that does not decode, a reaction that raises): the caller takes
        those one at a time, with their retries and parking. The combined write is safe for
        the same reason a single one is: until it lands nothing was sent, and once it lands
        its outbox is carried out by whoever finds it, with each command's own id.
        """
        if not triggers:
            return 0
        name = self.manager.name
        key = triggers[0].key
        instance = await self.instances.get(name, key)
        if instance.outbox:
            await self.carry_out(key, instance)
            instance = await self.instances.get(name, key)
        if instance.parked:
            return 0
        handled, changed, after = self._fold(instance, triggers)
        if after is None:
            return handled
        try:
            stored = await self.instances.put(name, key, after, self.manager.state_version)
        except CasConflict:
            return 0  # changed meanwhile (a retry, a takeover): one at a time from here
        self.reacted += changed
        if stored.outbox:
            await self.carry_out(key, stored)
        return handled

    async def react_runs(
        self, runs: list[list[Trigger]]
    ) -> list[tuple[int | None, Instance | None]]:
        """:meth:`react_run` for the runs of several instances (one run per instance key) at
        once: one batched read of all their entries, the reactions, then all the
        compare-and-set writes sent together. Nothing is carried out here.

        For each run: how many of its triggers, from the first, were handled (None: the
        instance needs the ordinary way, :meth:`react_run`, because its entry holds an
        outbox, it is parked, or its write conflicted or failed: nothing of it is done then,
        or what landed is found by the next read), and the stored instance whose outbox the
        caller carries out next (None when there is none). The writes are independent (one
        entry each), so their order does not matter; within an instance, as in
        :meth:`react_run`, the run's reactions are folded into one write.
        """
        name = self.manager.name
        keys = [run[0].key for run in runs]
        read = await self.instances.get_many(name, keys)
        results: list[tuple[int | None, Instance | None]] = [(None, None)] * len(runs)
        writes: list[tuple[int, int, int, Instance]] = []  # run index, handled, changed, entry
        for index, (key, run) in enumerate(zip(keys, runs, strict=True)):
            instance = read[key]
            if instance.outbox or instance.parked:
                continue  # carried out, or parked behind, by react_run
            handled, changed, after = self._fold(instance, run)
            if after is None:
                results[index] = (handled, None)
            else:
                writes.append((index, handled, changed, after))
        if not writes:
            return results
        entries = [(keys[index], after) for index, _, _, after in writes]
        stored = await self.instances.put_many(name, entries, self.manager.state_version)
        for (index, handled, changed, _), outcome in zip(writes, stored, strict=True):
            if isinstance(outcome, Exception):
                if not isinstance(outcome, CasConflict):
                    self.log.debug("instance_write_failed", key=keys[index], error=repr(outcome))
                continue  # (None, None): read again by react_run
            self.reacted += changed
            results[index] = (handled, outcome if outcome.outbox else None)
        return results

    def _fold(
        self, instance: Instance, triggers: list[Trigger]
    ) -> tuple[int, int, Instance | None]:
        """React to consecutive ``triggers`` of ``instance`` in memory: how many of them, from
        the first, were handled (reacted to or skipped), how many changed the instance, and
        the entry to store for them (None when none changed it): the last state, position and
        timers, and one outbox with all their commands and the net effect on the timers.

        It stops before the first trigger that cannot simply be reacted to (an event that
        does not decode, a reaction that raises)."""
        current, handled, changed = instance, 0, 0
        state = UNREAD  # the state of ``current``, once decoded: each reaction's goes to the next
        commands: list[dict[str, Any]] = []
        ops: list[dict[str, Any]] = []
        for trigger in triggers:
            if trigger.error:
                break
            if self._done(current, trigger):
                handled += 1
                continue
            try:
                after, state = self._reacted(current, trigger, state)
            except ReactionFailed:
                break
            handled += 1
            if after is not None:
                commands += after.outbox.commands
                ops += after.outbox.timers
                current, changed = after, changed + 1
        if not changed:
            return handled, 0, None
        outbox = Outbox(tuple(commands), compact_timer_ops(ops, instance.timers))
        return handled, changed, replace(current, outbox=outbox)

    def _reacted(
        self, instance: Instance, trigger: Trigger, state: Any = UNREAD
    ) -> tuple[Instance | None, Any]:
        """The instance after the reaction, outbox included (None when nothing changes), and
        its state as the reaction returned it. ``state``: the instance's, when the caller has
        it decoded already."""
        name = self.manager.name
        try:
            if state is UNREAD:
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
            encoded = self.manager.encode_state(reaction.state)
            args = [self.manager.encode_state(c.args) for c in reaction.commands]
        except Exception as exc:  # the reaction's own fault, whatever it raised
            raise ReactionFailed(f"{type(exc).__name__}: {exc}") from exc
        timers = instance.timers  # copied before any change: the instance read stays as read
        if trigger.timer is not None or reaction.timers:
            timers = dict(timers)
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
                        "correlation_id": trigger.correlation_id,
                        "trace": trigger.trace,
                    }
                )
            elif isinstance(op, CancelTimer) and timers.pop(op.name, None) is not None:
                ops.append({"op": "cancel", "name": op.name})
        unchanged = reaction.state == state and not ops and not reaction.commands
        if unchanged and trigger.timer is None:
            return None, state  # nothing changed: a redelivery of it would change nothing either
        commands = tuple(
            {
                "aggregate": c.aggregate,
                "id": c.id,
                "command": c.command,
                "args": args[index],
                "command_id": f"{name}-{trigger.id}-{index}",
                "causation_id": trigger.id,
                "correlation_id": trigger.correlation_id,
                "trace": trigger.trace,
            }
            for index, c in enumerate(reaction.commands)
        )
        after = replace(
            instance,
            state=encoded,
            position=instance.position if trigger.meta is None else trigger.position,
            timers=timers,
            outbox=Outbox(commands, tuple(ops)),
        )
        return after, reaction.state

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

    async def park(self, trigger: Trigger, error: str, attempts: int = 0) -> bool:
        """Park ``trigger`` in the dead-letter stream: mark the instance parked (or note the
        trigger as the last one parked), then record the trigger. False when an operator
        cleared the park meanwhile: then the trigger is to be reacted to after all.

        The mark is written first: an operator's retry clears it only once it replayed the
        trigger the mark names. Should the clear still come between the mark and the record
        (the record lagging), the instance is found unparked afterwards and the trigger reacted
        to here, in order; its record is then a duplicate a later retry finds already done.
        """
        name = self.manager.name
        for _ in range(MAX_CAS_ATTEMPTS):
            instance = await self.instances.get(name, trigger.key)
            if instance.outbox:
                await self.carry_out(trigger.key, instance)
                continue
            marker = parked_marker(instance.parked, trigger.id, error)
            if marker != instance.parked:
                try:
                    await self.instances.put(
                        name,
                        trigger.key,
                        replace(instance, parked=marker),
                        self.manager.state_version,
                    )
                except CasConflict:
                    continue
            await self.parked.record(name, trigger, error, attempts)
            self.log.warning(
                "process_trigger_parked",
                key=trigger.key,
                trigger=trigger.id,
                first=marker["first"] == trigger.id,
                error=error or None,
            )
            return (await self.instances.get(name, trigger.key)).parked is not None
        raise CasConflict(f"{name}.{trigger.key}: too many concurrent changes")

    async def carry_out(self, key: str, instance: Instance) -> None:
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
                    trace=op.get("trace"),
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
                trace=command.get("trace") or None,
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
