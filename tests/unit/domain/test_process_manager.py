"""The process manager definition: registration checks and what a reaction may return."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pytest

from aggregates.order import order
from runtime import InvalidInput, ProcessManager, Reaction, Send, SetTimer
from runtime.domain.app import load_app
from runtime.testing import FIXED_NOW, ProcessSpec
from tests.unit.examples.test_payment_deadline import CREATED


@dataclass(frozen=True)
class Seen:
    count: int = 0


def make() -> ProcessManager[Seen]:
    return ProcessManager("probe", Seen(), follows=[order])


def test_an_event_type_has_one_reaction() -> None:
    """Registering two reactions to one event type is refused when the module loads."""
    pm = make()
    pm.on("order.created.v2")(lambda state, event: None)
    with pytest.raises(ValueError, match="two reactions"):
        pm.on("order.created.v2")(lambda state, event: None)


def test_a_reaction_may_only_set_declared_timers() -> None:
    """Setting a timer the process manager has no reaction for is an error naming it."""
    pm = make()

    @pm.on("order.created.v2")
    def created(state: Seen, event: object) -> Reaction[Seen]:
        return Reaction(state, timers=[SetTimer("nope", at=FIXED_NOW)])

    with pytest.raises(InvalidInput, match="no timer 'nope'"):
        ProcessSpec(pm).when("order", "ord-1", CREATED)


def test_timer_times_must_be_aware() -> None:
    """A timer due at a naive datetime is refused: due times are instants."""
    pm = make()
    pm.timer("t")(lambda state, timer: None)

    @pm.on("order.created.v2")
    def created(state: Seen, event: object) -> Reaction[Seen]:
        return Reaction(state, timers=[SetTimer("t", at=datetime(2026, 1, 1))])

    with pytest.raises(InvalidInput, match="aware"):
        ProcessSpec(pm).when("order", "ord-1", CREATED)


def test_commands_must_name_valid_targets() -> None:
    """A command to an id that is not a subject token is refused before anything is sent."""
    pm = make()

    @pm.on("order.created.v2")
    def created(state: Seen, event: object) -> Reaction[Seen]:
        return Reaction(state, commands=[Send("order", "a.b", "cancel")])

    with pytest.raises(InvalidInput):
        ProcessSpec(pm).when("order", "ord-1", CREATED)


def test_key_of_maps_events_to_instances() -> None:
    """A custom key_of groups events by what it returns, here the order's user."""
    pm = ProcessManager("per_user", Seen(), follows=[order], key_of=lambda e, meta: e.user_id)

    @pm.on("order.created.v2")
    def created(state: Seen, event: object) -> Reaction[Seen]:
        return Reaction(Seen(state.count + 1))

    spec = ProcessSpec(pm).given("order", "ord-1", CREATED).when("order", "ord-2", CREATED)
    spec.then_state(count=2)
    assert spec.key == "u-1"


def test_old_event_versions_reach_the_reaction_upcast() -> None:
    """A stored order.created.v1 is upcast and handled by the v2 reaction."""
    pm = make()
    pm.on("order.created.v2")(lambda state, event: Reaction(Seen(state.count + 1)))
    assert pm.handles("order.created.v1", "order")
    assert not pm.handles("order.cancelled.v1", "order")
    assert not pm.handles("order.created.v2", "user")


def test_the_default_app_registers_the_payment_deadline() -> None:
    """load_app finds process managers beside aggregates and projections."""
    app = load_app()
    assert [m.name for m in app.process_managers] == ["payment_deadline"]
