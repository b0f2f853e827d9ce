"""One aggregate instance as an actor: its commands run one at a time against its current state.

An actor costs no task while it is idle: its mailbox is filled by the command service and drained
by a task the :class:`~runtime.host.ActorHost` starts only when work arrives (the Akka dispatcher
model). That keeps a cached, idle aggregate down to its state plus a few fields.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from . import codec
from .domain import Aggregate, CommandContext
from .envelope import Commit, StoredEvent
from .errors import Conflict, CqrsError, Internal, SchemaError, Timeout
from .store import EventStore, WrongLastSequence

log = structlog.get_logger("runtime.actor")

Reply = Callable[[dict[str, Any] | CqrsError], Awaitable[None]]


@dataclass(slots=True)
class HostStats:
    """Counters of one actor host, for status output and tests."""

    handled: int = 0
    rejected: int = 0
    failed: int = 0
    conflicts_retried: int = 0


@dataclass(slots=True)
class CommandRequest:
    """A validated command on its way to an actor, with the callback that answers it."""

    command: str
    args: Any
    command_id: str
    correlation_id: str
    causation_id: str | None
    reply: Reply


class Actor:
    """The in-memory instance of one aggregate: state, version and recent command ids."""

    __slots__ = (
        "aggregate",
        "aggregate_id",
        "last_seq",
        "loaded",
        "mailbox",
        "recent",
        "running",
        "state",
        "store",
        "touched",
        "version",
    )

    def __init__(self, aggregate: Aggregate[Any], aggregate_id: str, store: EventStore) -> None:
        self.aggregate = aggregate
        self.aggregate_id = aggregate_id
        self.store = store
        self.state: Any = aggregate.initial
        self.version = 0
        self.last_seq = 0
        self.loaded = False
        self.recent: dict[str, int] = {}  # command id -> stream sequence of its commit
        self.mailbox: collections.deque[CommandRequest] | None = None
        self.running = False
        self.touched = 0.0

    # -- loading -------------------------------------------------------------------------------

    async def catch_up(self) -> None:
        """Fold every commit stored after the last one this actor has seen."""
        commits = await self.store.history(
            self.aggregate.name, self.aggregate_id, after_seq=self.last_seq
        )
        for commit in commits:
            self.apply_commit(commit)
        self.loaded = True

    def apply_commit(self, commit: Commit) -> None:
        state = self.state
        for stored in commit.events:
            state = self.aggregate.evolve(state, self.decode(stored, commit.seq))
        if commit.first_version != self.version + 1:
            log.warning(
                "version_gap",
                aggregate=self.aggregate.name,
                id=self.aggregate_id,
                expected=self.version + 1,
                found=commit.first_version,
                seq=commit.seq,
            )
        self.state = state
        self.version = commit.version
        self.last_seq = commit.seq
        self.remember(commit.command_id, commit.seq)

    def decode(self, stored: StoredEvent, seq: int) -> Any:
        if not self.aggregate.knows_event(stored.type):
            raise SchemaError(
                f"event type {stored.type!r} at stream sequence {seq} is not known to "
                f"aggregate {self.aggregate.name!r}",
                details={"type": stored.type, "seq": seq, "aggregate": self.aggregate.name},
            )
        try:
            return self.aggregate.decode_event(stored.type, stored.data)
        except CqrsError as exc:
            raise SchemaError(
                f"event {stored.type!r} at stream sequence {seq} cannot be decoded: {exc.message}",
                details={"type": stored.type, "seq": seq},
            ) from None

    def remember(self, command_id: str, seq: int) -> None:
        recent = self.recent
        recent[command_id] = seq
        while len(recent) > self.aggregate.remember_commands:
            del recent[next(iter(recent))]

    # -- handling ------------------------------------------------------------------------------

    async def handle(
        self, request: CommandRequest, max_retries: int, stats: HostStats
    ) -> dict[str, Any]:
        """Decide, append and apply one command; return its success reply.

        A concurrency conflict (another process appended first) folds the newer commits and
        decides again, up to ``max_retries`` times. A command id seen before returns the reply of
        its original commit instead of deciding again.
        """
        if not self.loaded:
            await self.catch_up()
        for _attempt in range(max_retries + 1):
            if request.command_id in self.recent:
                return await self.original_reply(request.command_id)
            ctx = CommandContext(
                aggregate=self.aggregate.name,
                aggregate_id=self.aggregate_id,
                command=request.command,
                command_id=request.command_id,
                correlation_id=request.correlation_id,
                causation_id=request.causation_id,
                now=datetime.now(UTC),
            )
            events = self.aggregate.decide(self.state, request.command, request.args, ctx)
            if not events:
                return self.reply(request.command_id, [])
            stored = [StoredEvent(self.aggregate.type_of(e), codec.to_builtins(e)) for e in events]
            commit = Commit(
                aggregate=self.aggregate.name,
                aggregate_id=self.aggregate_id,
                command=request.command,
                command_id=request.command_id,
                correlation_id=request.correlation_id,
                causation_id=request.causation_id,
                version=self.version + len(events),
                events=stored,
                recorded_at=ctx.now.isoformat(),
            )
            try:
                seq, duplicate = await self.store.append(commit, self.last_seq)
            except WrongLastSequence:
                # Someone appended first, or our own earlier attempt landed and its ack was lost.
                stats.conflicts_retried += 1
                await self.catch_up()
                continue
            except Timeout:
                await self.recover_after_timeout()
                if request.command_id in self.recent:
                    return await self.original_reply(request.command_id)
                continue
            if duplicate:
                await self.catch_up()
                if request.command_id in self.recent:
                    return await self.original_reply(request.command_id)
                raise Internal("JetStream reported a duplicate that is not in the history")
            state = self.state
            for event in events:
                state = self.aggregate.evolve(state, event)
            self.state = state
            self.version = commit.version
            self.last_seq = seq
            self.remember(request.command_id, seq)
            return self.reply(request.command_id, stored, seq=seq)
        raise Conflict(
            f"{self.aggregate.name}/{self.aggregate_id}: still conflicting after "
            f"{max_retries} retries",
            details={"aggregate": self.aggregate.name, "id": self.aggregate_id},
        )

    async def recover_after_timeout(self) -> None:
        """After an unacknowledged append the outcome is unknown: learn it from the stream."""
        try:
            await self.catch_up()
        except CqrsError:
            self.reset()
            raise Timeout("the commit's outcome is unknown: JetStream did not answer") from None

    def reset(self) -> None:
        """Forget the in-memory state; the next command reloads it from the stream."""
        self.state = self.aggregate.initial
        self.version = 0
        self.last_seq = 0
        self.loaded = False
        self.recent = {}

    def reply(
        self, command_id: str, events: list[StoredEvent], *, seq: int | None = None
    ) -> dict[str, Any]:
        return {
            "aggregate": self.aggregate.name,
            "id": self.aggregate_id,
            "version": self.version,
            "seq": self.last_seq if seq is None else seq,
            "command_id": command_id,
            "events": [e.to_wire() for e in events],
        }

    async def original_reply(self, command_id: str) -> dict[str, Any]:
        commit = await self.store.commit_at(self.recent[command_id])
        if commit is None:
            raise Internal(f"the commit of command {command_id} is gone from the stream")
        return commit.reply()
