"""Defining aggregates: mistakes in a definition fail at import time, clearly."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from runtime import Aggregate


@dataclass(frozen=True)
class Bumped:
    by: int


@dataclass(frozen=True)
class Bump:
    by: int = 1


def test_a_command_returning_an_unregistered_event_fails() -> None:
    """decide may only return events that have an evolve handler."""
    agg = Aggregate("counter", 0)

    @agg.command("bump")
    def bump(state: int, cmd: Bump) -> Bumped:
        return Bumped(cmd.by)

    with pytest.raises(TypeError, match="no registered event handler"):
        agg.decide(0, "bump", Bump(), None)  # type: ignore[arg-type]


def test_event_types_must_be_versioned() -> None:
    """An event type without a .vN suffix is refused."""
    agg = Aggregate("counter", 0)
    with pytest.raises(ValueError, match=r"\.v<N>"):
        agg.event("counter.bumped")


def test_duplicate_definitions_are_refused() -> None:
    """A command or event type can be defined only once."""
    agg = Aggregate("counter", 0)

    @agg.event("counter.bumped.v1")
    def bumped(state: int, event: Bumped) -> int:
        return state + event.by

    with pytest.raises(ValueError, match="twice"):
        agg.event("counter.bumped.v1")(bumped)

    @agg.command("bump")
    def bump(state: int, cmd: Bump) -> Bumped:
        return Bumped(cmd.by)

    with pytest.raises(ValueError, match="twice"):
        agg.command("bump")(bump)


def test_fold_applies_events_in_order() -> None:
    """fold is evolve applied left to right from the empty state."""
    agg = Aggregate("counter", 0)

    @agg.event("counter.bumped.v1")
    def bumped(state: int, event: Bumped) -> int:
        return state * 10 + event.by

    assert agg.fold([Bumped(1), Bumped(2), Bumped(3)]) == 123
