"""Helpers shared by integration tests: a test-only aggregate and stream inspection."""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.js import api

from runtime import Aggregate, Rejected
from runtime.wire.envelope import H_COMMAND_ID, H_VERSION


@dataclass(frozen=True, slots=True)
class Add:
    amount: int = 1
    note: str = ""
    copies: int = 1


@dataclass(frozen=True, slots=True)
class Added:
    amount: int
    note: str = ""


counter: Aggregate[int] = Aggregate("counter", 0)


@counter.command("add")
def add(state: int, cmd: Add) -> list[Added]:
    if cmd.amount < 0:
        raise Rejected("amounts are positive", rule="positive")
    return [Added(cmd.amount, cmd.note) for _ in range(cmd.copies)]


@counter.command("boom")
def boom(state: int) -> None:
    raise RuntimeError("the handler has a bug")


@counter.event("counter.added.v1")
def added(state: int, event: Added) -> int:
    return state + event.amount


@dataclass(frozen=True)
class StoredCommit:
    seq: int
    subject: str
    command_id: str
    version: int


async def stream_commits(nc: NATS, stream: str = "EVENTS") -> list[StoredCommit]:
    """Every message of the stream, read with an ephemeral ordered consumer."""
    js = nc.jetstream()
    info = await js.stream_info(stream)
    total = info.state.messages
    out: list[StoredCommit] = []
    if total == 0:
        return out
    sub = await js.subscribe(
        ">", stream=stream, ordered_consumer=True, config=api.ConsumerConfig(headers_only=True)
    )
    try:
        while len(out) < total:
            msg = await sub.next_msg(timeout=5)
            headers = msg.headers or {}
            out.append(
                StoredCommit(
                    seq=msg.metadata.sequence.stream,
                    subject=msg.subject,
                    command_id=headers.get(H_COMMAND_ID, ""),
                    version=int(headers.get(H_VERSION, "0")),
                )
            )
    finally:
        await sub.unsubscribe()
    return out


async def message_count(nc: NATS, stream: str = "EVENTS") -> int:
    info = await nc.jetstream().stream_info(stream)
    return int(info.state.messages)
