"""Process manager definitions: reactions to events and to time that send commands.

A process manager (a saga, in Axon's words) is a handful of values, like an aggregate: its name,
the empty state of one instance, the aggregates whose events it follows, how an event maps to
the instance it concerns (its key, by default the aggregate id), and one pure reaction per event
type and per timer::

    deadline = ProcessManager("payment_deadline", Deadline(), follows=[order])

    @deadline.on("order.created.v2")
    def created(state: Deadline, event: OrderCreated, meta: EventMeta) -> Reaction[Deadline]:
        return Reaction(replace(state, open=True),
                        timers=[SetTimer("payment_deadline", at=event.created_at + TIMEOUT)])

    @deadline.timer("payment_deadline")
    def expired(state: Deadline, timer: TimerFired) -> Reaction[Deadline] | None:
        if not state.open:
            return None                    # the order moved on: nothing to do
        cancel = Send("order", timer.key, "cancel", {"reason": "payment timeout"})
        return Reaction(replace(state, open=False), commands=[cancel])

Reactions do no I/O and read no clock: the time they need comes from the event (its recorded
time, or a time it carries) or from the timer (its due time). The runtime owns everything else:
the partitioned consumers, the per-instance state, sending the commands exactly once and
scheduling the timers in JetStream.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec

from ..errors import CqrsError, InvalidInput
from ..wire import codec
from ..wire.naming import EVENT_PREFIX, check_id, check_name, split_event_type
from .aggregate import Aggregate
from .projection import (
    EncodedDecoding,
    EventMeta,
    _EventHandler,
    decode_for_projection,
    event_handler,
)

S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Send:
    """A command a reaction sends: to ``aggregate``/``id``, with its arguments."""

    aggregate: str
    id: str
    command: str
    args: Any = None


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Start (or move) the instance's timer ``name`` to fire at ``at``, carrying ``data``."""

    name: str
    at: datetime
    data: Any = None


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Stop the instance's timer ``name``; nothing happens if it is not running."""

    name: str


TimerOp = SetTimer | CancelTimer


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer that came due: its name, the instance key, its due time, the data it got and when
    the server fired it (None in tests that do not say)."""

    name: str
    key: str
    due: datetime
    data: Any = None
    fired_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Reaction(Generic[S]):
    """What a reaction decides: the instance's new state, commands to send, timers to change."""

    state: S
    commands: Sequence[Send] = field(default_factory=tuple)
    timers: Sequence[TimerOp] = field(default_factory=tuple)


def default_key(event: Any, meta: EventMeta) -> str:
    """One instance per aggregate instance: the key is the event's aggregate id."""
    return meta.aggregate_id


class ProcessManager(Generic[S]):
    """The definition of one process manager: what it follows, how it reacts, its timers."""

    def __init__(
        self,
        name: str,
        initial: S,
        *,
        follows: Sequence[Aggregate[Any]],
        key_of: Callable[[Any, EventMeta], str] = default_key,
        state_version: int = 1,
    ) -> None:
        self.name = check_name(name, field="process manager")
        self.initial = initial
        if not follows:
            raise ValueError(f"process manager {name!r} must follow at least one aggregate")
        self.aggregates: dict[str, Aggregate[Any]] = {a.name: a for a in follows}
        self.key_of = key_of
        if state_version < 1:
            raise ValueError(f"process manager {name!r}: state_version must be >= 1")
        self.state_version = state_version
        self._handlers: dict[str, _EventHandler] = {}
        self._encoded = EncodedDecoding(self.aggregates, self._handlers)
        self._timers: dict[str, Callable[..., Any]] = {}

    def __repr__(self) -> str:
        return f"ProcessManager({self.name!r})"

    # -- definition ---------------------------------------------------------------------------

    def on(self, type_name: str) -> Callable[[F], F]:
        """Register the reaction ``(state, event[, meta]) -> Reaction | None`` to one event type
        of a followed aggregate (``None``: nothing changes, nothing is sent)."""
        split_event_type(type_name)

        def register(fn: F) -> F:
            if type_name in self._handlers:
                raise ValueError(f"{self.name}: event {type_name!r} has two reactions")
            self._handlers[type_name] = event_handler(fn, type_name, "state")
            self._encoded.forget()
            return fn

        return register

    def timer(self, name: str) -> Callable[[F], F]:
        """Register the reaction ``(state, timer: TimerFired) -> Reaction | None`` to a timer."""
        check_name(name, field="timer")

        def register(fn: F) -> F:
            if name in self._timers:
                raise ValueError(f"{self.name}: timer {name!r} has two reactions")
            if len(inspect.signature(fn).parameters) != 2:
                raise TypeError(f"{fn.__qualname__}: expected (state, timer)")
            self._timers[name] = fn
            return fn

        return register

    # -- introspection -------------------------------------------------------------------------

    @property
    def event_types(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def timer_names(self) -> list[str]:
        return sorted(self._timers)

    def subjects(self) -> list[str]:
        """The event subjects its consumer filters on."""
        return [f"{EVENT_PREFIX}.{aggregate}.>" for aggregate in self.aggregates]

    def handles(self, type_name: str, aggregate: str) -> bool:
        """Whether an event of this stored type may concern the process manager (before any
        decoding, so that events it ignores cost nothing)."""
        return self._current_type(aggregate, type_name) in self._handlers

    def _current_type(self, aggregate: str, type_name: str) -> str | None:
        definition = self.aggregates.get(aggregate)
        return None if definition is None else definition.schema.current_type(type_name)

    # -- behaviour -----------------------------------------------------------------------------

    def decode(self, type_name: str, data: Any, meta: EventMeta) -> tuple[str, Any] | None:
        """The instance key and typed event of a stored event, or None when it is not reacted
        to; ``data`` decoded JSON, or still JSON (:class:`EncodedDecoding`). Raises
        :class:`InvalidInput` when ``key_of`` gives no valid id."""
        if isinstance(data, msgspec.Raw):
            found = self._encoded.decode(meta.aggregate, type_name, data)
        else:
            found = decode_for_projection(
                self.aggregates.get(meta.aggregate), type_name, data, self._handlers
            )
        if found is None:
            return None
        event = found[1]
        key = self.key_of(event, meta)
        return check_id(key, field=f"{self.name} key"), event

    def react(self, state: S, trigger: Any, meta: EventMeta | None = None) -> Reaction[S]:
        """React to a decoded event (with its ``meta``) or to a :class:`TimerFired`.

        An event or timer without a reaction, or a reaction returning None, changes nothing.
        """
        if isinstance(trigger, TimerFired):
            fn = self._timers.get(trigger.name)
            result = None if fn is None else fn(state, trigger)
        else:
            if meta is None:
                raise TypeError("an event needs its EventMeta")
            type_name = self._current_type(meta.aggregate, meta.type)
            handler = self._handlers.get(type_name) if type_name else None
            if handler is None:
                result = None
            elif handler.wants_meta:
                result = handler.fn(state, trigger, meta)
            else:
                result = handler.fn(state, trigger)
        if result is None:
            return Reaction(state)
        if not isinstance(result, Reaction):
            raise TypeError(f"{self.name}: a reaction returns Reaction or None, got {result!r}")
        self._check(result)
        return result

    def _check(self, reaction: Reaction[S]) -> None:
        """Refuse what the runtime could not send or schedule, naming it."""
        for send in reaction.commands:
            if not isinstance(send, Send):
                raise TypeError(f"{self.name}: commands must be Send, got {send!r}")
            check_name(send.aggregate, field="aggregate")
            check_id(send.id)
            check_name(send.command, field="command")
        for op in reaction.timers:
            if not isinstance(op, SetTimer | CancelTimer):
                raise TypeError(f"{self.name}: timers must be SetTimer or CancelTimer, got {op!r}")
            if op.name not in self._timers:
                raise InvalidInput(
                    f"{self.name} has no timer {op.name!r}", details={"field": "timer"}
                )
            if isinstance(op, SetTimer) and op.at.tzinfo is None:
                raise InvalidInput(
                    f"timer {op.name!r} needs an aware datetime", details={"field": "at"}
                )

    # -- state in its stored form --------------------------------------------------------------

    def encode_state(self, state: S) -> Any:
        return codec.to_builtins(state)

    def decode_state(self, data: Any) -> S:
        try:
            return codec.convert(data, type(self.initial))
        except CqrsError as exc:
            raise InvalidInput(
                f"{self.name}: stored state does not decode: {exc.message}"
            ) from None
