"""Given/when/then specs of the payment deadline, the process manager beside ``order``."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from aggregates.order import Line, OrderCancelled, OrderCreated, Status, StatusUpdated
from aggregates.payment_deadline import TIMER, payment_deadline, payment_timeout
from runtime import CancelTimer, Send, SetTimer
from runtime.testing import FIXED_NOW, ProcessSpec

CREATED = OrderCreated(
    user_id="u-1",
    lines=(Line("book", 1, Decimal("9.90")),),
    total=Decimal("9.90"),
    created_at=FIXED_NOW,
    currency="EUR",
)
PAID = StatusUpdated(status=Status.PAID, previous=Status.CREATED, at=FIXED_NOW)
CANCELLED = OrderCancelled(reason="changed my mind", previous=Status.CREATED, at=FIXED_NOW)
TIMEOUT_CANCEL = Send("order", "ord-1", "cancel", {"reason": "payment timeout"})


def spec() -> ProcessSpec:  # type: ignore[type-arg]
    return ProcessSpec(payment_deadline)


def test_a_new_order_starts_its_deadline_from_its_creation_time() -> None:
    """Creating an order sets the deadline timer, due the timeout after the recorded creation."""
    (
        spec()
        .when("order", "ord-1", CREATED)
        .then_timers(SetTimer(TIMER, at=FIXED_NOW + timedelta(seconds=1800)))
        .then_sends()
        .then_state(open=True)
    )


def test_the_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """CQRS_ORDER_PAYMENT_TIMEOUT sets the deadline's length in seconds."""
    monkeypatch.setenv("CQRS_ORDER_PAYMENT_TIMEOUT", "2")
    spec().when("order", "ord-1", CREATED).then_timers(
        SetTimer(TIMER, at=FIXED_NOW + timedelta(seconds=2))
    )


def test_a_timeout_that_is_not_a_positive_number_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A malformed CQRS_ORDER_PAYMENT_TIMEOUT is an error naming the variable."""
    monkeypatch.setenv("CQRS_ORDER_PAYMENT_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="CQRS_ORDER_PAYMENT_TIMEOUT"):
        payment_timeout()


def test_an_unpaid_order_is_cancelled_when_its_deadline_passes() -> None:
    """The deadline firing for an order still created sends one cancel with the timeout reason."""
    (
        spec()
        .given("order", "ord-1", CREATED)
        .when_timer(TIMER, "ord-1")
        .then_sends(TIMEOUT_CANCEL)
        .then_state(open=False, expired=True)
    )


def test_paying_cancels_the_timer() -> None:
    """Paying an order stops its deadline timer."""
    spec().given("order", "ord-1", CREATED).when("order", "ord-1", PAID).then_timers(
        CancelTimer(TIMER)
    ).then_state(open=False)


def test_cancelling_cancels_the_timer() -> None:
    """Cancelling an order first stops its deadline timer."""
    spec().given("order", "ord-1", CREATED).when("order", "ord-1", CANCELLED).then_timers(
        CancelTimer(TIMER)
    )


def test_a_timer_firing_after_payment_is_ignored() -> None:
    """A deadline that fires for an order that was paid meanwhile sends nothing."""
    spec().given("order", "ord-1", CREATED, PAID).when_timer(TIMER, "ord-1").then_nothing()


def test_instances_are_kept_apart_by_order_id() -> None:
    """Paying one order leaves the deadline of another running."""
    (
        spec()
        .given("order", "ord-1", CREATED)
        .given("order", "ord-2", CREATED, PAID)
        .when_timer(TIMER, "ord-1")
        .then_sends(TIMEOUT_CANCEL)
    )


def test_later_status_changes_do_nothing() -> None:
    """Shipping a paid order neither sends nor touches a timer."""
    shipped = StatusUpdated(status=Status.SHIPPED, previous=Status.PAID, at=FIXED_NOW)
    spec().given("order", "ord-1", CREATED, PAID).when("order", "ord-1", shipped).then_nothing()
