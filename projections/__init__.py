"""The example read models: ``orders`` and ``users``, written against ``runtime`` only."""

from .orders import orders
from .users import users

PROJECTIONS = (orders, users)

__all__ = ["PROJECTIONS", "orders", "users"]
