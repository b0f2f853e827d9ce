"""Command ids as idempotency keys: scoped to the aggregate, bound to one command, and answered
with the original reply long after the stream's duplicate window."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NATS

from aggregates import AGGREGATES
from runtime import Client, Conflict, StreamSettings, WorkerSettings, run_worker

from ..support import counter, message_count
from .test_commands import _wait_out_duplicate_window

DEFINITIONS = [*AGGREGATES, counter]


async def test_the_same_command_id_on_two_aggregates_is_two_commands(nc: NATS) -> None:
    """A command id used on two aggregates makes one commit on each."""
    async with run_worker(nc, DEFINITIONS):
        client = Client(nc)
        one = await client.send("counter", "c-1", "add", {"amount": 1}, command_id="k")
        two = await client.send("counter", "c-2", "add", {"amount": 1}, command_id="k")
    assert one.seq != two.seq and one.events and two.events
    assert await message_count(nc) == 2


@pytest.mark.parametrize(
    ("command", "args"), [("add", {"amount": 2}), ("boom", {})], ids=["other_args", "other_cmd"]
)
async def test_a_command_id_reused_for_another_command_is_a_conflict(
    nc: NATS, command: str, args: dict[str, int]
) -> None:
    """The same command id with other arguments or another command is refused as conflict."""
    async with run_worker(nc, DEFINITIONS):
        client = Client(nc)
        await client.send("counter", "c-1", "add", {"amount": 1}, command_id="k")
        with pytest.raises(Conflict, match="command id already used for another command"):
            await client.send("counter", "c-1", command, args, command_id="k")
    assert await message_count(nc) == 1


async def test_a_retry_after_many_newer_commands_gets_the_original_reply(nc: NATS) -> None:
    """A retry behind 100 newer commands, inside the duplicate window, gets the original reply."""
    async with run_worker(nc, DEFINITIONS):
        client = Client(nc)
        original = await client.send("counter", "c-1", "add", {"amount": 1}, command_id="k-0")
        for n in range(1, 101):
            await client.send("counter", "c-1", "add", {"amount": 1}, command_id=f"k-{n}")
        assert await client.send("counter", "c-1", "add", {"amount": 1}, command_id="k-0") == (
            original
        )
    assert await message_count(nc) == 101


async def test_a_retry_of_the_256th_last_command_survives_window_restart_and_snapshot(
    nc: NATS,
) -> None:
    """Beyond the duplicate window, after a restart that loads from a snapshot, a retry of the
    aggregate's 256th most recent command still gets its original reply and appends nothing."""
    settings = WorkerSettings(stream=StreamSettings(duplicate_window=1.0))
    async with run_worker(nc, DEFINITIONS, settings):
        client = Client(nc)
        original = await client.send("counter", "c-1", "add", {"amount": 1}, command_id="k-0")
        for n in range(1, 256):
            await client.send("counter", "c-1", "add", {"amount": 1}, command_id=f"k-{n}")
    await _wait_out_duplicate_window(nc)
    count = await message_count(nc)
    async with run_worker(nc, DEFINITIONS, settings) as host:
        retried = await Client(nc).send("counter", "c-1", "add", {"amount": 1}, command_id="k-0")
        actor = host.actors[("counter", "c-1")]
        assert actor.snapshot_version > 0  # it loaded from the snapshot, not the full history
    assert retried == original
    assert await message_count(nc) == count
