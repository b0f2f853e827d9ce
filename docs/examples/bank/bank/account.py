"""The ``account`` aggregate: open it, pay money in and out; it never goes below zero."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from runtime import Aggregate, CommandContext, NotBlank, PositiveMoney, Rejected


# -- commands: what a caller asks for, checked against their types before a handler runs
@dataclass(frozen=True)
class Open:
    owner: NotBlank


@dataclass(frozen=True)
class Deposit:
    amount: PositiveMoney


@dataclass(frozen=True)
class Withdraw:
    amount: PositiveMoney


@dataclass(frozen=True)
class Close:
    reason: str = ""


# -- events: what happened, stored forever under a versioned name
@dataclass(frozen=True)
class Opened:
    owner: str
    at: datetime


@dataclass(frozen=True)
class Deposited:
    amount: Decimal


@dataclass(frozen=True)
class Withdrawn:
    amount: Decimal


@dataclass(frozen=True)
class Closed:
    reason: str


# -- state: rebuilt from the events
@dataclass(frozen=True)
class AccountState:
    open: bool = False
    closed: bool = False
    balance: Decimal = Decimal(0)


account = Aggregate("account", AccountState())


def _usable(state: AccountState) -> None:
    if not state.open:
        raise Rejected("the account is not open", rule="account_must_be_open")


@account.command("open")
def open_(state: AccountState, cmd: Open, ctx: CommandContext) -> Opened | None:
    if state.open or state.closed:
        return None  # opening twice is accepted and changes nothing
    return Opened(owner=cmd.owner, at=ctx.now)


@account.command("deposit")
def deposit(state: AccountState, cmd: Deposit) -> Deposited:
    _usable(state)
    return Deposited(cmd.amount)


@account.command("withdraw")
def withdraw(state: AccountState, cmd: Withdraw) -> Withdrawn:
    _usable(state)
    if cmd.amount > state.balance:
        raise Rejected(
            f"the balance is {state.balance}, less than {cmd.amount}",
            rule="no_overdraft",
            balance=str(state.balance),
        )
    return Withdrawn(cmd.amount)


@account.command("close")
def close(state: AccountState, cmd: Close) -> Closed | None:
    if state.closed:
        return None
    _usable(state)
    return Closed(cmd.reason)


@account.event("account.opened.v1")
def opened(state: AccountState, event: Opened) -> AccountState:
    return replace(state, open=True)


@account.event("account.deposited.v1")
def deposited(state: AccountState, event: Deposited) -> AccountState:
    return replace(state, balance=state.balance + event.amount)


@account.event("account.withdrawn.v1")
def withdrawn(state: AccountState, event: Withdrawn) -> AccountState:
    return replace(state, balance=state.balance - event.amount)


@account.event("account.closed.v1")
def closed(state: AccountState, event: Closed) -> AccountState:
    return replace(state, open=False, closed=True)
