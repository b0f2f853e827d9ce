"""The argument checks msgspec does not make: unknown nested fields, 64-bit integers, bounded
decimal strings, JSON Schema's `$`, and field names as dotted paths; and the same rules written
into the JSON schema."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from runtime import AggregateId, InvalidInput, Money, Quantity
from runtime.wire import codec
from runtime.wire.strict import DECIMAL_MAX_LENGTH, DECIMAL_PATTERN, state_checks


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


@pytest.mark.parametrize("price", ["1e3", "+1", ".5", "5.", " 1.5", "1.5 ", "1.5\n", "-1"])
def test_decimals_are_plain_strings_and_money_has_no_sign(price: str) -> None:
    """A decimal is digits with an optional fraction: no exponent, sign, padding or newline, as
    the pattern the OpenAPI document states."""
    assert refused({"lines": [line(price=price)]}).details["field"] == "lines[0].price"


@dataclass(frozen=True)
class Owner:
    owner: AggregateId
    amount: Decimal = Decimal(0)


def test_a_pattern_ending_in_dollar_does_not_take_a_final_newline() -> None:
    """`$` matches only at the very end, as in JSON Schema: an id followed by a newline is
    invalid (Python's `$` alone would let it through)."""
    with pytest.raises(InvalidInput) as info:
        codec.convert({"owner": "abc\n"}, Owner, strict=True)
    assert info.value.details["field"] == "owner"
    assert codec.convert({"owner": "abc"}, Owner, strict=True).owner == "abc"


def test_any_decimal_may_be_signed_within_29_characters() -> None:
    """A plain Decimal argument takes a minus sign; 28 digits and a point fit, 30 characters
    do not."""
    assert codec.convert({"owner": "a", "amount": "-0.5"}, Owner, strict=True).amount < 0
    assert codec.convert({"owner": "a", "amount": "1" * 27 + ".5"}, Owner, strict=True)
    with pytest.raises(InvalidInput):
        codec.convert({"owner": "a", "amount": "1" * 28 + ".5"}, Owner, strict=True)


def test_an_integral_float_is_an_integer() -> None:
    """JSON Schema counts 2.0 as an integer, so an integer field takes it; 2.5 stays invalid."""
    basket = codec.convert({"lines": [line(quantity=2.0)], "count": 3.0}, Basket, strict=True)
    assert basket.lines[0].quantity == 2 and type(basket.count) is int
    assert refused({"lines": [line(quantity=2.5)]}).details["field"] == "lines[0].quantity"


def test_the_json_schema_states_the_checks() -> None:
    """state_checks closes objects, bounds integers to 64 bits and gives decimals their
    pattern, keeping a narrower pattern a type declares (Money's, without sign)."""
    _, components = msgspec.json.schema_components([Basket, Owner])
    state_checks(components)
    basket, line_schema, owner = components["Basket"], components["Line"], components["Owner"]
    assert basket["additionalProperties"] is False and line_schema["additionalProperties"] is False
    assert basket["properties"]["count"]["maximum"] == 2**63 - 1
    assert line_schema["properties"]["quantity"]["minimum"] == 1
    assert owner["properties"]["amount"]["pattern"] == DECIMAL_PATTERN
    assert line_schema["properties"]["price"]["pattern"] != DECIMAL_PATTERN
    assert line_schema["properties"]["price"]["maxLength"] == DECIMAL_MAX_LENGTH
