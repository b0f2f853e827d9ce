"""Wire encoding: exact round trips of typed values and field-naming validation errors."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from runtime import InvalidInput
from runtime.wire import codec


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Sample:
    amount: Decimal
    at: datetime
    key: uuid.UUID
    colour: Colour
    tags: tuple[str, ...] = ()


def test_typed_values_round_trip_exactly() -> None:
    """Decimal (with its exponent), aware datetimes, UUIDs and enums survive the wire."""
    value = Sample(
        amount=Decimal("1234567890.123456789000"),
        at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2))),
        key=uuid.uuid4(),
        colour=Colour.BLUE,
        tags=("a", "b"),
    )
    decoded = codec.convert(codec.loads(codec.dumps(value)), Sample)
    assert decoded == value
    assert str(decoded.amount) == "1234567890.123456789000"
    assert decoded.at.utcoffset() == timedelta(hours=2)


def test_decimals_travel_as_strings() -> None:
    """A Decimal is encoded as a JSON string so no float rounding can happen."""
    assert codec.dumps({"p": Decimal("0.10")}) == b'{"p":"0.10"}'


def test_wrong_type_names_the_field() -> None:
    """A validation error says which field is wrong."""
    with pytest.raises(InvalidInput) as info:
        codec.convert({"amount": "1", "at": "x", "key": str(uuid.uuid4()), "colour": "red"}, Sample)
    assert info.value.details["field"] == "at"


def test_missing_field_is_named() -> None:
    """A missing required field is named in the error details."""
    with pytest.raises(InvalidInput) as info:
        codec.convert({"amount": "1"}, Sample)
    assert info.value.details["field"] == "at"


def test_unknown_fields_can_be_refused() -> None:
    """With strict, an unexpected field is invalid and named."""
    body = {
        "amount": "1",
        "at": datetime.now(UTC).isoformat(),
        "key": str(uuid.uuid4()),
        "colour": "red",
        "colour2": "x",
    }
    with pytest.raises(InvalidInput) as info:
        codec.convert(body, Sample, strict=True)
    assert info.value.details["field"] == "colour2"


@pytest.mark.parametrize("body", [b"{", b"[1, 2]", b'"text"', b"nul", b"\xff\xfe"])
def test_bad_bodies_are_invalid(body: bytes) -> None:
    """Malformed JSON and non-object bodies are invalid input, not crashes."""
    with pytest.raises(InvalidInput):
        codec.loads_object(body)


def test_empty_body_is_an_empty_object() -> None:
    """A request without a body means no arguments."""
    assert codec.loads_object(b"") == {}
