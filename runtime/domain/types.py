"""Bounded argument types for commands and queries, checked before any handler runs.

Annotate a field of a command's or query's arguments with one of these and a value out of range
is an ``invalid`` error naming the field, like a wrong type. Every ``Decimal`` argument is
already held to the rules of :data:`Money` (see :mod:`runtime.wire.strict`); the alias says so
where it matters.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from msgspec import Meta

from ..wire.naming import ID_PATTERN
from ..wire.strict import DECIMAL_DIGITS, DECIMAL_EXPONENT

MAX_QUANTITY = 1_000_000_000

Quantity = Annotated[int, Meta(ge=1, le=MAX_QUANTITY, description="a count of items, 1 to 1e9")]
"""A positive count of something, at most a billion."""

AggregateId = Annotated[
    str,
    Meta(pattern=f"^{ID_PATTERN.pattern}$", description="an aggregate id ([A-Za-z0-9_-]{1,128})"),
]
"""The id of an aggregate, in a command or query argument (a single subject token)."""

Money = Annotated[
    Decimal,
    Meta(
        description=f"a decimal string such as '19.90': at most {DECIMAL_DIGITS} significant "
        f"digits, magnitude 1e-{DECIMAL_EXPONENT} to 1e{DECIMAL_EXPONENT}; no JSON numbers"
    ),
]
"""An amount of money: a decimal string, never a float."""
