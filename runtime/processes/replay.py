"""What an operator does with parked instances: replay their triggers in order, or drop them.

``retry`` replays an instance's parked triggers oldest first through the same
:class:`~runtime.processes.reaction.Reactions` the replicas use, so each is reacted to once in
effect: a trigger the instance already reacted to is skipped, an outbox a crashed retry left is
sent again with the same command ids. Each trigger's record is removed once it is replayed, so a
retry cut short (a crash, a reaction that fails again) resumes where it stopped. The park is
cleared by compare-and-set once the trigger its marker names last is replayed: a trigger the
replicas park meanwhile changes the marker, and the retry replays that one too.

``discard`` removes the records and clears the park; each dropped trigger is logged
(``process_trigger_discarded``) with what it was and its error.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from msgspec.structs import replace
from nats.aio.client import Client as NATS

from ..client import Client
from ..domain.process_manager import ProcessManager
from ..errors import NotFound, StillFailing
from ..log import get_logger
from ..transport.direct_get import DirectGetter
from ..wire.envelope import Commit
from .instances import CasConflict, Instance, InstanceStore
from .parking import ParkedInstance, ParkedStore, ParkedTrigger
from .reaction import ReactionFailed, Reactions
from .settings import ProcessSettings
from .timers import TimerStore
from .triggers import Trigger, event_triggers, parked_timer

log = get_logger("runtime.processes.replay")

RECORD_WAIT = 3.0  # seconds to wait for a trigger a replica marked parked but has not recorded
POLL = 0.1


class Replay:
    """Lists, retries and discards the parked instances of one process manager."""

    def __init__(self, nc: NATS, manager: ProcessManager[Any], settings: ProcessSettings) -> None:
        self.nc = nc
        self.manager = manager
        self.settings = settings
        self.instances = InstanceStore(nc, bucket=settings.bucket)
        self.parked = ParkedStore(nc, settings.parked_stream, timeout=settings.timeout)
        timers = TimerStore(nc, stream=settings.timers_stream, partitions=settings.partitions)
        client = Client(nc, timeout=settings.command_timeout)
        self.reactions = Reactions(manager, self.instances, timers, self.parked, client)
        self.events = DirectGetter(nc, settings.stream, timeout=settings.timeout)

    async def __aenter__(self) -> Replay:
        await self.instances.start()
        await self.parked.start()
        await self.events.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.events.stop()

    async def parked_instances(self) -> list[ParkedInstance]:
        return await self.parked.instances(self.manager.name)

    async def keys(self, key: str | None) -> list[str]:
        """``key`` (which must be parked), or every parked key."""
        parked = sorted(await self.parked.counts(self.manager.name))
        if key is None:
            return parked
        instance = await self.instances.get(self.manager.name, key)
        if key not in parked and instance.parked is None:
            raise NotFound(
                f"{self.manager.name} has no parked instance {key!r}", details={"key": key}
            )
        return [key]

    async def retry(self, key: str) -> list[str]:
        """Replay the parked triggers of instance ``key`` in order and clear its park; the ids
        of the triggers replayed. Raises :class:`StillFailing` when one fails again."""
        replayed: list[str] = []
        while True:
            for parked in await self.parked.triggers(self.manager.name, key):
                await self._replay(key, parked)
                await self.parked.remove(parked)
                replayed.append(parked.trigger)
            instance = await self._settled(key, replayed)
            if instance is None:
                break  # someone else cleared it
            try:
                await self._clear(key, instance, [])
            except CasConflict:
                continue  # parked behind meanwhile: replay that too
            if not await self.parked.triggers(self.manager.name, key):
                break
        log.info(
            "process_instance_retried",
            process_manager=self.manager.name,
            key=key,
            triggers=replayed,
        )
        return replayed

    async def discard(self, key: str) -> list[dict[str, Any]]:
        """Drop the parked triggers of instance ``key`` and clear its park; what was dropped."""
        dropped: list[dict[str, Any]] = []
        while True:
            for parked in await self.parked.triggers(self.manager.name, key):
                await self.parked.remove(parked)
                dropped.append(parked.body)
                log.warning(
                    "process_trigger_discarded",
                    process_manager=self.manager.name,
                    key=key,
                    trigger=parked.trigger,
                    kind=parked.body.get("kind"),
                    seq=parked.body.get("seq"),
                    index=parked.body.get("index"),
                    error=parked.error or None,
                )
            instance = await self._settled(key, [d["trigger"] for d in dropped])
            if instance is None:
                return dropped
            try:
                await self._clear(key, instance, dropped)
            except CasConflict:
                continue
            return dropped

    async def _settled(self, key: str, handled: list[str]) -> Instance | None:
        """The instance once the trigger its marker names last is among ``handled`` (None when
        it is not parked). A replica marks before it records, so the record may lag a moment;
        after :data:`RECORD_WAIT` it is taken as handled by an earlier, interrupted run."""
        deadline = time.monotonic() + RECORD_WAIT
        while True:
            instance = await self.instances.get(self.manager.name, key)
            if instance.parked is None:
                return None
            if instance.parked.get("last") in handled or time.monotonic() > deadline:
                return instance
            if await self.parked.triggers(self.manager.name, key):
                return instance  # recorded now: the caller handles it next
            await anyio.sleep(POLL)

    async def _clear(self, key: str, instance: Instance, dropped: list[dict[str, Any]]) -> None:
        timers = dict(instance.timers)
        for body in dropped:  # a dropped timer no longer runs
            timer = body.get("timer") or {}
            if timer and timers.get(timer["name"]) == timer["id"]:
                del timers[timer["name"]]
        cleared = replace(instance, parked=None, timers=timers)
        await self.instances.put(self.manager.name, key, cleared, self.manager.state_version)

    async def _replay(self, key: str, parked: ParkedTrigger) -> None:
        for trigger in await self._triggers(parked):
            try:
                await self.reactions.react(trigger, unparking=trigger.key == key)
            except ReactionFailed as exc:
                raise StillFailing(
                    f"{self.manager.name}.{key}: {trigger.id} still fails: {exc.error}",
                    details={"key": key, "trigger": trigger.id, "error": exc.error},
                ) from None

    async def _triggers(self, parked: ParkedTrigger) -> list[Trigger]:
        body = parked.body
        if body.get("kind") == "timer":
            return [parked_timer(body)]
        raw = await self.events.get(int(body["seq"]))
        if raw is None:
            raise NotFound(f"event stream message {body['seq']} is gone", details=body)
        try:
            commit = Commit.from_message(raw, keep_encoded=True)
        except Exception as exc:  # still unreadable: it stays parked
            raise StillFailing(
                f"{self.manager.name}.{parked.body['key']}: {parked.trigger} still does not "
                f"read: {type(exc).__name__}: {exc}",
                details={"trigger": parked.trigger},
            ) from None
        found = event_triggers(self.manager, commit)
        index = int(body["index"])
        return found if index < 0 else [t for t in found if t.index == index]
