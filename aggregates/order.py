"""The ``order`` aggregate: lines with decimal prices, a computed total and a status lifecycle.

Statuses move ``created -> paid -> shipped -> delivered`` one step at a time; an order can be
cancelled while it is ``created`` or ``paid``. An order does not check that its user exists:
aggregates never query each other.

Orders gained a currency after their first release: ``order.created.v2`` carries it, and the
``order.created.v1`` events already stored (written before currencies existed, all in euros) are
read as v2 with ``currency = "EUR"`` by an upcaster. Stored events are never rewritten.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from runtime import (
    Aggregate,
    AggregateId,
    CommandContext,
    InvalidInput,
    Money,
    Quantity,
    Rejected,
)


class Status(enum.StrEnum):
    CREATED = "created"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


NEXT_STATUS = {
    Status.CREATED: Status.PAID,
    Status.PAID: Status.SHIPPED,
    Status.SHIPPED: Status.DELIVERED,
}
CANCELLABLE = frozenset({Status.CREATED, Status.PAID})
MAX_LINES = 500
MAX_SKU = 64
CURRENCY = re.compile(r"[A-Z]{3}")  # an ISO 4217 code
DEFAULT_CURRENCY = "EUR"  # the currency of every order created before orders had one


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    quantity: Quantity
    unit_price: Money


# -- commands -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    user_id: AggregateId
    lines: list[Line]
    currency: str = DEFAULT_CURRENCY


@dataclass(frozen=True, slots=True)
class UpdateStatus:
    status: Status


@dataclass(frozen=True, slots=True)
class Cancel:
    reason: str = ""


# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderCreated:
    """``order.created.v2``: v1 plus ``currency``."""

    user_id: str
    lines: tuple[Line, ...]
    total: Decimal
    created_at: datetime
    currency: str


@dataclass(frozen=True, slots=True)
class StatusUpdated:
    status: Status
    previous: Status
    at: datetime


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    reason: str
    previous: Status
    at: datetime


# -- state ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderState:
    exists: bool = False
    user_id: str = ""
    lines: tuple[Line, ...] = ()
    total: Decimal = Decimal(0)
    status: Status = Status.CREATED
    currency: str = DEFAULT_CURRENCY


order = Aggregate("order", OrderState())


def _existing(state: OrderState) -> OrderState:
    if not state.exists:
        raise Rejected("the order does not exist", rule="order_must_exist")
    return state


@order.command("create")
def create(state: OrderState, cmd: Create, ctx: CommandContext) -> OrderCreated:
    if state.exists:
        raise Rejected("the order already exists", rule="create_once")
    if not cmd.lines:
        raise InvalidInput("an order needs at least one line", details={"field": "lines"})
    if CURRENCY.fullmatch(cmd.currency) is None:
        raise InvalidInput(
            "currency must be a three-letter ISO 4217 code such as EUR",
            details={"field": "currency"},
        )
    if len(cmd.lines) > MAX_LINES:
        raise InvalidInput(f"an order has at most {MAX_LINES} lines", details={"field": "lines"})
    for i, line in enumerate(cmd.lines):
        if not line.sku.strip() or len(line.sku) > MAX_SKU:
            raise InvalidInput(
                f"sku must be 1 to {MAX_SKU} characters", details={"field": f"lines[{i}].sku"}
            )
        if line.quantity <= 0:
            raise InvalidInput(
                "quantity must be positive", details={"field": f"lines[{i}].quantity"}
            )
        if not line.unit_price.is_finite() or line.unit_price < 0:
            raise InvalidInput(
                "unit_price must be a non-negative decimal",
                details={"field": f"lines[{i}].unit_price"},
            )
    total = sum((line.unit_price * line.quantity for line in cmd.lines), Decimal(0))
    return OrderCreated(
        user_id=cmd.user_id,
        lines=tuple(cmd.lines),
        total=total,
        created_at=ctx.now,
        currency=cmd.currency,
    )


@order.command("update_status")
def update_status(
    state: OrderState, cmd: UpdateStatus, ctx: CommandContext
) -> StatusUpdated | None:
    current = _existing(state).status
    if cmd.status == current:
        return None  # already there: a retried update is accepted and changes nothing
    if current == Status.CANCELLED:
        raise Rejected("a cancelled order cannot change status", rule="cancelled_is_final")
    if cmd.status == Status.CANCELLED:
        raise Rejected("use the cancel command to cancel an order", rule="cancel_by_command")
    if NEXT_STATUS.get(current) != cmd.status:
        raise Rejected(
            f"status moves one step at a time: {current} cannot become {cmd.status}",
            rule="one_step_at_a_time",
            current=current.value,
        )
    return StatusUpdated(status=cmd.status, previous=current, at=ctx.now)


@order.command("cancel")
def cancel(state: OrderState, cmd: Cancel, ctx: CommandContext) -> OrderCancelled | None:
    current = _existing(state).status
    if current == Status.CANCELLED:
        return None  # cancelling twice is accepted
    if current not in CANCELLABLE:
        raise Rejected(
            f"an order can only be cancelled while created or paid, it is {current}",
            rule="cancel_before_shipping",
            current=current.value,
        )
    return OrderCancelled(reason=cmd.reason, previous=current, at=ctx.now)


@order.event("order.created.v2")
def created(state: OrderState, event: OrderCreated) -> OrderState:
    return OrderState(
        exists=True,
        user_id=event.user_id,
        lines=event.lines,
        total=event.total,
        currency=event.currency,
    )


@order.upcaster("order.created.v1")
def created_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Orders created before currencies existed were all in euros."""
    return {**data, "currency": DEFAULT_CURRENCY}


@order.event("order.status_updated.v1")
def status_updated(state: OrderState, event: StatusUpdated) -> OrderState:
    return replace(state, status=event.status)


@order.event("order.cancelled.v1")
def cancelled(state: OrderState, event: OrderCancelled) -> OrderState:
    return replace(state, status=Status.CANCELLED)
