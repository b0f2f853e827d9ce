"""Version 2 of the ``orders`` projection: the same handlers and queries, as a deploy of changed
projection code would bring them (a changed model or handler meaning bumps ``version``)."""

from __future__ import annotations

from aggregates.order import order
from projections.orders import (
    OrdersModel,
    cancelled,
    created,
    get_order_by_id,
    get_orders_for_user,
    status_updated,
)
from runtime import Projection

orders_v2 = Projection("orders", OrdersModel, follows=[order], version=2)
orders_v2.on("order.created.v2")(created)
orders_v2.on("order.status_updated.v1")(status_updated)
orders_v2.on("order.cancelled.v1")(cancelled)
orders_v2.query("get_order_by_id")(get_order_by_id)
orders_v2.query("get_orders_for_user")(get_orders_for_user)
