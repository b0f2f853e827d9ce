"""Projection definitions: the events a read model follows, how each one changes it, and the
queries it answers.

A projection is a handful of values, like an aggregate: its name, the type of its read model,
the aggregates whose events it follows, one handler per event type and one handler per query.
Handlers are plain functions over plain data. The runtime owns everything else: consuming the
event stream, skipping what was already applied, snapshotting, restoring and serving queries.

::

    orders = Projection("orders", OrdersModel, follows=[order])

    @orders.on("order.created.v2")
    def created(model: OrdersModel, event: OrderCreated, meta: EventMeta) -> None:
        model.orders[meta.aggregate_id] = OrderView(...)

    @orders.query("get_order_by_id")
    def get_order_by_id(model: OrdersModel, args: GetOrderById) -> OrderView:
        ...

Unlike an aggregate's state, a read model is mutable: handlers change it in place, because a
read model may hold millions of rows and copying it per event would be absurd. A handler should
therefore check what it needs before it changes anything, so that a failure (retried, then
handled by the poison policy) leaves the model as it was.

The model type is also the snapshot format: it is encoded with msgspec (dataclasses, msgspec
Structs, dicts, lists, Decimals, datetimes and enums round-trip), and ``version`` is its schema
version. Change the model's shape or the meaning of a handler and bump ``version``: snapshots of
another version are ignored and the read model is rebuilt from the first event.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import msgspec

from ..errors import CqrsError, InvalidInput, SchemaError, UnknownQuery, excerpt
from ..wire import codec
from ..wire.args import ArgumentsDecoder
from ..wire.envelope import Commit
from ..wire.naming import EVENT_PREFIX, check_name, split_event_type
from .aggregate import Aggregate
from .types import usable

M = TypeVar("M")
F = TypeVar("F", bound=Callable[..., Any])
# A query looked up once: decode the request body into its arguments; run it on the model.
QueryPlan = tuple[Callable[[bytes], Any], Callable[[Any, Any], Any]]

PoisonPolicy = Literal["halt", "skip"]
"""What a projection does with an event its handler fails on: ``halt`` (stop the replica, the
default) or ``skip`` (record it as a dead letter and go on)."""
POISON_POLICIES: tuple[PoisonPolicy, ...] = ("halt", "skip")


class EventMeta(msgspec.Struct, frozen=True):
    """Where an event comes from; handlers that take a third parameter get it.

    Events carry only what changed, not whose change it was, so a read model keyed by aggregate
    id needs ``aggregate_id`` from here. (A frozen msgspec Struct rather than a frozen dataclass:
    one is made per event, and it is several times cheaper to make.)
    """

    aggregate: str
    aggregate_id: str
    seq: int  # the stream sequence of the commit holding the event
    version: int  # the aggregate's version after this event
    type: str  # the type name as stored (before any upcasting)
    recorded_at: str
    command_id: str = ""
    correlation_id: str = ""

    @classmethod
    def of(cls, commit: Commit, offset: int) -> EventMeta:
        """The meta of the event at ``offset`` in a stored ``commit``."""
        return cls(
            aggregate=commit.aggregate,
            aggregate_id=commit.aggregate_id,
            seq=commit.seq,
            version=commit.first_version + offset,
            type=commit.events[offset].type,
            recorded_at=commit.recorded_at,
            command_id=commit.command_id,
            correlation_id=commit.correlation_id,
        )


@dataclass(frozen=True, slots=True)
class _EventHandler:
    type_name: str
    fn: Callable[..., Any]
    event_class: type[Any] | None  # used for aggregates followed by name only
    wants_meta: bool


@dataclass(frozen=True, slots=True)
class _QueryHandler:
    name: str
    fn: Callable[..., Any]
    args_type: Any  # None: the query takes no arguments
    decoder: ArgumentsDecoder[Any] | None  # of args_type, from the request's JSON bytes


def event_handler(fn: Callable[..., Any], type_name: str, first: str) -> _EventHandler:
    """The handler of ``type_name`` that ``fn`` makes: ``(first, event[, meta])``, the event
    decoded into the class its second parameter is annotated with (if any)."""
    params = list(inspect.signature(fn).parameters.values())
    if len(params) not in (2, 3):
        raise TypeError(f"{fn.__qualname__}: expected ({first}, event[, meta])")
    hint = typing.get_type_hints(fn).get(params[1].name)
    event_class = hint if isinstance(hint, type) and hint is not dict else None
    return _EventHandler(type_name, fn, event_class, wants_meta=len(params) == 3)


def decode_for_projection(
    aggregate: Aggregate[Any] | None,
    type_name: str,
    data: Any,
    handlers: Mapping[str, _EventHandler],
) -> tuple[_EventHandler, Any] | None:
    """The handler and typed event for a stored ``{"type", "data"}`` pair, or None to ignore it.

    Every event a projection reads goes through here: older versions are upcast by their
    aggregate first, so handlers only ever see current types, and an event type the projection
    has no handler for is skipped before anything is decoded.
    """
    if aggregate is not None:
        type_name, data = aggregate.upcast(type_name, data)
    handler = handlers.get(type_name)
    if handler is None:
        return None
    try:
        if aggregate is not None and aggregate.knows_event(type_name):
            return handler, aggregate.decode_event(type_name, data)
        if handler.event_class is not None:
            return handler, codec.convert(data, handler.event_class)
    except CqrsError as exc:
        raise SchemaError(
            f"event {type_name!r} cannot be decoded: {exc.message}",
            details={"type": type_name, **exc.details},
        ) from None
    return handler, data


_UPCAST = object()  # the plan of a stored type that is upcast first: the general way


class EncodedDecoding:
    """:func:`decode_for_projection` for data still JSON (a :class:`msgspec.Raw` from
    :func:`~runtime.wire.envelope.encoded_events`): decoded straight into its class, in one
    pass, when its stored type is current; the same outcome and errors as the general way."""

    def __init__(
        self, aggregates: Mapping[str, Aggregate[Any]], handlers: Mapping[str, _EventHandler]
    ) -> None:
        self._aggregates = aggregates
        self._handlers = handlers
        # (aggregate, stored type) -> _UPCAST, or the handler (None: ignored) and the decoder
        # of its event class (None: the handler takes the decoded JSON)
        self._plans: dict[tuple[str, str], Any] = {}

    def forget(self) -> None:
        """Drop the plans (a handler was added)."""
        self._plans.clear()

    def decode(
        self, aggregate_name: str, type_name: str, data: msgspec.Raw
    ) -> tuple[_EventHandler, Any] | None:
        key = (aggregate_name, type_name)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(aggregate_name, type_name)
        if plan is not _UPCAST:
            handler, decoder = plan
            if handler is None:
                return None
            if decoder is None:
                return handler, codec.loads(bytes(data))
            try:
                return handler, decoder.decode(data)
            except msgspec.MsgspecError:
                pass  # the general way raises the error that says why
        aggregate = self._aggregates.get(aggregate_name)
        return decode_for_projection(aggregate, type_name, codec.loads(bytes(data)), self._handlers)

    def _plan(self, aggregate_name: str, type_name: str) -> Any:
        aggregate = self._aggregates.get(aggregate_name)
        if aggregate is not None and aggregate.schema.has_step(type_name):
            return _UPCAST
        handler = self._handlers.get(type_name)
        if handler is None:
            return None, None
        event_class = aggregate.event_class(type_name) if aggregate is not None else None
        event_class = event_class or handler.event_class
        return handler, None if event_class is None else msgspec.json.Decoder(event_class)


class Projection(Generic[M]):
    """The definition of one read model: what it follows, how it changes, what it answers."""

    def __init__(
        self,
        name: str,
        model: type[M],
        *,
        follows: Sequence[Aggregate[Any] | str],
        version: int = 1,
        on_poison: PoisonPolicy = "halt",
    ) -> None:
        self.name = check_name(name, field="projection")
        if not isinstance(model, type):
            raise TypeError(f"projection {name!r}: model must be a class (called to start empty)")
        self.model_type: type[M] = model
        if version < 1:
            raise ValueError(f"projection {name!r}: version must be >= 1")
        self.version = version
        if on_poison not in POISON_POLICIES:
            raise ValueError(f"projection {name!r}: on_poison must be 'halt' or 'skip'")
        self.on_poison: PoisonPolicy = on_poison
        if not follows:
            raise ValueError(f"projection {name!r} must follow at least one aggregate")
        self.aggregates: dict[str, Aggregate[Any]] = {}
        names: list[str] = []
        for item in follows:
            if isinstance(item, Aggregate):
                self.aggregates[item.name] = item
                names.append(item.name)
            else:
                names.append(check_name(item, field="follows"))
        self.follows: tuple[str, ...] = tuple(dict.fromkeys(names))
        self._handlers: dict[str, _EventHandler] = {}
        self._queries: dict[str, _QueryHandler] = {}
        self._encoded = EncodedDecoding(self.aggregates, self._handlers)

    def __repr__(self) -> str:
        return f"Projection({self.name!r})"

    # -- definition ---------------------------------------------------------------------------

    def on(self, type_name: str) -> Callable[[F], F]:
        """Register the handler ``(model, event[, meta]) -> None`` of one versioned event type.

        For a followed :class:`Aggregate` the event is decoded into that aggregate's event class
        (after upcasting); for an aggregate followed by name, into the class the second
        parameter is annotated with, or left as the JSON data when it is not annotated.
        """
        split_event_type(type_name)

        def register(fn: F) -> F:
            if type_name in self._handlers:
                raise ValueError(f"{self.name}: event {type_name!r} has two handlers")
            self._handlers[type_name] = event_handler(fn, type_name, "model")
            self._encoded.forget()
            return fn

        return register

    def query(self, name: str | None = None) -> Callable[[F], F]:
        """Register a query handler ``(model[, args]) -> result``.

        The second parameter's annotation (a dataclass or msgspec Struct) is the argument type;
        request bodies are validated against it, unknown fields included, before the handler
        runs. Raise :class:`~runtime.NotFound` or :class:`~runtime.InvalidInput` for the
        answers those codes mean; the result must be JSON-encodable (dataclasses are).
        """

        def register(fn: F) -> F:
            query_name = check_name(name or fn.__name__, field="query")
            if query_name in self._queries:
                raise ValueError(f"{self.name}: query {query_name!r} is defined twice")
            params = list(inspect.signature(fn).parameters.values())
            if len(params) not in (1, 2):
                raise TypeError(f"{fn.__qualname__}: expected (model[, args])")
            args_type: Any = None
            if len(params) == 2:
                args_type = typing.get_type_hints(fn).get(params[1].name, dict[str, Any])
            usable(args_type, f"projection {self.name!r}, query {query_name!r}")
            decoder = ArgumentsDecoder(args_type) if args_type is not None else None
            self._queries[query_name] = _QueryHandler(query_name, fn, args_type, decoder)
            return fn

        return register

    # -- introspection -------------------------------------------------------------------------

    @property
    def queries(self) -> list[str]:
        return sorted(self._queries)

    def has_query(self, name: str) -> bool:
        return name in self._queries

    def query_types(self, name: str) -> tuple[Any, Any]:
        """The declared argument type (None: no arguments) and result type (``Any`` when the
        handler does not annotate it) of query ``name``, for schema generators."""
        handler = self._queries[name]
        result = typing.get_type_hints(handler.fn).get("return", Any)
        return handler.args_type, result

    @property
    def event_types(self) -> list[str]:
        return sorted(self._handlers)

    def subjects(self) -> list[str]:
        """The event subjects this projection's consumers filter on."""
        return [f"{EVENT_PREFIX}.{aggregate}.>" for aggregate in self.follows]

    def new_model(self) -> M:
        """An empty read model."""
        return self.model_type()

    # -- behaviour -----------------------------------------------------------------------------

    def apply(self, model: M, type_name: str, data: Any, meta: EventMeta) -> bool:
        """Apply one stored event to ``model``; False when the projection ignores its type.

        Raises :class:`SchemaError` when the event cannot be decoded, and whatever the handler
        raises when it fails.
        """
        found = decode_for_projection(
            self.aggregates.get(meta.aggregate), type_name, data, self._handlers
        )
        if found is None:
            return False
        handler, event = found
        if handler.wants_meta:
            handler.fn(model, event, meta)
        else:
            handler.fn(model, event)
        return True

    def apply_encoded(self, model: M, type_name: str, data: msgspec.Raw, meta: EventMeta) -> bool:
        """:meth:`apply` for an event whose data is still JSON (see :class:`EncodedDecoding`);
        the same outcome and errors."""
        found = self._encoded.decode(meta.aggregate, type_name, data)
        if found is None:
            return False
        handler, event = found
        if handler.wants_meta:
            handler.fn(model, event, meta)
        else:
            handler.fn(model, event)
        return True

    def parse_query(self, query: str, body: Any) -> Any:
        """Validate a query's arguments (``unknown_query`` or ``invalid`` when they do not fit)."""
        handler = self._queries.get(query)
        if handler is None:
            raise UnknownQuery(
                f"projection {self.name!r} has no query {excerpt(query)}",
                details={"projection": self.name, "query": query[:64], "known": self.queries},
            )
        if handler.args_type is None:
            if body not in (None, {}):
                raise InvalidInput(f"query {query!r} takes no arguments", details={"field": "$"})
            return None
        return codec.convert({} if body is None else body, handler.args_type, strict=True)

    def decode_query(self, query: str, data: bytes) -> Any:
        """Validate a query's arguments from the request body's JSON bytes, as
        :meth:`parse_query` does from the decoded body (the same errors), in one pass where the
        argument type allows it (:mod:`runtime.wire.args`)."""
        handler = self._queries.get(query)
        if handler is not None and handler.decoder is not None:
            return handler.decoder.decode(data)
        return self.parse_query(query, codec.loads_object(data))

    def ask(self, model: M, query: str, args: Any) -> Any:
        """Run a query handler on already validated arguments."""
        handler = self._queries[query]
        if handler.args_type is None:
            return handler.fn(model)
        return handler.fn(model, args)

    def query_plan(self, query: str) -> QueryPlan | None:
        """What answering ``query`` takes, looked up once: ``decode(body)`` as
        :meth:`decode_query` and ``run(model, args)`` as :meth:`ask` (None: no such query)."""
        handler = self._queries.get(query)
        if handler is None:
            return None
        if handler.decoder is not None:
            return handler.decoder.decode, handler.fn
        fn = handler.fn
        return functools.partial(self.decode_query, query), lambda model, _args: fn(model)
