"""The command context is built for the handlers that take it, and only for them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from runtime import Aggregate, CommandContext

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Stamp:
    pass


@dataclass(frozen=True)
class Stamped:
    at: str


def stamp(state: str, cmd: Stamp, ctx: CommandContext) -> Stamped:
    return Stamped(ctx.now.isoformat())


def plain(state: str, cmd: Stamp) -> Stamped:
    return Stamped(state)


def stamped(state: str, event: Stamped) -> str:
    return event.at


clock = Aggregate("clock", "")
clock.command("stamp")(stamp)
clock.command("plain")(plain)
clock.event("clock.stamped.v1")(stamped)


class Builder:
    """A context factory that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> CommandContext:
        self.calls += 1
        return CommandContext("clock", "c-1", "stamp", "cmd-1", "cmd-1", None, NOW)


def test_a_handler_that_takes_the_context_gets_it_built() -> None:
    """A factory is called once and its context handed over."""
    builder = Builder()
    assert clock.decide("", "stamp", Stamp(), builder) == [Stamped(NOW.isoformat())]
    assert builder.calls == 1


def test_a_handler_without_the_context_costs_no_context() -> None:
    """The factory is never called for a handler of two parameters."""
    builder = Builder()
    assert clock.decide("s", "plain", Stamp(), builder) == [Stamped("s")]
    assert builder.calls == 0


def test_a_built_context_is_handed_over_as_it_is() -> None:
    """Callers holding a context already (the given/when/then specs) pass it directly."""
    ctx = CommandContext("clock", "c-1", "stamp", "cmd-1", "cmd-1", None, NOW)
    assert clock.decide("", "stamp", Stamp(), ctx) == [Stamped(NOW.isoformat())]
