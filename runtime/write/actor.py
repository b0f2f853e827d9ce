"""One aggregate instance as an actor: its commands run one at a time against its current state.

An actor costs no task while it is idle: its mailbox is filled by the command service and drained
by a task the :class:`~runtime.write.host.ActorHost` starts only when work arrives (the Akka
dispatcher model). That keeps a cached, idle aggregate down to its state plus a few fields.

A cold actor loads from the aggregate's newest usable snapshot and the commits after it (see
:mod:`runtime.write.snapshots`), or from the full history when there is none.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry.trace import Span

from ..domain.aggregate import Aggregate, CommandContext
from ..errors import Conflict, CqrsError, Internal, Rejected, Timeout
from ..log import get_logger
from ..observability.metrics import AggregateMetrics
from ..observability.tracing import current_w3c, span_or_nothing, tracer
from ..ownership.leases import Lease
from ..wire import codec
from ..wire.envelope import Commit, StoredEvent, command_reply
from ..wire.idempotency import fingerprint as command_fingerprint
from ..wire.idempotency import id_hash
from .command_memory import CommandMemory
from .snapshots import SnapshotStore
from .store import EventStore, WrongLastSequence

log = get_logger("runtime.write.actor")

Reply = Callable[[dict[str, Any] | CqrsError], Awaitable[None]]


@dataclass(slots=True)
class HostStats:
    """Counters of one actor host, for status output and tests."""

    handled: int = 0
    rejected: int = 0
    failed: int = 0
    conflicts_retried: int = 0
    fence_checks: int = 0  # decisions that appended nothing, confirmed against the stream
    fence_catch_ups: int = 0  # ... of which found the state stale and decided again


@dataclass(slots=True)
class CommandRequest:
    """A validated command on its way to an actor, with the callback that answers it."""

    command: str
    args: Any
    command_id: str
    correlation_id: str
    causation_id: str | None
    reply: Reply
    done: Callable[[], None] | None = None  # runs once the reply is sent (or failed)
    lease: Lease | None = None  # the partition lease it arrived under (None: fenced mode)
    span: Span | None = None  # the receipt span, while an OpenTelemetry SDK is installed
    trace_headers: dict[str, str] | None = None  # the request's W3C headers, for the commit
    received: float = 0.0  # time.perf_counter() at receipt, while metrics are on


class Actor:
    """The in-memory instance of one aggregate: state, version and recent command ids."""

    __slots__ = (
        "aggregate",
        "aggregate_id",
        "last_seq",
        "loaded",
        "mailbox",
        "owner",
        "recent",
        "running",
        "snapshot_rev",
        "snapshot_version",
        "snapshots",
        "state",
        "store",
        "touched",
        "version",
    )

    def __init__(
        self,
        aggregate: Aggregate[Any],
        aggregate_id: str,
        store: EventStore,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self.aggregate = aggregate
        self.aggregate_id = aggregate_id
        self.store = store
        self.snapshots = snapshots
        self.snapshot_rev = 0  # KV revision of the newest snapshot known (0: none)
        self.snapshot_version = 0  # the aggregate version that snapshot holds
        self.state: Any = aggregate.initial
        self.version = 0
        self.last_seq = 0
        self.loaded = False
        self.recent: CommandMemory | None = None  # the last commands (see command_memory.py)
        self.owner: Lease | None = None  # the lease under which the state was last confirmed
        self.mailbox: collections.deque[CommandRequest] | None = None
        self.running = False
        self.touched = 0.0

    # -- loading -------------------------------------------------------------------------------

    async def catch_up(self) -> None:
        """Fold every commit stored after the last one this actor has seen.

        The first load starts from the aggregate's snapshot when there is a usable one.
        """
        if (
            not self.loaded
            and self.last_seq == 0
            and self.snapshots is not None
            and self.aggregate.snapshot_every is not None
            and await self.restore(self.snapshots)
        ):
            self.loaded = True
            return
        commits = await self.store.history(
            self.aggregate.name, self.aggregate_id, after_seq=self.last_seq
        )
        for commit in commits:
            self.apply_commit(commit)
        self.loaded = True

    async def restore(self, snapshots: SnapshotStore) -> bool:
        """Load from the snapshot and the commits after it; False: fold the full history instead.

        The aggregate's newest commit is read first, through the stream's subject index, because
        it settles most loads cheaply: no commit is a new aggregate, a first commit that is also
        the newest is the whole history, and an aggregate younger than ``snapshot_every`` events
        cannot have a snapshot, so creating and loading small aggregates never touches the
        bucket. Otherwise it says whether the snapshot is current (nothing more to read), behind
        (read the commits after it) or does not line up with the stream (ignore it).
        """
        newest = await self.store.last_commit(self.aggregate.name, self.aggregate_id)
        if newest is None:
            return True
        if newest.first_version == 1:
            self.apply_commit(newest)
            return True
        if newest.version < (self.aggregate.snapshot_every or 0):
            return False
        read = await snapshots.load(self.aggregate, self.aggregate_id)
        self.snapshot_rev = read.revision
        snapshot = read.snapshot
        if snapshot is None:
            return False
        if snapshot.seq > newest.seq or (
            snapshot.seq == newest.seq and snapshot.version != newest.version
        ):
            self.ignore_snapshot("it does not line up with the stream", seq=snapshot.seq)
            return False
        self.state = snapshot.state
        self.version = self.snapshot_version = snapshot.version
        self.last_seq = snapshot.seq
        self.recent = CommandMemory.of(self.aggregate.remember_commands, snapshot.recent)
        if snapshot.seq == newest.seq:
            return True
        tail = await self.store.history(
            self.aggregate.name, self.aggregate_id, after_seq=snapshot.seq
        )
        if not tail or tail[0].first_version != snapshot.version + 1:
            self.ignore_snapshot("the commits after it do not continue it", seq=snapshot.seq)
            self.forget_state()
            return False
        for commit in tail:
            self.apply_commit(commit)
        return True

    def ignore_snapshot(self, reason: str, **details: Any) -> None:
        log.warning(
            "snapshot_ignored",
            aggregate=self.aggregate.name,
            id=self.aggregate_id,
            reason=reason,
            **details,
        )

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
        """The event object of a stored event, upcast to its current version."""
        return self.aggregate.decode_stored(stored.type, stored.data, seq=seq)

    def remember(self, command_id: str, seq: int) -> None:
        self.remember_hash(id_hash(command_id), seq)

    def remember_hash(self, hashed: int, seq: int) -> None:
        if self.recent is None:
            self.recent = CommandMemory(self.aggregate.remember_commands)
        self.recent.add(hashed, seq)

    # -- handling ------------------------------------------------------------------------------

    async def handle(
        self,
        request: CommandRequest,
        max_retries: int,
        stats: HostStats,
        metrics: AggregateMetrics | None = None,
    ) -> dict[str, Any]:
        """Decide, append and apply one command; return its success reply.

        A concurrency conflict (another process appended first) folds the newer commits and
        decides again, up to ``max_retries`` times. A command id seen before returns the reply of
        its original commit instead of deciding again (``conflict`` if it was another command).

        A decision that appends nothing (a no-op or a rejection) has no expected-sequence check
        to catch a stale state, so it is confirmed against the aggregate's newest stored sequence
        (the fence) unless the state was read from the stream after this command arrived, or
        this worker provably owns the aggregate: it holds the partition's lease, trusts it by its
        monotonic clock, and has confirmed this actor's state under that same lease. On a
        mismatch the actor catches up and decides again.

        With tracing on, decide and append are spans under the request's (the host makes it
        current), and the commit stores the append span's trace context; with it off, the
        request's own ``traceparent`` is stored as it came.
        """
        lease = request.lease
        fresh = False  # the state was read from the stream after this command arrived
        if not self.loaded:
            await self.catch_up()
            self.confirmed(lease)
            fresh = True
        fingerprint = command_fingerprint(request.command, request.args)
        hashed = id_hash(request.command_id)
        t = tracer() if request.span is not None else None
        for _attempt in range(max_retries + 1):
            seen = self.recent.find(hashed, self.last_seq) if self.recent is not None else None
            if seen is not None:
                known = await self.known_reply(seen, request.command_id, fingerprint)
                if known is not None:
                    return known
            now = datetime.now(UTC)

            def context(now: datetime = now) -> CommandContext:
                return CommandContext(
                    aggregate=self.aggregate.name,
                    aggregate_id=self.aggregate_id,
                    command=request.command,
                    command_id=request.command_id,
                    correlation_id=request.correlation_id,
                    causation_id=request.causation_id,
                    now=now,
                )

            try:
                with span_or_nothing(t, "decide", self.span_attributes, request):
                    events = self.aggregate.decide(
                        self.state, request.command, request.args, context
                    )
            except Rejected:
                if not fresh and await self.fenced(lease, stats):
                    fresh = True
                    continue
                raise
            if not events:
                if not fresh and await self.fenced(lease, stats):
                    fresh = True
                    continue
                return self.reply(request.command_id, [])
            stored = [StoredEvent(self.aggregate.type_of(e), codec.to_builtins(e)) for e in events]
            with span_or_nothing(t, "append", self.span_attributes, request) as span:
                commit = Commit(
                    aggregate=self.aggregate.name,
                    aggregate_id=self.aggregate_id,
                    command=request.command,
                    command_id=request.command_id,
                    correlation_id=request.correlation_id,
                    causation_id=request.causation_id,
                    version=self.version + len(events),
                    events=stored,
                    recorded_at=now.isoformat(),
                    fingerprint=fingerprint,
                    extra=current_w3c() if t is not None else request.trace_headers or {},
                )
                try:
                    seq, duplicate = await self.store.append(commit, self.last_seq)
                except WrongLastSequence:
                    # Someone appended first, or our own earlier attempt landed and its ack was
                    # lost.
                    stats.conflicts_retried += 1
                    if metrics is not None:
                        metrics.conflicts.inc()
                    await self.catch_up()
                    fresh = True
                    continue
                except Timeout:
                    # The outcome is unknown: learn it from the stream. If the commit did not
                    # land, the caller gets `timeout` and retries with the same command id.
                    await self.recover_after_timeout()
                    recent = self.recent
                    seen = recent.find(hashed, self.last_seq) if recent is not None else None
                    if seen is not None:
                        known = await self.known_reply(seen, request.command_id, fingerprint)
                        if known is not None:
                            return known
                    raise
                if span is not None:
                    span.set_attribute("cqrs.seq", seq)
            if duplicate:
                # Inside the duplicate window JetStream names the original commit's sequence.
                return await self.reply_from(seq, request.command_id, fingerprint)
            state = self.state
            for event in events:
                state = self.aggregate.evolve(state, event)
            self.state = state
            self.version = commit.version
            self.last_seq = seq
            self.remember_hash(hashed, seq)
            self.confirmed(lease)
            return self.reply(request.command_id, stored, seq=seq)
        raise Conflict(
            f"{self.aggregate.name}/{self.aggregate_id}: still conflicting after "
            f"{max_retries} retries",
            details={"aggregate": self.aggregate.name, "id": self.aggregate_id},
        )

    def span_attributes(self, request: CommandRequest) -> dict[str, str]:
        return {
            "cqrs.aggregate": self.aggregate.name,
            "cqrs.id": self.aggregate_id,
            "cqrs.command": request.command,
            "cqrs.command_id": request.command_id,
        }

    def confirmed(self, lease: Lease | None) -> None:
        """This actor's state is the stream's as of now: trust it while ``lease`` holds."""
        self.owner = lease if lease is not None and lease.valid() else None

    async def fenced(self, lease: Lease | None, stats: HostStats) -> bool:
        """Whether a decision that appends nothing was made on a stale state (then caught up).

        Skipped when this worker holds the aggregate's partition and confirmed the state under
        that lease; otherwise one direct get of the aggregate's newest sequence.
        """
        if lease is not None and self.owner is lease and lease.valid():
            return False
        stats.fence_checks += 1
        newest = await self.store.last_seq(self.aggregate.name, self.aggregate_id)
        if newest == self.last_seq:
            self.confirmed(lease)
            return False
        stats.fence_catch_ups += 1
        await self.catch_up()
        self.confirmed(lease)
        return True

    async def known_reply(
        self, seq: int, command_id: str, fingerprint: str
    ) -> dict[str, Any] | None:
        """The original reply when the commit the memory names for ``command_id`` (at ``seq``)
        is that command's, else None."""
        commit = await self.store.commit_at(self.aggregate.name, self.aggregate_id, seq)
        if commit is None or commit.command_id != command_id:
            return None  # a hash collision (or a commit gone): not this command
        return self.answer_retry(commit, fingerprint)

    async def reply_from(self, seq: int, command_id: str, fingerprint: str) -> dict[str, Any]:
        commit = await self.store.commit_at(self.aggregate.name, self.aggregate_id, seq)
        if commit is None or commit.command_id != command_id:
            raise Internal(f"the commit of command {command_id} is not at sequence {seq}")
        return self.answer_retry(commit, fingerprint)

    def answer_retry(self, commit: Commit, fingerprint: str) -> dict[str, Any]:
        if commit.fingerprint and commit.fingerprint != fingerprint:
            raise Conflict(
                "command id already used for another command",
                details={
                    "command_id": commit.command_id,
                    "command": commit.command,
                    "seq": commit.seq,
                },
            )
        return commit.reply()

    async def recover_after_timeout(self) -> None:
        """After an unacknowledged append the outcome is unknown: learn it from the stream."""
        try:
            await self.catch_up()
        except CqrsError:
            self.reset()
            raise Timeout("the commit's outcome is unknown: JetStream did not answer") from None

    def reset(self) -> None:
        """Forget the in-memory state; the next command reloads it from the stream."""
        self.forget_state()
        self.snapshot_rev = 0

    def forget_state(self) -> None:
        self.state = self.aggregate.initial
        self.version = 0
        self.last_seq = 0
        self.loaded = False
        self.recent = None
        self.owner = None
        self.snapshot_version = 0

    def reply(
        self, command_id: str, events: list[StoredEvent], *, seq: int | None = None
    ) -> dict[str, Any]:
        return command_reply(
            self.aggregate.name,
            self.aggregate_id,
            self.version,
            self.last_seq if seq is None else seq,
            command_id,
            events,
        )
