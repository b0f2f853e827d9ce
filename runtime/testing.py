"""Given/when/then harnesses for testing domain code and read models without NATS.

::

    def test_cancel_after_shipping_is_rejected():
        (AggregateSpec(order)
            .given(OrderCreated(...), StatusUpdated(...), StatusUpdated(...))
            .when("cancel", {"reason": "late"})
            .then_rejected(rule="cancel_before_shipping"))

Commands go through the same argument validation as on the wire, so a spec also catches a body
that a real request would get ``invalid`` for.

::

    def test_orders_of_a_user_are_listed_newest_first():
        (ProjectionSpec(orders)
            .given("order", "ord-1", OrderCreated(...))
            .given("order", "ord-2", OrderCreated(...))
            .then_query("get_orders_for_user", {"user_id": "u-1"}, lambda r: ...))

    def test_an_unpaid_order_is_cancelled_when_its_deadline_passes():
        (ProcessSpec(payment_deadline)
            .given("order", "ord-1", OrderCreated(...))
            .when_timer("payment_deadline", "ord-1")
            .then_sends(Send("order", "ord-1", "cancel", {"reason": "payment timeout"})))

Events fed to a :class:`ProjectionSpec` or a :class:`ProcessSpec` travel through their wire form
(type name and JSON data) and the same decoding, upcasting and dispatch as in the runtime; queries
validate their arguments and encode their answers exactly as the query service does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from .domain.aggregate import Aggregate, CommandContext
from .domain.process_manager import ProcessManager, Reaction, Send, TimerFired, TimerOp
from .domain.projection import EventMeta, Projection
from .errors import CqrsError
from .wire import codec
from .wire.envelope import Commit, StoredEvent

__all__ = ["FIXED_NOW", "AggregateSpec", "ProcessSpec", "ProjectionSpec", "SpecFailed"]

S = TypeVar("S")
M = TypeVar("M")

FIXED_NOW = datetime(2026, 1, 1, tzinfo=UTC)


class SpecFailed(AssertionError):
    """Raised when a spec's expectation does not hold.

    An ``AssertionError``, so test runners report it as a failed test, but raised by explicit
    checks rather than ``assert`` statements, which ``python -O`` would strip out.
    """


def check(condition: object, message: str) -> None:
    """Fail the spec with ``message`` unless ``condition`` holds."""
    if not condition:
        raise SpecFailed(message)


class AggregateSpec(Generic[S]):
    """given (past events) / when (a command) / then (events, rejection or state)."""

    def __init__(self, aggregate: Aggregate[S], aggregate_id: str = "test-1") -> None:
        self.aggregate = aggregate
        self.aggregate_id = aggregate_id
        self.history: list[Any] = []
        self.now = FIXED_NOW
        self._events: list[Any] | None = None
        self._error: CqrsError | None = None
        self._ran = False

    def given(self, *events: Any) -> AggregateSpec[S]:
        self.history.extend(events)
        return self

    def at(self, now: datetime) -> AggregateSpec[S]:
        """Set the clock the command context reports."""
        self.now = now
        return self

    @property
    def state(self) -> S:
        """The state after the given events (and the decided ones, once ``when`` ran)."""
        return self.aggregate.fold([*self.history, *(self._events or [])])

    def when(
        self, command: str, args: Any = None, *, command_id: str = "cmd-1"
    ) -> AggregateSpec[S]:
        self._ran = True
        try:
            # Through the wire form, exactly as a request body would arrive.
            parsed = self.aggregate.parse_command(command, codec.loads(codec.dumps(args or {})))
            ctx = CommandContext(
                aggregate=self.aggregate.name,
                aggregate_id=self.aggregate_id,
                command=command,
                command_id=command_id,
                correlation_id=command_id,
                causation_id=None,
                now=self.now,
            )
            state = self.aggregate.fold(self.history)
            self._events = self.aggregate.decide(state, command, parsed, ctx)
        except CqrsError as exc:
            self._error = exc
        return self

    def then(self, *events: Any) -> AggregateSpec[S]:
        """Assert the command decided exactly these events."""
        self._require_success()
        check(self._events == list(events), f"decided {self._events}, expected {list(events)}")
        return self

    def then_types(self, *type_names: str) -> AggregateSpec[S]:
        """Assert the wire types of the decided events."""
        self._require_success()
        got = [self.aggregate.type_of(e) for e in self._events or []]
        check(got == list(type_names), f"decided {got}, expected {list(type_names)}")
        return self

    def then_nothing(self) -> AggregateSpec[S]:
        """Assert the command was accepted and decided no events (an idempotent no-op)."""
        return self.then()

    def then_state(self, **expected: Any) -> AggregateSpec[S]:
        """Assert fields of the state after the decided events."""
        self._require_success()
        state = self.state
        for name, value in expected.items():
            got = getattr(state, name)
            check(got == value, f"state.{name} is {got!r}, expected {value!r}")
        return self

    def then_rejected(self, *, rule: str | None = None, code: str = "rejected") -> CqrsError:
        """Assert the command failed with ``code`` (and ``rule``); return the error."""
        check(self._ran, "call when() first")
        error = self._error
        if error is None:
            raise SpecFailed(f"expected {code}, but it decided {self._events}")
        check(error.code == code, f"failed with {error!r}, expected {code}")
        if rule is not None:
            got = error.details.get("rule")
            check(got == rule, f"rejected by rule {got!r}, expected {rule!r}")
        return error

    def then_invalid(self, field: str | None = None) -> CqrsError:
        """Assert the command was ``invalid`` (naming ``field`` when given, as a dotted path such
        as ``lines[0].quantity``, exactly as the wire reply names it)."""
        error = self.then_rejected(code="invalid")
        if field is not None:
            got = str(error.details.get("field", ""))
            check(got == field, f"invalid field {got!r}, expected {field!r}")
        return error

    def _require_success(self) -> None:
        check(self._ran, "call when() first")
        check(self._error is None, f"the command failed: {self._error!r}")


class ProjectionSpec(Generic[M]):
    """given (stored events) / then (query answers or the model), for one projection."""

    def __init__(self, projection: Projection[M]) -> None:
        self.projection = projection
        self.model: M = projection.new_model()
        self.seq = 0
        self.handled = 0  # events a handler ran for (ignored types do not count)
        self.versions: dict[tuple[str, str], int] = {}
        self.now = FIXED_NOW

    def given(self, aggregate: str, aggregate_id: str, *events: Any) -> ProjectionSpec[M]:
        """Apply ``events`` of one aggregate instance, one commit each.

        An event is an event object of a followed :class:`Aggregate`, a :class:`StoredEvent`, or
        a ``(type, data)`` pair (for old versions, or aggregates followed by name).
        """
        for event in events:
            self.seq += 1
            key = (aggregate, aggregate_id)
            version = self.versions.get(key, 0) + 1
            self.versions[key] = version
            type_name, data = self._wire(aggregate, event)
            meta = EventMeta(
                aggregate=aggregate,
                aggregate_id=aggregate_id,
                seq=self.seq,
                version=version,
                type=type_name,
                recorded_at=self.now.isoformat(),
                command_id=f"cmd-{self.seq}",
                correlation_id=f"cmd-{self.seq}",
            )
            self.handled += self.projection.apply(self.model, type_name, data, meta)
        return self

    def given_commits(self, commits: Iterable[Commit]) -> ProjectionSpec[M]:
        """Apply commits as read from a stream (their sequences and versions kept), in order."""
        for commit in commits:
            for offset, stored in enumerate(commit.events):
                meta = EventMeta.of(commit, offset)
                self.handled += self.projection.apply(self.model, stored.type, stored.data, meta)
            self.seq = max(self.seq, commit.seq)
        return self

    def _wire(self, aggregate: str, event: Any) -> tuple[str, Any]:
        if isinstance(event, StoredEvent):
            return event.type, codec.loads(codec.dumps(event.data))
        if isinstance(event, tuple):
            type_name, data = event
            return str(type_name), codec.loads(codec.dumps(data))
        definition = self.projection.aggregates.get(aggregate)
        if definition is None:
            raise TypeError(
                f"{self.projection.name} follows {aggregate!r} by name: give its events as "
                "(type, data) pairs"
            )
        return definition.type_of(event), codec.loads(codec.dumps(codec.to_builtins(event)))

    def query(self, name: str, args: Any = None) -> Any:
        """The answer of a query in its wire form (decoded JSON); raises its error."""
        parsed = self.projection.parse_query(name, codec.loads(codec.dumps(args or {})))
        return codec.loads(codec.dumps(self.projection.ask(self.model, name, parsed)))

    def then_query(
        self, name: str, args: Any, expected: Any | Callable[[Any], bool]
    ) -> ProjectionSpec[M]:
        """Assert a query's answer equals ``expected`` (or that ``expected(answer)`` holds)."""
        answer = self.query(name, args)
        if callable(expected):
            check(expected(answer), f"{name}({args}) answered {answer!r}")
        else:
            check(answer == expected, f"{name}({args}) answered {answer!r}, not {expected!r}")
        return self

    def then_query_fails(self, name: str, args: Any = None, *, code: str) -> CqrsError:
        """Assert a query fails with the error ``code``; return the error."""
        try:
            answer = self.query(name, args)
        except CqrsError as exc:
            check(exc.code == code, f"{name}({args}) failed with {exc!r}, expected {code}")
            return exc
        raise SpecFailed(f"{name}({args}) answered {answer!r}, expected {code}")


class ProcessSpec(Generic[S]):
    """given (past events) / when (an event or a timer) / then (commands, timers, state), for
    one process manager. Events travel through their wire form and the same decoding, key
    mapping and dispatch as in the runtime; each instance keeps its own state."""

    def __init__(self, manager: ProcessManager[S]) -> None:
        self.manager = manager
        self.states: dict[str, S] = {}
        self.seq = 0
        self.now = FIXED_NOW
        self.key: str | None = None
        self._reaction: Reaction[S] | None = None

    def at(self, now: datetime) -> ProcessSpec[S]:
        """Set the recorded time of the events that follow."""
        self.now = now
        return self

    def state(self, key: str) -> S:
        return self.states.get(key, self.manager.initial)

    def _event(self, aggregate: str, aggregate_id: str, event: Any) -> Reaction[S] | None:
        definition = self.manager.aggregates[aggregate]
        self.seq += 1
        type_name = definition.type_of(event)
        data = codec.loads(codec.dumps(codec.to_builtins(event)))
        meta = EventMeta(
            aggregate=aggregate,
            aggregate_id=aggregate_id,
            seq=self.seq,
            version=self.seq,
            type=type_name,
            recorded_at=self.now.isoformat(),
            command_id=f"cmd-{self.seq}",
            correlation_id=f"cmd-{self.seq}",
        )
        decoded = self.manager.decode(type_name, data, meta)
        if decoded is None:
            self.key = None
            return None
        self.key, typed = decoded
        reaction = self.manager.react(self.state(self.key), typed, meta)
        self.states[self.key] = reaction.state
        return reaction

    def given(self, aggregate: str, aggregate_id: str, *events: Any) -> ProcessSpec[S]:
        """React to past events of one aggregate instance (what they send is not checked)."""
        for event in events:
            self._event(aggregate, aggregate_id, event)
        return self

    def when(self, aggregate: str, aggregate_id: str, event: Any) -> ProcessSpec[S]:
        self._reaction = self._event(aggregate, aggregate_id, event)
        return self

    def when_timer(
        self, name: str, key: str, *, due: datetime | None = None, data: Any = None
    ) -> ProcessSpec[S]:
        """The instance's timer ``name`` fires (at ``due``, default the spec's clock)."""
        self.key = key
        timer = TimerFired(name, key, due or self.now, data)
        self._reaction = self.manager.react(self.state(key), timer)
        self.states[key] = self._reaction.state
        return self

    def _ran(self) -> Reaction[S]:
        if self._reaction is None:
            raise SpecFailed("call when() or when_timer() with a handled trigger")
        return self._reaction

    def then_sends(self, *commands: Send) -> ProcessSpec[S]:
        """Assert the reaction sent exactly these commands (arguments in their wire form)."""
        got = [self._wire(c) for c in self._ran().commands]
        check(got == [self._wire(c) for c in commands], f"sent {got}, expected {commands}")
        return self

    def then_timers(self, *ops: TimerOp) -> ProcessSpec[S]:
        """Assert the reaction set and cancelled exactly these timers."""
        got = list(self._ran().timers)
        check(got == list(ops), f"changed timers {got}, expected {list(ops)}")
        return self

    def then_nothing(self) -> ProcessSpec[S]:
        """Assert the trigger sent no command and changed no timer."""
        if self._reaction is None:
            return self  # an event the process manager does not react to
        return self.then_sends().then_timers()

    def then_state(self, **expected: Any) -> ProcessSpec[S]:
        """Assert fields of the instance's state after the reaction."""
        if self.key is None:
            raise SpecFailed("no instance reacted")
        state = self.state(self.key)
        for name, value in expected.items():
            got = getattr(state, name)
            check(got == value, f"state.{name} is {got!r}, expected {value!r}")
        return self

    @staticmethod
    def _wire(send: Send) -> tuple[str, str, str, Any]:
        args = codec.loads(codec.dumps(send.args or {}))
        return send.aggregate, send.id, send.command, args
