"""Given/when/then harnesses for testing domain code without NATS.

::

    def test_cancel_after_shipping_is_rejected():
        (AggregateSpec(order)
            .given(OrderCreated(...), StatusUpdated(...), StatusUpdated(...))
            .when("cancel", {"reason": "late"})
            .then_rejected(rule="cancel_before_shipping"))

Commands go through the same argument validation as on the wire, so a spec also catches a body
that a real request would get ``invalid`` for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from . import codec
from .domain import Aggregate, CommandContext
from .errors import CqrsError

S = TypeVar("S")

FIXED_NOW = datetime(2026, 1, 1, tzinfo=UTC)


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
        assert self._events == list(events), f"decided {self._events}, expected {list(events)}"
        return self

    def then_types(self, *type_names: str) -> AggregateSpec[S]:
        """Assert the wire types of the decided events."""
        self._require_success()
        assert self._events is not None
        got = [self.aggregate.type_of(e) for e in self._events]
        assert got == list(type_names), f"decided {got}, expected {list(type_names)}"
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
            assert got == value, f"state.{name} is {got!r}, expected {value!r}"
        return self

    def then_rejected(self, *, rule: str | None = None, code: str = "rejected") -> CqrsError:
        """Assert the command failed with ``code`` (and ``rule``); return the error."""
        assert self._ran, "call when() first"
        assert self._error is not None, f"expected {code}, but it decided {self._events}"
        assert self._error.code == code, f"failed with {self._error!r}, expected {code}"
        if rule is not None:
            got = self._error.details.get("rule")
            assert got == rule, f"rejected by rule {got!r}, expected {rule!r}"
        return self._error

    def then_invalid(self, field: str | None = None) -> CqrsError:
        """Assert the command was ``invalid`` (naming ``field`` when given)."""
        error = self.then_rejected(code="invalid")
        if field is not None:
            got = str(error.details.get("field", ""))
            assert got.endswith(field), f"invalid field {got!r}, expected {field!r}"
        return error

    def _require_success(self) -> None:
        assert self._ran, "call when() first"
        assert self._error is None, f"the command failed: {self._error!r}"
