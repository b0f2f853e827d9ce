"""Ids and names on the wire are single subject tokens, checked before anything is sent."""

from __future__ import annotations

import pytest

from runtime import InvalidInput, check_id
from runtime.wire.naming import split_event_type


@pytest.mark.parametrize("good", ["ord-42", "A_b-9", "x" * 128])
def test_valid_ids(good: str) -> None:
    """Letters, digits, dash and underscore up to 128 characters are accepted."""
    assert check_id(good) == good


@pytest.mark.parametrize("bad", ["", "a.b", "a*", "a>", "a b", "x" * 129, "é", "a\n", None, 42])
def test_invalid_ids(bad: object) -> None:
    """Dots, wildcards, spaces, non-ASCII, over-long and non-string ids are refused."""
    with pytest.raises(InvalidInput) as info:
        check_id(bad)
    assert info.value.details["field"] == "id"


def test_event_types_carry_a_version() -> None:
    """Event type names split into a dotted name and a version."""
    assert split_event_type("order.created.v12") == ("order.created", 12)
    with pytest.raises(ValueError):
        split_event_type("OrderCreated")
