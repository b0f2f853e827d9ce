"""Decoding arguments from JSON bytes in one pass gives what the general way gives: the same
value, or the same ``invalid`` error naming the same field."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import AggregateId, InvalidInput, Money, Quantity
from runtime.wire import codec
from runtime.wire.args import ArgumentsDecoder


class Status(enum.Enum):
    OPEN = "open"
    SHUT = "shut"


@dataclass(frozen=True)
class ById:
    id: AggregateId


@dataclass(frozen=True)
class Page:
    user_id: AggregateId
    status: Status | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 50
    offset: int = 0
    ratio: float = 1.0
    exact: bool = False


class PageStruct(msgspec.Struct, frozen=True):
    user_id: str
    count: Quantity = 1


@dataclass(frozen=True)
class Priced:  # a decimal: only the general way states its rules
    price: Money


@dataclass(frozen=True)
class Nested:  # a nested object: only the general way refuses its unknown fields
    inner: ById


def general(data: bytes, type_: Any) -> Any:
    return codec.convert(codec.loads_object(data), type_, strict=True)


def outcome(decode: Any, data: bytes, type_: Any) -> Any:
    try:
        return ("ok", decode(data, type_))
    except InvalidInput as exc:
        return ("invalid", exc.message, exc.details)


def one_pass(data: bytes, type_: Any) -> Any:
    return ArgumentsDecoder(type_).decode(data)


@pytest.mark.parametrize("type_", [ById, Page, PageStruct])
def test_plain_argument_types_are_decoded_in_one_pass(type_: Any) -> None:
    """Types whose every check a mirror can state take the one-pass way."""
    assert ArgumentsDecoder(type_).one_pass


@pytest.mark.parametrize("type_", [Priced, Nested, dict[str, Any]])
def test_types_with_checks_a_mirror_cannot_state_go_the_general_way(type_: Any) -> None:
    """Decimals, nested objects and free-form bodies are decoded the general way only."""
    assert not ArgumentsDecoder(type_).one_pass


BODIES = [
    b'{"id": "a-1"}',
    b'{"id": "a-1", "other": 1}',  # unknown field
    b'{"id": "a-1\\n"}',  # a final newline the pattern's "$" would let through
    b'{"id": "a.1"}',
    b'{"id": 5}',
    b"{}",
    b"",
    b"  ",
    b"[]",
    b"nope",
    b'{"user_id": "u", "limit": 5.0}',  # an integral float for an integer
    b'{"user_id": "u", "offset": 123456789012345678901234567890}',  # beyond 64 bits
    b'{"user_id": "u", "offset": 9223372036854775808}',
    b'{"user_id": "u", "offset": -9223372036854775808}',
    b'{"user_id": "u", "limit": 0}',
    b'{"user_id": "u", "status": "open", "ratio": 2, "exact": true}',
    b'{"user_id": "u", "status": "ajar"}',
    b'{"user_id": "u", "status": null}',
    b'{"user_id": "u", "count": 0}',
    b'{"user_id": "u", "count": 3, "user_id": "v"}',  # a repeated key: the last one counts
    b'{"price": "1.50"}',
    b'{"price": 1.5}',
    b'{"inner": {"id": "a", "x": 1}}',
]


@pytest.mark.parametrize("type_", [ById, Page, PageStruct, Priced, Nested])
@pytest.mark.parametrize("data", BODIES)
def test_one_pass_decoding_matches_the_general_way(data: bytes, type_: Any) -> None:
    """Every body decodes to the same value, or is refused with the same error, either way."""
    assert outcome(one_pass, data, type_) == outcome(general, data, type_)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
FIELDS = st.sampled_from(["id", "user_id", "status", "limit", "offset", "ratio", "exact", "x"])
VALUES = JSON | st.sampled_from(["open", "a-1", "a-1\n", 2**63, -(2**63) - 1, 1.0, 7])


@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(FIELDS, VALUES, max_size=5))
def test_any_object_decodes_alike_either_way(body: dict[str, Any]) -> None:
    """For objects of any fields and values, both ways agree on every type."""
    data = json.dumps(body).encode()  # orjson refuses integers beyond 64 bits
    for type_ in (ById, Page, PageStruct):
        assert outcome(one_pass, data, type_) == outcome(general, data, type_)
