"""Helpers shared by integration tests: a test-only aggregate and stream inspection."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import api

from runtime import Aggregate, EventMeta, ProcessManager, Reaction, Rejected, Send
from runtime.read.status import gather
from runtime.wire.envelope import H_COMMAND_ID, H_VERSION

from .procs import wait_until


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


@dataclass(frozen=True, slots=True)
class Echoes:
    sent: int = 0


# A process manager that answers every addition to counter <id> with the same addition to
# counter <id>-echo: one command per event, so duplicates would show as extra echo events.
echo: ProcessManager[Echoes] = ProcessManager("echo", Echoes(), follows=[counter])


@echo.on("counter.added.v1")
def echo_added(state: Echoes, event: Added, meta: EventMeta) -> Reaction[Echoes] | None:
    if meta.aggregate_id.endswith("-echo"):
        return None
    target = f"{meta.aggregate_id}-echo"
    add = Send("counter", target, "add", {"amount": event.amount, "note": f"echo of {meta.seq}"})
    return Reaction(Echoes(state.sent + 1), commands=[add])


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


async def discovery_replies(nc: NATS, subject: str, count: int) -> list[Any]:
    """The replies of ``count`` service instances to a discovery request (``$SRV...``), asked
    again until all of them answer within one scatter-gather window (a busy machine may delay
    one past it)."""
    found: list[Any] = []

    async def all_answered() -> bool:
        nonlocal found
        found = await gather(nc, subject)
        return len(found) >= count

    await wait_until(all_answered, 30, f"{count} replies to {subject}")
    return found


def system_tool(*names: str, package: str) -> str | None:
    """The path of the first of ``names`` installed here (``tests/system-packages`` installs
    them), or None, for a test to skip on; under CI a missing tool fails the collection instead,
    so a CI run cannot pass without the tests that need it."""
    for name in names:
        found = shutil.which(name) or next(
            (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d) / name).exists()), None
        )
        if found:
            return found
    if os.environ.get("CI"):
        raise RuntimeError(f"{names[0]} is not installed: run tests/system-packages ({package})")
    return None
