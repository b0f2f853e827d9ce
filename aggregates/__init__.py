"""The example domain: ``user`` and ``order`` aggregates and the orders' payment deadline,
written against ``runtime`` only."""

from .order import order
from .payment_deadline import payment_deadline
from .user import user

AGGREGATES = (user, order)
PROCESS_MANAGERS = (payment_deadline,)

__all__ = ["AGGREGATES", "PROCESS_MANAGERS", "order", "payment_deadline", "user"]
