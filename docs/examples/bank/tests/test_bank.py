"""Given/when/then tests of the bank: no NATS, milliseconds each."""

from datetime import timedelta
from decimal import Decimal

from bank.account import Deposited, Opened, account
from bank.balances import balances
from bank.dormancy import GRACE, dormancy

from runtime import CancelTimer, Send, SetTimer
from runtime.testing import FIXED_NOW, AggregateSpec, ProcessSpec, ProjectionSpec

OPENED = Opened(owner="Ada", at=FIXED_NOW)


def test_a_withdrawal_beyond_the_balance_is_rejected() -> None:
    """An account never goes below zero."""
    (
        AggregateSpec(account)
        .given(OPENED, Deposited(Decimal("10.00")))
        .when("withdraw", {"amount": "25.00"})
        .then_rejected(rule="no_overdraft")
    )


def test_a_deposit_adds_to_the_balance() -> None:
    """A deposit is recorded and the balance grows by it."""
    (
        AggregateSpec(account)
        .given(OPENED)
        .when("deposit", {"amount": "10.00"})
        .then(Deposited(Decimal("10.00")))
        .then_state(balance=Decimal("10.00"))
    )


def test_a_zero_deposit_is_invalid() -> None:
    """PositiveMoney refuses "0" before the handler runs."""
    AggregateSpec(account).given(OPENED).when("deposit", {"amount": "0"}).then_invalid("amount")


def test_an_owner_s_accounts_are_listed() -> None:
    """accounts_of answers with every account of one owner, and get_balance with one."""
    spec = (
        ProjectionSpec(balances)
        .given("account", "a-1", OPENED, Deposited(Decimal("5")))
        .given("account", "a-2", OPENED)
        .given("account", "b-1", Opened(owner="Bob", at=FIXED_NOW))
    )
    assert [row["account_id"] for row in spec.query("accounts_of", {"owner": "Ada"})] == [
        "a-1",
        "a-2",
    ]
    assert spec.query("get_balance", {"account_id": "a-1"})["balance"] == "5"


def test_an_account_left_empty_is_closed() -> None:
    """Opening sets a timer; when it fires on an account still empty, the account is closed."""
    (
        ProcessSpec(dormancy)
        .when("account", "a-1", OPENED)
        .then_timers(SetTimer("empty", at=FIXED_NOW + GRACE))
        .when_timer("empty", "a-1")
        .then_sends(Send("account", "a-1", "close", {"reason": "empty for 30 days"}))
    )


def test_a_deposit_stops_the_dormancy_timer() -> None:
    """The first deposit cancels the timer, so a late firing closes nothing."""
    (
        ProcessSpec(dormancy)
        .given("account", "a-1", OPENED)
        .when("account", "a-1", Deposited(Decimal("1")))
        .then_timers(CancelTimer("empty"))
    )
    (
        ProcessSpec(dormancy)
        .given("account", "a-1", OPENED, Deposited(Decimal("1")))
        .at(FIXED_NOW + GRACE + timedelta(days=1))
        .when_timer("empty", "a-1")
        .then_nothing()
    )
