"""The public value types: bounds that work, and a definition the runtime cannot use refused."""

from __future__ import annotations

import pydoc
import re
from dataclasses import dataclass
from typing import Annotated

import msgspec
import pytest

import runtime.testing
from runtime import (
    Aggregate,
    App,
    ConfigurationError,
    Money,
    PositiveMoney,
    Projection,
    Quantity,
)
from runtime.gateway.openapi import openapi_document
from runtime.testing import AggregateSpec


@dataclass(frozen=True)
class Pay:
    amount: PositiveMoney


@dataclass(frozen=True)
class Paid:
    amount: str


@dataclass(frozen=True)
class Deposit:
    amount: Annotated[Money, msgspec.Meta(gt=0)]  # msgspec bounds numbers, not decimals


@dataclass(frozen=True)
class Take:
    count: Annotated[Quantity, msgspec.Meta(le=100)]  # Quantity already sets le


@dataclass(frozen=True)
class Over:
    amount: Annotated[Money, msgspec.Meta(ge=1)]


def _wallet() -> Aggregate[int]:
    wallet = Aggregate("wallet", 0)

    @wallet.command("pay")
    def pay(state: int, cmd: Pay) -> Paid:
        return Paid(str(cmd.amount))

    @wallet.event("wallet.paid.v1")
    def paid(state: int, event: Paid) -> int:
        return state + 1

    return wallet


@pytest.mark.parametrize("amount", ["0", "0.00", "000"])
def test_positive_money_refuses_zero(amount: str) -> None:
    """PositiveMoney makes a zero amount invalid, naming the field."""
    AggregateSpec(_wallet()).when("pay", {"amount": amount}).then_invalid("amount")


def test_positive_money_takes_a_positive_amount() -> None:
    """PositiveMoney lets "0.01" through to the handler."""
    AggregateSpec(_wallet()).when("pay", {"amount": "0.01"}).then(Paid("0.01"))


def test_the_openapi_document_states_the_positive_bound() -> None:
    """The schema of a PositiveMoney field carries the pattern that refuses zero."""
    doc = openapi_document(App(aggregates=[_wallet()]))
    pattern = doc["components"]["schemas"]["Pay"]["properties"]["amount"]["pattern"]
    assert re.search(pattern, "0.01") and not re.search(pattern, "0.00")


def test_a_numeric_bound_on_money_is_a_configuration_error_naming_the_command() -> None:
    """msgspec's gt on a Money field is refused where the command is declared, with a way out."""
    bank = Aggregate("bank", 0)
    with pytest.raises(
        ConfigurationError, match=r"aggregate 'bank', command 'deposit'.*PositiveMoney"
    ):

        @bank.command("deposit")
        def deposit(state: int, cmd: Deposit) -> None:
            return None


def test_an_unusable_query_argument_is_a_configuration_error_naming_the_query() -> None:
    """The same check applies to a projection's query arguments."""
    view = Projection("view", dict, follows=[_wallet()])
    with pytest.raises(ConfigurationError, match="projection 'view', query 'over'"):

        @view.query("over")
        def over(model: dict[str, int], args: Over) -> int:
            return 0


def test_help_on_money_describes_money() -> None:
    """help(runtime.Money) shows the type's own documentation, not typing.Annotated's."""
    text = pydoc.render_doc(Money)
    assert "An amount of money" in text and "PositiveMoney" in text


def test_the_testing_kit_declares_its_public_names() -> None:
    """runtime.testing has an __all__ naming the three specs."""
    assert {"AggregateSpec", "ProjectionSpec", "ProcessSpec"} <= set(runtime.testing.__all__)


def test_a_second_bound_on_quantity_is_a_configuration_error_saying_how_to_bound_it() -> None:
    """Quantity already sets le, so Meta(le=100) on it is refused where it is declared, with the
    base-type way to write the bound."""
    shop = Aggregate("shop", 0)
    with pytest.raises(ConfigurationError, match=r"command 'take'.*Annotated\[int, Meta"):

        @shop.command("take")
        def take(state: int, cmd: Take) -> None:
            return None
