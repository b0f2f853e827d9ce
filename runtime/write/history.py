"""An aggregate as it was: its state at a version or at a time, and what changed between two.

Event sourcing keeps every past state reachable, so answering "what did this order look like
before the refund?" is a fold of a prefix of its history, with the same decoding (upcasters
included) and the same evolve handlers the actors use. Nothing here writes or takes a snapshot:
snapshots only hold the newest state, and these questions are about older ones.

Versions count events, not commits, so a version inside a commit of several events stops half
way through that commit. Times are the stream's own timestamps (set by the server when the commit
was stored, in nanoseconds), and "at a time" includes commits stored exactly then.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from ..domain.aggregate import Aggregate
from ..errors import InvalidInput, NotFound
from ..wire import codec
from ..wire.envelope import Commit
from ..wire.naming import check_id
from ..wire.timestamps import timestamp_ns
from .store import EventStore

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class PastState(Generic[S]):
    """The state of one aggregate after ``version`` events (the commit at ``seq``, stored at
    ``timestamp``; 0 and "" before the first event)."""

    aggregate: str
    id: str
    version: int
    seq: int
    timestamp: str
    state: S

    def to_wire(self) -> dict[str, Any]:
        return {
            "aggregate": self.aggregate,
            "id": self.id,
            "version": self.version,
            "seq": self.seq,
            "timestamp": self.timestamp,
            "state": codec.to_builtins(self.state),
        }


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field whose value differs between two states (``path`` is dotted for nesting)."""

    path: str
    before: Any
    after: Any

    def to_wire(self) -> dict[str, Any]:
        return {"path": self.path, "before": self.before, "after": self.after}


def fold_until(
    aggregate: Aggregate[S],
    aggregate_id: str,
    commits: Iterable[Commit],
    *,
    version: int | None = None,
) -> PastState[S]:
    """Fold ``commits`` (oldest first) up to ``version`` events, or all of them (pure)."""
    state, done, seq, timestamp = aggregate.initial, 0, 0, ""
    for commit in commits:
        if version is not None and done >= version:
            break
        for stored in commit.events:
            if version is not None and done >= version:
                break
            event = aggregate.decode_stored(stored.type, stored.data, seq=commit.seq)
            state = aggregate.evolve(state, event)
            done += 1
        seq, timestamp = commit.seq, commit.timestamp
    return PastState(aggregate.name, aggregate_id, done, seq, timestamp, state)


def diff_states(before: Any, after: Any) -> list[FieldChange]:
    """The fields that differ between two states, compared in their wire (JSON) form.

    Nested objects are compared field by field (``lines`` vs ``address.city``); lists and
    scalars are compared whole. A state that is not an object is one field named ``$``.
    """
    changes: list[FieldChange] = []
    _diff(codec.to_builtins(before), codec.to_builtins(after), "", changes)
    return changes


def _diff(before: Any, after: Any, path: str, out: list[FieldChange]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            sub = f"{path}.{key}" if path else str(key)
            _diff(before.get(key), after.get(key), sub, out)
    elif before != after:
        out.append(FieldChange(path or "$", before, after))


def as_time(when: str | datetime) -> str:
    """An RFC 3339 time string for ``when``; a datetime must carry its time zone."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise InvalidInput("the time needs a time zone", details={"field": "time"})
        return when.isoformat()
    timestamp_ns(when)  # validates
    return when


class AggregateHistory(Generic[S]):
    """Past states of the instances of one aggregate type, read from the event store."""

    def __init__(self, store: EventStore, aggregate: Aggregate[S]) -> None:
        self.store = store
        self.aggregate = aggregate

    async def _commits(self, aggregate_id: str, *, up_to_time: str | None = None) -> list[Commit]:
        check_id(aggregate_id)
        return await self.store.history(self.aggregate.name, aggregate_id, up_to_time=up_to_time)

    async def current(self, aggregate_id: str) -> PastState[S]:
        """The state after every stored event."""
        return fold_until(self.aggregate, aggregate_id, await self._commits(aggregate_id))

    async def at_version(self, aggregate_id: str, version: int) -> PastState[S]:
        """The state after exactly ``version`` events (0: the empty state).

        Raises :class:`NotFound` when the aggregate has fewer events than that.
        """
        if version < 0:
            raise InvalidInput("a version is 0 or more", details={"field": "version"})
        past = fold_until(
            self.aggregate, aggregate_id, await self._commits(aggregate_id), version=version
        )
        self._require_version(past, version)
        return past

    async def at_time(self, aggregate_id: str, when: str | datetime) -> PastState[S]:
        """The state after every commit stored at or before ``when`` (RFC 3339 or aware)."""
        commits = await self._commits(aggregate_id, up_to_time=as_time(when))
        return fold_until(self.aggregate, aggregate_id, commits)

    async def diff(
        self, aggregate_id: str, from_version: int, to_version: int
    ) -> tuple[PastState[S], PastState[S], list[FieldChange]]:
        """The states at two versions and the fields that changed from the first to the second."""
        if min(from_version, to_version) < 0:
            raise InvalidInput("a version is 0 or more", details={"field": "version"})
        commits = await self._commits(aggregate_id)
        before = fold_until(self.aggregate, aggregate_id, commits, version=from_version)
        after = fold_until(self.aggregate, aggregate_id, commits, version=to_version)
        self._require_version(before, from_version)
        self._require_version(after, to_version)
        return before, after, diff_states(before.state, after.state)

    def _require_version(self, past: PastState[S], version: int) -> None:
        if past.version < version:
            raise NotFound(
                f"{self.aggregate.name}/{past.id} has {past.version} events, not {version}",
                details={"aggregate": self.aggregate.name, "id": past.id, "events": past.version},
            )
