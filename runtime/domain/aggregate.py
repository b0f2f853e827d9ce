"""Aggregate definitions: an empty state, command handlers (decide) and event handlers (evolve).

In the spirit of Akka's ``EventSourcedBehavior`` an aggregate is a handful of values, not a base
class: its name, its empty state, one ``decide`` function per command and one ``evolve`` function
per event type. Handlers are plain functions over immutable data; they do no I/O, read no clock
and make no ids (the :class:`CommandContext` carries those). State changes only in ``evolve``.

::

    order = Aggregate("order", OrderState())

    @order.command("cancel")
    def cancel(state: OrderState, cmd: Cancel) -> OrderCancelled:
        if state.status not in {"created", "paid"}:
            raise Rejected("an order can only be cancelled before it ships", rule="cancel_window")
        return OrderCancelled(reason=cmd.reason)

    @order.event("order.cancelled.v1")
    def cancelled(state: OrderState, event: OrderCancelled) -> OrderState:
        return replace(state, status="cancelled")
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from ..errors import CqrsError, InvalidInput, SchemaError, UnknownCommand, excerpt
from ..wire import codec
from ..wire.naming import check_name, split_event_type
from .schema import EventSchema, Upcaster
from .types import usable

S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])
U = TypeVar("U", bound=Upcaster)


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What a command handler may know beyond state and arguments; built by the runtime."""

    aggregate: str
    aggregate_id: str
    command: str
    command_id: str
    correlation_id: str
    causation_id: str | None
    now: datetime


@dataclass(frozen=True, slots=True)
class _CommandHandler:
    name: str
    fn: Callable[..., Any]
    args_type: Any
    wants_context: bool


@dataclass(frozen=True, slots=True)
class _EventHandler:
    type_name: str
    event_class: type[Any]
    fn: Callable[[Any, Any], Any]


class Aggregate(Generic[S]):
    """The definition of one aggregate type: its name, empty state and handlers."""

    def __init__(
        self,
        name: str,
        initial: S,
        *,
        state_version: int = 1,
        snapshot_every: int | None = 100,
        remember_commands: int = 256,
    ) -> None:
        self.name = check_name(name, field="aggregate")
        self.initial = initial
        self.state_type: type[S] = type(initial)
        self.state_version = state_version
        self.snapshot_every = snapshot_every
        self.remember_commands = remember_commands
        self._commands: dict[str, _CommandHandler] = {}
        self._events_by_type: dict[str, _EventHandler] = {}
        self._events_by_class: dict[type[Any], _EventHandler] = {}
        self.schema = EventSchema(self.name)

    def __repr__(self) -> str:
        return f"Aggregate({self.name!r})"

    # -- definition ---------------------------------------------------------------------------

    def command(self, name: str | None = None) -> Callable[[F], F]:
        """Register a command handler ``(state, args[, ctx]) -> event | [events] | None``.

        The handler's second parameter's annotation is the argument type (a dataclass or msgspec
        Struct); request bodies are validated against it before the handler runs.
        """

        def register(fn: F) -> F:
            command_name = check_name(name or fn.__name__, field="command")
            if command_name in self._commands:
                raise ValueError(f"{self.name}: command {command_name!r} is defined twice")
            params = list(inspect.signature(fn).parameters.values())
            if not 1 <= len(params) <= 3:
                raise TypeError(f"{fn.__qualname__}: expected (state[, args[, ctx]])")
            hints = typing.get_type_hints(fn)
            args_type: Any = None
            if len(params) >= 2:
                args_type = hints.get(params[1].name, dict[str, Any])
            usable(args_type, f"aggregate {self.name!r}, command {command_name!r}")
            self._commands[command_name] = _CommandHandler(
                command_name, fn, args_type, wants_context=len(params) == 3
            )
            return fn

        return register

    def event(self, type_name: str) -> Callable[[F], F]:
        """Register the evolve handler ``(state, event) -> state`` of one versioned event type.

        The event's class is the annotation of the handler's second parameter.
        """
        split_event_type(type_name)

        def register(fn: F) -> F:
            params = list(inspect.signature(fn).parameters.values())
            if len(params) != 2:
                raise TypeError(f"{fn.__qualname__}: expected (state, event)")
            event_class = typing.get_type_hints(fn).get(params[1].name)
            if not isinstance(event_class, type):
                raise TypeError(f"{fn.__qualname__}: annotate the event parameter with its class")
            if type_name in self._events_by_type or event_class in self._events_by_class:
                raise ValueError(f"{self.name}: event {type_name!r} is registered twice")
            if self.schema.has_step(type_name):
                raise ValueError(f"{self.name}: {type_name!r} has an upcaster: it is not current")
            usable(event_class, f"aggregate {self.name!r}, event {type_name!r}")
            handler = _EventHandler(type_name, event_class, fn)
            self._events_by_type[type_name] = handler
            self._events_by_class[event_class] = handler
            return fn

        return register

    def upcaster(self, type_name: str, *, to: str | None = None) -> Callable[[U], U]:
        """Register a pure ``(data) -> data`` that turns a stored older version into the next.

        ``to`` defaults to the next version (``order.created.v1`` -> ``order.created.v2``);
        chains of upcasters (v1 -> v2 -> v3) apply one after the other when events are read.
        """

        def register(fn: U) -> U:
            if type_name in self._events_by_type:
                raise ValueError(
                    f"{self.name}: {type_name!r} has an evolve handler; upcast it only once "
                    "a newer version replaces it"
                )
            self.schema.add_upcaster(type_name, fn, target=to)
            return fn

        return register

    def renamed(self, old: str, new: str) -> None:
        """Read events stored under the type name ``old`` as ``new`` (same data)."""
        if old in self._events_by_type:
            raise ValueError(f"{self.name}: {old!r} still has an evolve handler")
        self.schema.add_rename(old, new)

    # -- introspection -------------------------------------------------------------------------

    @property
    def command_names(self) -> list[str]:
        return sorted(self._commands)

    @property
    def event_types(self) -> list[str]:
        return sorted(self._events_by_type)

    def has_command(self, name: str) -> bool:
        return name in self._commands

    def command_args_type(self, name: str) -> Any:
        """The declared argument type of command ``name`` (None: it takes no arguments), as
        schema generators such as the HTTP gateway's OpenAPI document need it."""
        return self._commands[name].args_type

    # -- pure behaviour ------------------------------------------------------------------------

    def parse_command(self, command: str, body: Any) -> Any:
        """Validate a command's arguments against its declared type (``invalid`` on mismatch)."""
        handler = self._commands.get(command)
        if handler is None:
            raise UnknownCommand(
                f"aggregate {self.name!r} has no command {excerpt(command)}",
                details={
                    "aggregate": self.name,
                    "command": command[:64],
                    "known": self.command_names,
                },
            )
        if handler.args_type is None:
            if body not in (None, {}):
                raise InvalidInput(
                    f"command {command!r} takes no arguments", details={"field": "$"}
                )
            return None
        if body is None:
            body = {}
        return codec.convert(body, handler.args_type, strict=True)

    def decide(
        self,
        state: S,
        command: str,
        args: Any,
        ctx: CommandContext | Callable[[], CommandContext],
    ) -> list[Any]:
        """Run a command handler on already validated arguments; returns the decided events.

        ``ctx`` may be a function that builds the context, called only for a handler that
        takes one (the runtime builds it per command, so most commands need not pay for it).
        Raises :class:`Rejected` (from the handler) when a business rule says no.
        """
        handler = self._commands[command]
        if handler.args_type is None:
            result = handler.fn(state)
        elif handler.wants_context:
            result = handler.fn(state, args, ctx if isinstance(ctx, CommandContext) else ctx())
        else:
            result = handler.fn(state, args)
        if result is None:
            return []
        events = list(result) if isinstance(result, Sequence) else [result]
        for event in events:
            if type(event) not in self._events_by_class:
                raise TypeError(
                    f"{self.name}.{command} returned {type(event).__name__}, "
                    "which has no registered event handler"
                )
        return events

    def evolve(self, state: S, event: Any) -> S:
        """Apply one event to the state (pure)."""
        return typing.cast(S, self._events_by_class[type(event)].fn(state, event))

    def fold(self, events: Sequence[Any], state: S | None = None) -> S:
        """The state after applying ``events`` to ``state`` (default: the empty state)."""
        current = self.initial if state is None else state
        for event in events:
            current = self.evolve(current, event)
        return current

    # -- wire form of events -------------------------------------------------------------------

    def type_of(self, event: Any) -> str:
        """The wire type name of an event object."""
        return self._events_by_class[type(event)].type_name

    def event_class(self, type_name: str) -> type[Any] | None:
        """The class of the current event type ``type_name`` (None: no such current type)."""
        handler = self._events_by_type.get(type_name)
        return None if handler is None else handler.event_class

    def knows_event(self, type_name: str) -> bool:
        """Whether events stored as ``type_name`` can be read (directly or upcast)."""
        return self.schema.current_type(type_name) in self._events_by_type

    def upcast(self, type_name: str, data: Any) -> tuple[str, Any]:
        """The current type name and data of a stored event (renames and upcasters applied).

        Types without upcasters come back unchanged, known or not; readers (actors, history,
        projections) call this before dispatching on the type.
        """
        if not self.schema:
            return type_name, data
        return self.schema.upcast(type_name, data)

    def decode_event(self, type_name: str, data: Any) -> Any:
        """Build the event object of a stored ``{"type", "data"}`` pair, upcasting it first."""
        type_name, data = self.upcast(type_name, data)
        handler = self._events_by_type.get(type_name)
        if handler is None:
            raise KeyError(type_name)
        return codec.convert(data, handler.event_class)

    def decode_stored(self, type_name: str, data: Any, *, seq: int) -> Any:
        """Decode one event read from the stream at ``seq``.

        Raises :class:`SchemaError` naming the type and the sequence when no code knows the type
        or its data does not fit: an event in a history is never silently skipped.
        """
        if not self.knows_event(type_name):
            raise SchemaError(
                f"event type {type_name!r} at stream sequence {seq} is not known to "
                f"aggregate {self.name!r}",
                details={"type": type_name, "seq": seq, "aggregate": self.name},
            )
        try:
            return self.decode_event(type_name, data)
        except CqrsError as exc:
            raise SchemaError(
                f"event {type_name!r} at stream sequence {seq} cannot be decoded: {exc.message}",
                details={"type": type_name, "seq": seq, "aggregate": self.name},
            ) from None
