"""Given/when/then specs of every rule of the ``order`` aggregate."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aggregates.order import Line, OrderCancelled, OrderCreated, Status, StatusUpdated, order
from runtime.testing import FIXED_NOW, AggregateSpec

LINES = [
    {"sku": "book", "quantity": 2, "unit_price": "19.90"},
    {"sku": "pen", "quantity": 3, "unit_price": "0.05"},
]
CREATED = OrderCreated(
    user_id="u-1",
    lines=(Line("book", 2, Decimal("19.90")), Line("pen", 3, Decimal("0.05"))),
    total=Decimal("39.95"),
    created_at=FIXED_NOW,
    currency="EUR",
)


def spec() -> AggregateSpec:  # type: ignore[type-arg]
    return AggregateSpec(order, "ord-1")


def moved(*statuses: Status) -> list[object]:
    events: list[object] = [CREATED]
    previous = Status.CREATED
    for status in statuses:
        events.append(StatusUpdated(status=status, previous=previous, at=FIXED_NOW))
        previous = status
    return events


def test_create_computes_the_total_exactly() -> None:
    """The total is the exact decimal sum of quantity times unit price."""
    spec().when("create", {"user_id": "u-1", "lines": LINES}).then(CREATED).then_state(
        exists=True, status=Status.CREATED, total=Decimal("39.95")
    )


def test_an_order_is_created_once() -> None:
    """A second create is rejected."""
    spec().given(CREATED).when("create", {"user_id": "u-1", "lines": LINES}).then_rejected(
        rule="create_once"
    )


def test_lines_must_not_be_empty() -> None:
    """An order without lines is invalid, naming `lines`."""
    spec().when("create", {"user_id": "u-1", "lines": []}).then_invalid("lines")


@pytest.mark.parametrize("quantity", [0, -1])
def test_quantities_must_be_positive(quantity: int) -> None:
    """A zero or negative quantity is invalid, naming the line's quantity."""
    lines = [{"sku": "a", "quantity": quantity, "unit_price": "1"}]
    spec().when("create", {"user_id": "u-1", "lines": lines}).then_invalid("lines[0].quantity")


def test_prices_must_not_be_negative() -> None:
    """A negative unit price is invalid."""
    lines = [{"sku": "a", "quantity": 1, "unit_price": "-0.01"}]
    spec().when("create", {"user_id": "u-1", "lines": lines}).then_invalid("lines[0].unit_price")


def test_a_free_line_is_allowed() -> None:
    """A unit price of zero is fine (a gift)."""
    lines = [{"sku": "gift", "quantity": 1, "unit_price": "0"}]
    spec().when("create", {"user_id": "u-1", "lines": lines}).then_types("order.created.v2")


def test_price_must_be_a_decimal() -> None:
    """A price that is not a decimal string is invalid, naming the field."""
    lines = [{"sku": "a", "quantity": 1, "unit_price": "cheap"}]
    spec().when("create", {"user_id": "u-1", "lines": lines}).then_invalid("lines[0].unit_price")


def test_quantity_must_be_an_integer() -> None:
    """A quantity given as a string is a wrong type."""
    lines = [{"sku": "a", "quantity": "2", "unit_price": "1"}]
    spec().when("create", {"user_id": "u-1", "lines": lines}).then_invalid("lines[0].quantity")


def test_user_id_must_be_a_valid_id() -> None:
    """The user id must be a single subject token."""
    spec().when("create", {"user_id": "u.1", "lines": LINES}).then_invalid("user_id")


@pytest.mark.parametrize(
    ("history", "target"),
    [
        ([], Status.PAID),
        ([Status.PAID], Status.SHIPPED),
        ([Status.PAID, Status.SHIPPED], Status.DELIVERED),
    ],
)
def test_status_moves_one_step(history: list[Status], target: Status) -> None:
    """Each status can move to the next one."""
    spec().given(*moved(*history)).when("update_status", {"status": target.value}).then_state(
        status=target
    )


def test_status_cannot_skip_a_step() -> None:
    """created cannot become shipped directly."""
    spec().given(CREATED).when("update_status", {"status": "shipped"}).then_rejected(
        rule="one_step_at_a_time"
    )


def test_status_cannot_go_back() -> None:
    """shipped cannot become paid again."""
    spec().given(*moved(Status.PAID, Status.SHIPPED)).when(
        "update_status", {"status": "paid"}
    ).then_rejected(rule="one_step_at_a_time")


def test_same_status_again_changes_nothing() -> None:
    """Repeating the current status is accepted and decides nothing."""
    spec().given(*moved(Status.PAID)).when("update_status", {"status": "paid"}).then_nothing()


def test_unknown_status_is_invalid() -> None:
    """A status outside the lifecycle is invalid input."""
    spec().given(CREATED).when("update_status", {"status": "lost"}).then_invalid("status")


def test_status_of_a_missing_order_is_rejected() -> None:
    """No status change for an order that does not exist."""
    spec().when("update_status", {"status": "paid"}).then_rejected(rule="order_must_exist")


def test_status_cannot_be_set_to_cancelled() -> None:
    """Cancelling goes through the cancel command."""
    spec().given(CREATED).when("update_status", {"status": "cancelled"}).then_rejected(
        rule="cancel_by_command"
    )


@pytest.mark.parametrize("history", [[], [Status.PAID]])
def test_cancel_before_shipping(history: list[Status]) -> None:
    """An order can be cancelled while created or paid."""
    previous = history[-1] if history else Status.CREATED
    spec().given(*moved(*history)).when("cancel", {"reason": "oops"}).then(
        OrderCancelled(reason="oops", previous=previous, at=FIXED_NOW)
    ).then_state(status=Status.CANCELLED)


@pytest.mark.parametrize(
    "history", [[Status.PAID, Status.SHIPPED], [Status.PAID, Status.SHIPPED, Status.DELIVERED]]
)
def test_cancel_after_shipping_is_rejected(history: list[Status]) -> None:
    """A shipped or delivered order cannot be cancelled; the message says why."""
    error = (
        spec()
        .given(*moved(*history))
        .when("cancel", {"reason": "late"})
        .then_rejected(rule="cancel_before_shipping")
    )
    assert "only be cancelled while created or paid" in error.message


def test_cancel_twice_changes_nothing() -> None:
    """Cancelling a cancelled order is accepted and decides nothing."""
    cancelled = OrderCancelled(reason="x", previous=Status.CREATED, at=FIXED_NOW)
    spec().given(CREATED, cancelled).when("cancel", {}).then_nothing()


def test_cancelled_order_cannot_change_status() -> None:
    """A cancelled order's status is final."""
    cancelled = OrderCancelled(reason="x", previous=Status.CREATED, at=FIXED_NOW)
    spec().given(CREATED, cancelled).when("update_status", {"status": "paid"}).then_rejected(
        rule="cancelled_is_final"
    )


def test_cancel_of_a_missing_order_is_rejected() -> None:
    """No cancel for an order that does not exist."""
    spec().when("cancel", {}).then_rejected(rule="order_must_exist")
