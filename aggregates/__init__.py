"""The example domain: ``user`` and ``order`` aggregates, written against ``runtime`` only."""

from .order import order
from .user import user

AGGREGATES = (user, order)

__all__ = ["AGGREGATES", "order", "user"]
