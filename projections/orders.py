"""The ``orders`` read model: every order as its clients see it, indexed by user.

Rows hold display-ready values (decimal amounts and times as the strings the wire carries), so a
query answer is the row as it is, and a snapshot of a million rows restores quickly. The by-user
index keeps each user's order ids oldest first, so ``get_orders_for_user`` never scans orders
that are not that user's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from aggregates.order import OrderCancelled, OrderCreated, Status, StatusUpdated, order
from runtime import AggregateId, EventMeta, NotFound, Projection

MAX_PAGE = 500


# --8<-- [start:rows]
# Rows are msgspec Structs: restoring a million of them from a snapshot takes a fifth less time
# than slots dataclasses, and with gc=False (a row never refers back to itself) the cycle
# collector neither tracks nor scans them.
class LineView(msgspec.Struct, gc=False):
    sku: str
    quantity: int
    unit_price: str


class OrderView(msgspec.Struct, gc=False):
    order_id: str
    user_id: str
    status: str
    total: str
    currency: str
    lines: list[LineView]
    created_at: str
    updated_at: str
    cancel_reason: str | None = None
    # --8<-- [end:rows]


# --8<-- [start:model]
@dataclass
class OrdersModel:
    orders: dict[str, OrderView] = field(default_factory=dict)
    # user id -> that user's order ids, oldest first
    by_user: dict[str, list[str]] = field(default_factory=dict)


orders = Projection("orders", OrdersModel, follows=[order])
# --8<-- [end:model]


def _row(model: OrdersModel, meta: EventMeta) -> OrderView:
    row = model.orders.get(meta.aggregate_id)
    if row is None:
        raise LookupError(f"order {meta.aggregate_id} changed before it was created")
    return row


# --8<-- [start:created]
@orders.on("order.created.v2")
def created(model: OrdersModel, event: OrderCreated, meta: EventMeta) -> None:
    if meta.aggregate_id in model.orders:
        raise LookupError(f"order {meta.aggregate_id} was created twice")
    at = event.created_at.isoformat()
    model.orders[meta.aggregate_id] = OrderView(
        order_id=meta.aggregate_id,
        user_id=event.user_id,
        status=Status.CREATED.value,
        total=str(event.total),
        currency=event.currency,
        lines=[LineView(line.sku, line.quantity, str(line.unit_price)) for line in event.lines],
        created_at=at,
        updated_at=at,
    )
    model.by_user.setdefault(event.user_id, []).append(meta.aggregate_id)
    # --8<-- [end:created]


@orders.on("order.status_updated.v1")
def status_updated(model: OrdersModel, event: StatusUpdated, meta: EventMeta) -> None:
    row = _row(model, meta)
    row.status = event.status.value
    row.updated_at = event.at.isoformat()


@orders.on("order.cancelled.v1")
def cancelled(model: OrdersModel, event: OrderCancelled, meta: EventMeta) -> None:
    row = _row(model, meta)
    row.status = Status.CANCELLED.value
    row.cancel_reason = event.reason
    row.updated_at = event.at.isoformat()


@dataclass(frozen=True, slots=True)
class GetOrderById:
    order_id: AggregateId


@dataclass(frozen=True, slots=True)
class GetOrdersForUser:
    user_id: AggregateId
    status: Status | None = None
    limit: Annotated[int, Meta(ge=1, le=MAX_PAGE)] = 50
    offset: Annotated[int, Meta(ge=0)] = 0


# --8<-- [start:query]
@orders.query("get_order_by_id")
def get_order_by_id(model: OrdersModel, args: GetOrderById) -> OrderView:
    row = model.orders.get(args.order_id)
    if row is None:
        raise NotFound(f"no order {args.order_id!r}", details={"order_id": args.order_id})
    return row
    # --8<-- [end:query]


@orders.query("get_orders_for_user")
def get_orders_for_user(model: OrdersModel, args: GetOrdersForUser) -> dict[str, Any]:
    """A user's orders, newest first, optionally of one status, a page at a time."""
    ids = model.by_user.get(args.user_id, [])
    rows = (model.orders[order_id] for order_id in reversed(ids))
    if args.status is not None:
        wanted = args.status.value
        matching = [row for row in rows if row.status == wanted]
    else:
        matching = list(rows)
    return {
        "user_id": args.user_id,
        "status": args.status,
        "total": len(matching),
        "limit": args.limit,
        "offset": args.offset,
        "orders": matching[args.offset : args.offset + args.limit],
    }
