"""Bounded argument types for commands and queries, checked before any handler runs.

Annotate a field of a command's or query's arguments with one of these and a value out of range
is an ``invalid`` error naming the field, like a wrong type, and the OpenAPI document states the
same bounds. Constrain your own fields the same way, with ``Annotated[str, Meta(pattern=...,
max_length=...)]`` and so on: those constraints are both the check and the schema. Every
``Decimal`` argument is a plain decimal string (see :mod:`runtime.wire.strict`);
:data:`Money` also refuses a sign.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import msgspec.inspect
from msgspec import Meta

from ..errors import ConfigurationError
from ..wire.naming import ID_PATTERN
from ..wire.strict import DECIMAL_DIGITS, DECIMAL_MAX_LENGTH

MAX_QUANTITY = 1_000_000_000

Quantity = Annotated[int, Meta(ge=1, le=MAX_QUANTITY, description="a count of items, 1 to 1e9")]

AggregateId = Annotated[
    str,
    Meta(
        pattern=f"^{ID_PATTERN.pattern}$",
        description="an aggregate id ([A-Za-z0-9_-]{1,128})",
        examples=["u-1"],
    ),
]
"""The id of an aggregate, in a command or query argument (a single subject token)."""

# Whitespace and control characters spelled out, so that the pattern means the same to Python's
# re (msgspec's check; its \s also takes \x1c-\x1f and \x85) and to the ECMA-262 regular
# expressions of JSON Schema; it covers everything str.strip() removes.
BLANK = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

NotBlank = Annotated[
    str,
    Meta(min_length=1, pattern=f"[^{BLANK}]", description="text with a visible character"),
]
"""Text with at least one character that is neither whitespace nor a control character (so
``.strip()`` leaves it non-empty). Bound its length where you use it:
``Annotated[NotBlank, Meta(max_length=200)]``."""

Money = Annotated[
    Decimal,
    Meta(
        description="a non-negative decimal string such as '19.90' (no sign, no exponent, at "
        f"most {DECIMAL_MAX_LENGTH} characters); never a JSON number",
        examples=["19.90"],
        # the pattern the runtime checks too: the integer part bounds the magnitude below 1e28
        extra_json_schema={"pattern": rf"^[0-9]{{1,{DECIMAL_DIGITS}}}(\.[0-9]+)?$"},
    ),
]

PositiveMoney = Annotated[
    Decimal,
    Meta(
        description="a positive decimal string such as '19.90' (greater than zero, no sign, no "
        f"exponent, at most {DECIMAL_MAX_LENGTH} characters); never a JSON number",
        examples=["19.90"],
        # Money's pattern with a non-zero digit required: the check is the schema
        extra_json_schema={"pattern": rf"^(?=.*[1-9])[0-9]{{1,{DECIMAL_DIGITS}}}(\.[0-9]+)?$"},
    ),
]

# help() shows an alias's own __doc__ (else typing.Annotated's), so the aliases carry theirs.
Money.__doc__ = """An amount of money: a non-negative decimal string such as ``"19.90"``, never a
float or a JSON number, at most 28 significant digits. For amounts that must be above zero use
:data:`PositiveMoney`; msgspec's numeric bounds (``Meta(gt=0)``) do not apply to decimals."""
PositiveMoney.__doc__ = (
    """An amount of money greater than zero: :data:`Money` that also refuses ``"0"``."""
)
Quantity.__doc__ = """A count of items, 1 to 1,000,000,000 (an ``int``). Its bounds are set, so
other bounds start from ``int``: ``Annotated[int, Meta(ge=1, le=100)]``."""


def usable(type_: Any, definition: str) -> None:
    """Refuse, when it is declared, a type that commands, queries or events cannot use (msgspec
    cannot build a decoder for it), as a ``configuration`` error naming ``definition``."""
    if type_ is None:
        return
    try:
        msgspec.inspect.type_info(type_)
    except (TypeError, ValueError) as exc:
        hint = ""
        if "numeric type" in str(exc):
            hint = (
                "; bound a Money amount with PositiveMoney (msgspec's gt/ge/lt/le apply to int "
                "and float only)"
            )
        elif "Multiple `Meta` annotations" in str(exc):
            hint = (
                "; the type already sets that constraint (Quantity: ge=1, le=1e9): start from "
                "the base type instead, e.g. Annotated[int, Meta(ge=1, le=100)]"
            )
        raise ConfigurationError(f"{definition}: its type cannot be used: {exc}{hint}") from None
