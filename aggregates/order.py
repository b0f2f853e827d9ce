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
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from msgspec import Meta

from runtime import (
    Aggregate,
    AggregateId,
    CommandContext,
    Money,
    NotBlank,
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
DEFAULT_CURRENCY = "EUR"  # the currency of every order created before orders had one

# Input rules live on the argument types: the runtime checks them before a handler runs and the
# OpenAPI document states them.
Sku = Annotated[NotBlank, Meta(max_length=64, examples=["book"])]
Currency = Annotated[
    str, Meta(pattern=r"^[A-Z]{3}$", description="an ISO 4217 code", examples=["EUR"])
]


@dataclass(frozen=True, slots=True)
class Line:
    sku: Sku
    quantity: Quantity
    unit_price: Money


# -- commands -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    user_id: AggregateId
    lines: Annotated[list[Line], Meta(min_length=1, max_length=MAX_LINES)]
    currency: Currency = DEFAULT_CURRENCY


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


# --8<-- [start:cancel]
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
    # --8<-- [end:cancel]


# --8<-- [start:upcast]
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
    # --8<-- [end:upcast]


@order.event("order.status_updated.v1")
def status_updated(state: OrderState, event: StatusUpdated) -> OrderState:
    return replace(state, status=event.status)


# --8<-- [start:evolve]
@order.event("order.cancelled.v1")
def cancelled(state: OrderState, event: OrderCancelled) -> OrderState:
    return replace(state, status=Status.CANCELLED)
    # --8<-- [end:evolve]
