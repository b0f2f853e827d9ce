"""The payment deadline: an order still unpaid when its deadline passes is cancelled.

A domain policy, so it lives beside the order aggregate and is written against ``runtime`` only.
Creating an order starts its timer, due ``CQRS_ORDER_PAYMENT_TIMEOUT`` seconds (default 1800)
after the order's creation time as the aggregate recorded it; paying or cancelling the order
first stops the timer. A timer that still fires for an order that has moved on (it raced the
payment) finds the instance closed and sends nothing, and the order's own rules would refuse a
late cancel anyway.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import timedelta

from runtime import CancelTimer, ProcessManager, Reaction, Send, SetTimer, TimerFired

from .order import OrderCancelled, OrderCreated, Status, StatusUpdated, order

TIMER = "payment_deadline"
REASON = "payment timeout"


def payment_timeout() -> timedelta:
    """The deadline's length, from ``CQRS_ORDER_PAYMENT_TIMEOUT`` (seconds, default 1800)."""
    raw = os.environ.get("CQRS_ORDER_PAYMENT_TIMEOUT", "1800")
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"CQRS_ORDER_PAYMENT_TIMEOUT must be seconds, got {raw!r}") from None
    if seconds <= 0:
        raise ValueError(f"CQRS_ORDER_PAYMENT_TIMEOUT must be positive, got {raw!r}")
    return timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class AwaitingPayment:
    """One order's deadline: open from creation until paid, cancelled or expired."""

    open: bool = False
    expired: bool = False


# --8<-- [start:reactions]
payment_deadline = ProcessManager("payment_deadline", AwaitingPayment(), follows=[order])


@payment_deadline.on("order.created.v2")
def created(state: AwaitingPayment, event: OrderCreated) -> Reaction[AwaitingPayment]:
    due = event.created_at + payment_timeout()
    return Reaction(replace(state, open=True), timers=[SetTimer(TIMER, at=due)])


@payment_deadline.on("order.status_updated.v1")
def status_updated(
    state: AwaitingPayment, event: StatusUpdated
) -> Reaction[AwaitingPayment] | None:
    if not state.open or event.status != Status.PAID:
        return None
    return Reaction(replace(state, open=False), timers=[CancelTimer(TIMER)])


@payment_deadline.on("order.cancelled.v1")
def cancelled(state: AwaitingPayment, event: OrderCancelled) -> Reaction[AwaitingPayment] | None:
    if not state.open:
        return None
    return Reaction(replace(state, open=False), timers=[CancelTimer(TIMER)])


@payment_deadline.timer(TIMER)
def expired(state: AwaitingPayment, timer: TimerFired) -> Reaction[AwaitingPayment] | None:
    if not state.open:
        return None  # paid or cancelled in the meantime
    cancel = Send("order", timer.key, "cancel", {"reason": REASON})
    return Reaction(replace(state, open=False, expired=True), commands=[cancel])
    # --8<-- [end:reactions]
