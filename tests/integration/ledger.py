"""A test-only aggregate whose commits hold one to several events, and a way to command it.

Several events per commit matter here: snapshots are due by event count, so they fall inside
or across commit boundaries, and a version can stop half way through a commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

import anyio

from runtime import ActorHost, Aggregate, CqrsError, Rejected
from runtime.write.actor import CommandRequest


@dataclass(frozen=True, slots=True)
class Post:
    amounts: list[int]
    memo: str = ""


@dataclass(frozen=True, slots=True)
class Posted:
    amount: int
    memo: str = ""


@dataclass(frozen=True, slots=True)
class Ledger:
    balance: int = 0
    entries: int = 0
    largest: int = 0
    memos: tuple[str, ...] = ()  # the last three


def make_ledger(
    *, snapshot_every: int | None = 4, remember_commands: int = 64
) -> Aggregate[Ledger]:
    """A fresh ``ledger`` definition (tests vary its snapshot policy and memory)."""
    ledger = Aggregate(
        "ledger",
        Ledger(),
        snapshot_every=snapshot_every,
        remember_commands=remember_commands,
    )

    @ledger.command("post")
    def post(state: Ledger, cmd: Post) -> list[Posted]:
        if not cmd.amounts:
            raise Rejected("post at least one amount", rule="not_empty")
        if state.balance + sum(cmd.amounts) < 0:
            raise Rejected("the balance may not go negative", rule="no_overdraft")
        return [Posted(amount, cmd.memo) for amount in cmd.amounts]

    @ledger.event("ledger.posted.v1")
    def posted(state: Ledger, event: Posted) -> Ledger:
        return replace(
            state,
            balance=state.balance + event.amount,
            entries=state.entries + 1,
            largest=max(state.largest, event.amount),
            memos=(*state.memos, event.memo)[-3:],
        )

    return ledger


async def send(
    host: ActorHost,
    aggregate: str,
    aggregate_id: str,
    command: str,
    body: dict[str, Any],
    *,
    command_id: str | None = None,
) -> dict[str, Any]:
    """Run one command through the host (no NATS request) and return its reply body."""
    args = host.aggregates[aggregate].parse_command(command, body)
    answered = anyio.Event()
    outcome: list[dict[str, Any] | CqrsError] = []

    async def reply(result: dict[str, Any] | CqrsError) -> None:
        outcome.append(result)
        answered.set()

    command_id = command_id or uuid.uuid4().hex
    host.submit(
        aggregate,
        aggregate_id,
        CommandRequest(command, args, command_id, command_id, None, reply),
    )
    await answered.wait()
    if isinstance(outcome[0], CqrsError):
        raise outcome[0]
    return outcome[0]
