"""What a process manager instance reacts to: events of the stream and its fired timers, as
:class:`Trigger` values, and the ids derived from them.

Decoding happens here, one event at a time, so an event that does not decode becomes a trigger
that carries its error (and is parked, :mod:`.parking`) instead of stopping the whole batch.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import msgspec

from ..domain.process_manager import ProcessManager
from ..domain.projection import EventMeta
from ..wire.envelope import Commit
from .timers import Fired


class Trigger(msgspec.Struct, frozen=True):
    """One thing an instance reacts to: an event (with its meta) or a fired timer. (A frozen
    msgspec Struct, made per event: a frozen dataclass costs ten times as much to make.)

    ``error`` is set for an event that could not be decoded: it is parked, never reacted to.
    """

    key: str
    id: str  # e<seq>-<index> or the timer's id: the root of command and timer ids
    correlation_id: str
    event: Any = None
    meta: EventMeta | None = None
    timer: Fired | None = None
    seq: int = 0  # of the commit in the event stream (events only)
    index: int = 0  # of the event in its commit; -1: the whole commit (unreadable)
    error: str = ""
    trace: dict[str, str] = msgspec.field(default_factory=dict)  # W3C context of what caused it

    @property
    def position(self) -> tuple[int, int]:
        return (self.seq, self.index)


def event_trigger_id(seq: int, index: int) -> str:
    return f"e{seq}-{index}"


def derived_id(manager: str, key: str, trigger: str, index: int) -> str:
    """A timer's id: the same for the same reaction, unique across instances and triggers."""
    digest = hashlib.blake2b(f"{manager}/{key}/{trigger}/{index}".encode(), digest_size=10)
    return "t" + digest.hexdigest()


def event_triggers(manager: ProcessManager[Any], commit: Commit) -> list[Trigger]:
    """The triggers of one commit's events for ``manager`` (those it reacts to).

    An event that does not decode, or whose key does not, is a trigger with its error, keyed by
    its aggregate id (the default key: the only one known without decoding).
    """
    found = []
    trace = commit.extra
    for index, stored in enumerate(commit.events):
        if not manager.handles(stored.type, commit.aggregate):
            continue
        trigger_id = event_trigger_id(commit.seq, index)
        meta = EventMeta.of(commit, index)
        try:
            decoded = manager.decode(stored.type, stored.data, meta)
        except Exception as exc:  # bad data is parked, never lost nor blocking others
            found.append(
                Trigger(
                    commit.aggregate_id,
                    trigger_id,
                    commit.correlation_id,
                    meta=meta,
                    seq=commit.seq,
                    index=index,
                    error=f"undecodable event {stored.type}: {type(exc).__name__}: {exc}",
                    trace=trace,
                )
            )
            continue
        if decoded is not None:
            key, event = decoded
            found.append(
                Trigger(
                    key,
                    trigger_id,
                    commit.correlation_id,
                    event,
                    meta,
                    seq=commit.seq,
                    index=index,
                    trace=trace,
                )
            )
    return found


def unreadable_trigger(subject: str, seq: int, error: Exception) -> Trigger:
    """A commit whose body cannot be read at all: one trigger for the whole of it (index -1),
    keyed by the aggregate id in its subject."""
    aggregate_id = subject.split(".", 2)[-1]
    return Trigger(
        aggregate_id,
        event_trigger_id(seq, -1),
        "",
        seq=seq,
        index=-1,
        error=f"unreadable commit: {type(error).__name__}: {error}",
    )


def timer_trigger(fired: Fired) -> Trigger:
    return Trigger(fired.key, fired.id, fired.correlation_id, timer=fired, trace=fired.trace or {})


def parked_timer(parked: dict[str, Any]) -> Trigger:
    """A parked timer's trigger as it fired (see :func:`runtime.processes.parking.trigger_body`)."""
    body = parked["timer"]
    fired_at = body.get("fired_at")
    fired = Fired(
        manager=parked["manager"],
        key=parked["key"],
        name=body["name"],
        id=body["id"],
        due=datetime.fromisoformat(body["due"]),
        data=body.get("data"),
        correlation_id=parked.get("correlation_id") or "",
        fired_at=datetime.fromisoformat(fired_at) if fired_at else None,
        trace=body.get("trace") or None,
    )
    return timer_trigger(fired)
