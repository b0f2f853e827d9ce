"""The argument checks msgspec does not make: unknown nested fields, 64-bit integers, bounded
decimal strings, and field names as dotted paths."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from runtime import InvalidInput, Money, Quantity
from runtime.wire import codec


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: Quantity
    price: Money


@dataclass(frozen=True)
class Basket:
    lines: list[Line]
    note: str | None = None
    extra: dict[str, Line] | None = None
    count: int = 0


def refused(body: dict[str, Any]) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        codec.convert(body, Basket, strict=True)
    return info.value


def line(**changes: Any) -> dict[str, Any]:
    return {"sku": "a", "quantity": 1, "price": "1.50", **changes}


def test_valid_arguments_convert() -> None:
    """In-range arguments convert to their declared types."""
    basket = codec.convert({"lines": [line()], "count": 2**63 - 1}, Basket, strict=True)
    assert basket.lines[0].price == Decimal("1.50")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lines": [line(colour="red")]}, "lines[0].colour"),
        ({"lines": [], "extra": {"k": line(x=1)}}, "extra['k'].x"),
        ({"lines": [], "surprise": 1}, "surprise"),
        ({"lines": [], "count": 2**63}, "count"),
        ({"lines": [line(quantity=0)]}, "lines[0].quantity"),
        ({"lines": [line(quantity=2**40)]}, "lines[0].quantity"),
        ({"lines": [line(price=1.5)]}, "lines[0].price"),
        ({"lines": [line(price=2)]}, "lines[0].price"),
        ({"lines": [line(price="9E+999999")]}, "lines[0].price"),
        ({"lines": [line(price="1E-29")]}, "lines[0].price"),
        ({"lines": [line(price="1" * 29)]}, "lines[0].price"),
        ({"lines": [line(price="NaN")]}, "lines[0].price"),
        ({"lines": [line(price="Infinity")]}, "lines[0].price"),
        ({"lines": [line(price="1,5")]}, "lines[0].price"),
        ({"lines": [line(sku=5)]}, "lines[0].sku"),
        ({}, "lines"),
    ],
)
def test_out_of_range_arguments_name_the_field(body: dict[str, Any], field: str) -> None:
    """Each out-of-range or unknown value is invalid and names its field the same way."""
    assert refused(body).details["field"] == field


def test_errors_quote_only_an_excerpt_of_the_input() -> None:
    """A huge bad value is never echoed whole in the error message."""
    error = refused({"lines": [line(price="9" * 100_000)]})
    assert len(error.message) < 300
    error = refused({"lines": [], "x" * 100_000: 1})
    assert len(error.message) < 300 and len(error.details["field"]) <= 64
