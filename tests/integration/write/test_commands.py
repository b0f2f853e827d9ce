"""Commands over NATS against a real nats-server: replies, ordering, concurrency, idempotency."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict

import anyio
import nats
import pytest
from nats.aio.client import Client as NATS

from aggregates import AGGREGATES
from runtime import (
    Client,
    CommandResult,
    ConfigurationError,
    EventStore,
    HostSettings,
    Internal,
    NoResponders,
    Rejected,
    StreamSettings,
    WorkerSettings,
    run_worker,
)
from runtime.transport.embedded import EmbeddedServer
from runtime.wire.envelope import StoredEvent

from ...commits import make_commit
from ..procs import wait_until
from ..support import counter, message_count, stream_commits

DEFINITIONS = [*AGGREGATES, counter]


async def test_a_command_replies_with_version_seq_and_events(nc: NATS) -> None:
    """A successful command's reply has the contract's shape and the stream holds its commit."""
    async with run_worker(nc, DEFINITIONS):
        client = Client(nc)
        result = await client.send(
            "user",
            "u-1",
            "create",
            {"name": "Ada", "email": "ada@example.com"},
            command_id="c-1",
        )
        assert result == CommandResult(
            aggregate="user",
            id="u-1",
            version=1,
            seq=1,
            command_id="c-1",
            events=[
                {
                    "type": "user.created.v1",
                    "data": {"name": "Ada", "email": "ada@example.com", "role": "customer"},
                }
            ],
        )
        noop = await client.send(
            "user", "u-1", "change_role", {"role": "customer"}, command_id="c-2"
        )
        assert noop == CommandResult(
            aggregate="user", id="u-1", version=1, seq=1, command_id="c-2", events=[]
        )
    commits = await stream_commits(nc)
    assert [(c.subject, c.command_id, c.version) for c in commits] == [
        ("events.user.u-1", "c-1", 1)
    ]


async def test_200_concurrent_commands_to_one_aggregate(nc: NATS) -> None:
    """Commands to one aggregate run one at a time: versions contiguous, none lost or doubled."""
    async with run_worker(nc, DEFINITIONS):
        client = Client(nc)
        results: list[CommandResult] = []

        async def one(i: int) -> None:
            results.append(
                await client.send("counter", "c-1", "add", {"amount": 1}, command_id=f"cmd-{i}")
            )

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(one, i)
    assert sorted(r.version for r in results) == list(range(1, 201))
    commits = await stream_commits(nc)
    assert [c.version for c in commits] == list(range(1, 201))
    assert sorted(c.command_id for c in commits) == sorted(f"cmd-{i}" for i in range(200))


ROUNDS = 10  # of racing bursts at most, until the two runtimes have met a conflict


async def test_two_runtimes_on_the_same_aggregates(nats_server: EmbeddedServer) -> None:
    """Two worker processes' runtimes race on the same aggregates (queue-group mode, as on a
    server without the partition mapping); conflicts are retried and every acknowledged command
    is in the history exactly once."""
    await nats_server.wait_ready()
    racing = WorkerSettings(partitioned=False)
    connections = [await nats.connect(nats_server.url) for _ in range(3)]
    first, second, caller = connections
    acked: list[CommandResult] = []
    try:
        async with (
            run_worker(first, DEFINITIONS, racing) as host_a,
            run_worker(second, DEFINITIONS, racing) as host_b,
        ):
            client = Client(caller)

            async def burst(aggregate_id: str, lane: int, attempt: int) -> None:
                for i in range(15):
                    result = await client.send(
                        "counter",
                        aggregate_id,
                        "add",
                        {"amount": 1},
                        command_id=f"{aggregate_id}-{attempt}-{lane}-{i}",
                    )
                    acked.append(result)

            # Whether the runtimes' commands on one aggregate interleave is up to the scheduler:
            # race again until they have (nearly always in the first round).
            for attempt in range(ROUNDS):
                async with anyio.create_task_group() as tg:
                    for a in range(6):
                        for lane in range(4):
                            tg.start_soon(burst, f"agg-{a}", lane, attempt)
                if host_a.stats.conflicts_retried + host_b.stats.conflicts_retried:
                    break
        commits = await stream_commits(caller)
    finally:
        for connection in connections:
            await connection.close()
    in_stream = Counter(c.command_id for c in commits)
    assert all(in_stream[r.command_id] == 1 for r in acked)
    assert len(commits) == len(acked) == 6 * 4 * 15 * (attempt + 1)
    assert host_a.stats.conflicts_retried + host_b.stats.conflicts_retried > 0
    versions: dict[str, list[int]] = defaultdict(list)
    for commit in commits:
        versions[commit.subject].append(commit.version)
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())


async def test_same_command_id_twice_applies_once(nc: NATS) -> None:
    """Sending a command id again returns the original reply and appends nothing."""
    async with run_worker(nc, DEFINITIONS):
        client = Client(nc)
        first = await client.send("counter", "c-1", "add", {"amount": 5}, command_id="k-1")
        again = await client.send("counter", "c-1", "add", {"amount": 5}, command_id="k-1")
        assert again == first
    assert await message_count(nc) == 1


async def _wait_out_duplicate_window(nc: NATS) -> None:
    """Block until JetStream has forgotten message ids older than now (probe, not a timer)."""
    js = nc.jetstream()
    probe = f"probe-{uuid.uuid4().hex}"
    assert not (await js.publish("events.probe.p", b"[]", headers={"Nats-Msg-Id": probe})).duplicate

    async def forgotten() -> bool:
        ack = await js.publish("events.probe.p", b"[]", headers={"Nats-Msg-Id": probe})
        return not ack.duplicate

    await wait_until(forgotten, 20, "JetStream to forget the probe's message id", period=0.1)


async def test_retry_after_the_duplicate_window_applies_once(nc: NATS) -> None:
    """A command retried after JetStream's dedupe window is still recognised, also by a fresh
    worker that loaded the aggregate from the stream."""
    settings = WorkerSettings(stream=StreamSettings(duplicate_window=1.0))
    async with run_worker(nc, DEFINITIONS, settings):
        client = Client(nc)
        original = await client.send("counter", "c-1", "add", {"amount": 2}, command_id="k-1")
        await client.send("counter", "c-1", "add", {"amount": 3}, command_id="k-2")
        await _wait_out_duplicate_window(nc)
        assert (
            await client.send("counter", "c-1", "add", {"amount": 2}, command_id="k-1") == original
        )
    count = await message_count(nc)
    async with run_worker(nc, DEFINITIONS, settings):  # a restarted worker: nothing in memory
        assert (
            await Client(nc).send("counter", "c-1", "add", {"amount": 2}, command_id="k-1")
            == original
        )
    assert await message_count(nc) == count


async def test_a_landed_commit_whose_ack_was_lost_is_not_applied_twice(nc: NATS) -> None:
    """When the commit of a command id landed but the worker never saw it (error 10071 on the
    retry), the worker finds it in the history and replies with it instead of appending again."""
    async with run_worker(nc, DEFINITIONS) as host:
        client = Client(nc)
        await client.send("counter", "c-1", "add", {"amount": 1}, command_id="k-1")
        # Another process (or an earlier attempt whose ack got lost) appends command k-2.
        other = EventStore(nc)
        await other.start()
        try:
            actor = host.actors[("counter", "c-1")]
            landed = await other.history("counter", "c-1")
            base = landed[-1]
            commit = make_commit(
                "counter",
                "c-1",
                "add",
                2,
                StoredEvent("counter.added.v1", {"amount": 7, "note": ""}),
                command_id="k-2",
                recorded_at=base.recorded_at,
            )
            seq, _ = await other.append(commit, actor.last_seq)
        finally:
            await other.stop()
        retried = await client.send("counter", "c-1", "add", {"amount": 7}, command_id="k-2")
        assert (retried.seq, retried.version) == (seq, 2)
        after = await client.send("counter", "c-1", "add", {"amount": 1}, command_id="k-3")
        assert after.version == 3
    assert await message_count(nc) == 3


async def test_a_crashing_handler_answers_internal_and_the_worker_keeps_serving(nc: NATS) -> None:
    """An unexpected exception in a handler is an internal error reply, logged; the actor and the
    process go on serving."""
    from structlog.testing import capture_logs

    async with run_worker(nc, DEFINITIONS):
        client = Client(nc)
        await client.send("counter", "c-1", "add", {})
        with capture_logs() as logs, pytest.raises(Internal, match="while handling boom"):
            await client.send("counter", "c-1", "boom")
        assert any(e["event"] == "command_crashed" and e["aggregate"] == "counter" for e in logs)
        assert (await client.send("counter", "c-1", "add", {})).version == 2


async def test_business_rule_rejection_is_a_reply(nc: NATS) -> None:
    """A rejected command raises Rejected with the rule, and nothing is stored."""
    async with run_worker(nc, DEFINITIONS):
        with pytest.raises(Rejected) as info:
            await Client(nc).send("counter", "c-1", "add", {"amount": -1})
    assert info.value.details["rule"] == "positive"
    assert await message_count(nc) == 0


async def test_a_type_no_worker_serves_is_reported_as_such(nc: NATS) -> None:
    """NATS' no-responders status becomes a NoResponders error, not a bare timeout."""
    async with run_worker(nc, AGGREGATES):
        with pytest.raises(NoResponders, match="counter"):
            await Client(nc, timeout=2).send("counter", "c-1", "add", {})


async def test_a_mismatched_existing_stream_is_a_clear_error(nc: NATS) -> None:
    """An existing EVENTS stream without the required settings is refused, not reconfigured."""
    js = nc.jetstream()
    await js.add_stream(name="EVENTS", subjects=["events.>"])
    with pytest.raises(ConfigurationError, match="deny_delete"):
        async with run_worker(nc, DEFINITIONS):
            pass
    info = await js.stream_info("EVENTS")
    assert not info.config.deny_delete


async def test_a_full_mailbox_answers_busy(nc: NATS) -> None:
    """Commands beyond the mailbox bound are refused with busy instead of queueing forever."""
    from runtime.errors import Busy
    from runtime.write.actor import CommandRequest

    settings = WorkerSettings(host=HostSettings(mailbox_size=2))
    replies: list[object] = []

    async def reply(result: object) -> None:
        replies.append(result)

    def request(i: int) -> CommandRequest:
        return CommandRequest(
            "add", counter.parse_command("add", {}), f"k-{i}", f"k-{i}", None, reply
        )

    async with run_worker(nc, [counter], settings) as host:
        host.submit("counter", "c-1", request(1))
        host.submit("counter", "c-1", request(2))
        with pytest.raises(Busy):
            host.submit("counter", "c-1", request(3))
        await host.drained()
    assert [r["version"] for r in replies] == [1, 2]  # type: ignore[index]


async def test_live_actors_are_capped_and_idle_ones_passivated(nc: NATS) -> None:
    """The host keeps at most max_actors in memory, least recently used out first; a passivated
    aggregate is reloaded from the stream with its state intact."""
    settings = WorkerSettings(host=HostSettings(max_actors=3, idle_timeout=3600))
    async with run_worker(nc, [counter], settings) as host:
        client = Client(nc)
        for i in range(5):
            await client.send("counter", f"c-{i}", "add", {"amount": i + 1})
        assert list(host.actors) == [("counter", "c-2"), ("counter", "c-3"), ("counter", "c-4")]
        result = await client.send("counter", "c-0", "add", {"amount": 10})
        assert result.version == 2
        assert ("counter", "c-3") in host.actors and ("counter", "c-2") not in host.actors
    # Idle at once: the host's sweeper passivates the actor soon after its command is answered.
    settings = WorkerSettings(host=HostSettings(idle_timeout=0))
    async with run_worker(nc, [counter], settings) as host:
        await Client(nc).send("counter", "c-1", "add", {})
        await wait_until(lambda: not host.actors, 10, "the idle actor to be passivated")
        result = await Client(nc).send("counter", "c-1", "add", {"amount": 5})
        assert result.version == 3  # its two earlier commits reloaded from the stream
