"""The ``balances`` read model: each account's balance, and the accounts of one owner."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from runtime import AggregateId, EventMeta, NotBlank, NotFound, Projection

from .account import Closed, Deposited, Opened, Withdrawn, account


@dataclass
class Balance:
    account_id: str
    owner: str
    balance: Decimal = Decimal(0)
    closed: bool = False


@dataclass
class Balances:
    accounts: dict[str, Balance] = field(default_factory=dict)


balances = Projection("balances", Balances, follows=[account])


@balances.on("account.opened.v1")
def opened(model: Balances, event: Opened, meta: EventMeta) -> None:
    model.accounts[meta.aggregate_id] = Balance(meta.aggregate_id, event.owner)


@balances.on("account.deposited.v1")
def deposited(model: Balances, event: Deposited, meta: EventMeta) -> None:
    model.accounts[meta.aggregate_id].balance += event.amount


@balances.on("account.withdrawn.v1")
def withdrawn(model: Balances, event: Withdrawn, meta: EventMeta) -> None:
    model.accounts[meta.aggregate_id].balance -= event.amount


@balances.on("account.closed.v1")
def closed(model: Balances, event: Closed, meta: EventMeta) -> None:
    model.accounts[meta.aggregate_id].closed = True


@dataclass(frozen=True)
class GetBalance:
    account_id: AggregateId


@dataclass(frozen=True)
class AccountsOf:
    owner: NotBlank


@balances.query("get_balance")
def get_balance(model: Balances, args: GetBalance) -> Balance:
    row = model.accounts.get(args.account_id)
    if row is None:
        raise NotFound(f"no account {args.account_id!r}")
    return row


@balances.query("accounts_of")
def accounts_of(model: Balances, args: AccountsOf) -> list[Balance]:
    return [row for row in model.accounts.values() if row.owner == args.owner]
