"""Parsing what a query request carries besides its arguments (no NATS)."""

from __future__ import annotations

import pytest

from runtime import InvalidInput
from runtime.read.query_service import min_seq_of


@pytest.mark.parametrize("raw", ["-1", "ten", "1.5"])
def test_a_bad_minimum_sequence_header_is_invalid(raw: str) -> None:
    """A Cqrs-Min-Seq that is no stream sequence is invalid, naming the header."""
    with pytest.raises(InvalidInput, match="Cqrs-Min-Seq") as info:
        min_seq_of({"Cqrs-Min-Seq": raw})
    assert info.value.details["field"] == "Cqrs-Min-Seq"


def test_a_missing_minimum_sequence_is_zero() -> None:
    """Without the header a query needs no minimum sequence."""
    assert min_seq_of(None) == 0 and min_seq_of({"Cqrs-Min-Seq": "12"}) == 12
