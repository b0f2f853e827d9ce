"""Validation messages in JSON's words, naming the field once; rejections with their rule."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from runtime import InvalidInput, PositiveMoney, Rejected
from runtime.cli import exits
from runtime.wire import codec


@dataclass
class Line:
    quantity: int


@dataclass
class Order:
    owner: str
    lines: list[Line]


@dataclass
class Deposit:
    amount: PositiveMoney


def invalid(body: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        codec.convert(body, Order, strict=True)
    return info.value


@pytest.mark.parametrize(
    ("body", "kind"), [(b"null", "null"), (b"[1]", "an array"), (b'"x"', "a string")]
)
def test_a_body_that_is_not_an_object_is_named_in_json_s_words(body: bytes, kind: str) -> None:
    """A JSON null body is "null", never Python's NoneType."""
    with pytest.raises(InvalidInput) as info:
        codec.loads_object(body)
    assert info.value.message == f"body must be a JSON object, got {kind}"


def test_a_missing_nested_field_is_named_once_by_its_full_path() -> None:
    """A required field missing inside a list item is that field, path first, said once."""
    error = invalid({"owner": "Ada", "lines": [{}]})
    assert (error.message, error.details["field"]) == (
        "lines[0].quantity: is required",
        "lines[0].quantity",
    )


def test_a_wrong_type_is_said_in_json_s_words() -> None:
    """A wrong type names JSON's types (a string, an integer), not Python's."""
    error = invalid({"owner": 7, "lines": []})
    assert error.message == "owner: expected a string, got an integer"


def test_a_runtime_refusal_names_its_field_in_the_message() -> None:
    """What the runtime's own checks refuse (an unknown field) names the field like msgspec's."""
    error = invalid({"owner": "Ada", "lines": [], "colour": "red"})
    assert error.message.startswith("colour: ") and error.message.count("colour") == 1


def test_the_plain_line_of_a_rejection_shows_its_rule(capsys: pytest.CaptureFixture[str]) -> None:
    """`error (rejected): ...` ends with the rule the command broke."""
    exits.report(Rejected("the balance is 10, less than 25", rule="no_overdraft"))
    assert capsys.readouterr().err == (
        "error (rejected): the balance is 10, less than 25 (rule no_overdraft)\n"
    )


def test_a_decimal_out_of_a_narrower_type_s_range_is_told_the_type_s_rule() -> None:
    """A zero PositiveMoney amount is told "a positive decimal string", not a regular expression."""
    with pytest.raises(InvalidInput) as info:
        codec.convert({"amount": "0"}, Deposit, strict=True)
    assert info.value.message.startswith("amount: must be a positive decimal string")
    assert "?=" not in info.value.message
