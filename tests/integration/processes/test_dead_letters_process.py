"""Real ``cqrs processes`` replicas: two sharing the instances with one SIGKILLed, and
sequenced dead letters with the ``cqrs processes dead-letters|retry|discard`` commands (a
failing instance is parked while others go on, its parked triggers, events and timers, are
replayed in order exactly once, or discarded)."""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import anyio
from nats.aio.client import Client as NATS

from runtime import Client, EventStore
from runtime.domain.app import App
from runtime.ops.run import run_app
from runtime.ownership.leases import LeaseBucket
from runtime.processes.instances import Instance, InstanceStore
from runtime.processes.parking import ParkedStore
from runtime.processes.settings import ProcessSettings
from runtime.processes.status import collect_processes
from runtime.transport.embedded import EmbeddedServer
from runtime.wire import codec
from runtime.wire.envelope import H_COMMAND_ID, H_RECORDED_AT, H_VERSION

from ..procs import CQRS, REPO, TEST_APP, WorkerProcess, wait_until, workers
from ..support import counter

APP = f"{TEST_APP},tests.integration.processes.relay:relay"
FAST = ["--ack-wait", "1", "--lease-ttl", "2", "--start", "all", "--max-attempts", "2"]
BROKEN = {"CQRS_TEST_RELAY_BROKEN": "1"}


def replica(tmp_path: Path, url: str, env: dict[str, str] | None = None) -> WorkerProcess:
    return WorkerProcess(
        tmp_path / "replica",
        url,
        user=None,
        command="processes",
        app=APP,
        extra=[*FAST, "--process-managers", "relay"],
        env=env or {},
    )


async def cqrs(url: str, *args: str) -> Any:
    """Run ``cqrs processes <args> --json`` as the operator would (the fixed deployment: no
    broken relay); its parsed output."""
    env = {**os.environ, "NATS_URL": url, "CQRS_APP": APP, "PYTHONPATH": str(REPO)}
    env.pop("CQRS_TEST_RELAY_BROKEN", None)
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [CQRS, "processes", *args, "--json"], env=env, check=False, cwd=REPO
        )
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
    return codec.loads(done.stdout.splitlines()[-1]), done.stderr.decode()


async def relayed(store: EventStore, key: str) -> list[int]:
    """The amounts relayed for counter ``key``, in the order they took effect."""
    history = await store.history("counter", f"{key}-relay")
    return [e.data["amount"] for c in history for e in c.events]


async def relayed_equals(store: EventStore, key: str, amounts: list[int]) -> bool:
    return await relayed(store, key) == amounts


async def parked_equals(nc: NATS, counts: dict[str, int]) -> bool:
    return await ParkedStore(nc).counts("relay") == counts


async def test_a_failing_instance_is_parked_while_others_go_on_and_retry_replays_in_order(
    tmp_path: Path, nats_server: EmbeddedServer, nc: NATS, store: EventStore
) -> None:
    """An instance whose reaction keeps raising is parked with every later event of it, the
    other instances go on; after the fix `retry` replays the parked events in order, once, and
    the instance reacts normally again."""
    client = Client(nc)
    async with run_app(nc, App((counter,)), projections=[]):
        with workers(replica(tmp_path, nats_server.url, BROKEN)) as (proc,):
            await proc.wait_ready()
            for key in ("a-1", "a-2", "b-1"):
                await client.send("counter", key, "add", {"amount": 1})
            unlucky = await client.send("counter", "b-1", "add", {"amount": 13})
            await client.send("counter", "b-1", "add", {"amount": 2})
            await client.send("counter", "a-1", "add", {"amount": 2})
            await client.send("counter", "b-1", "add", {"amount": 3})
            await client.send("counter", "a-2", "add", {"amount": 5})
            await wait_until(lambda: relayed_equals(store, "a-1", [1, 2]), 30, "a-1 relayed")
            await wait_until(lambda: relayed_equals(store, "a-2", [1, 5]), 30, "a-2 relayed")
            await wait_until(lambda: parked_equals(nc, {"b-1": 3}), 30, "b-1 parked")
            assert await relayed(store, "b-1") == [1]

            (listed,), _ = await cqrs(nats_server.url, "dead-letters", "relay")
            assert listed["key"] == "b-1" and listed["behind"] == 2
            first = listed["first"]
            assert (first["kind"], first["seq"], first["index"]) == ("event", unlucky.seq, 0)
            assert "cannot take 13" in first["error"] and first["attempts"] == 2
            (status,) = await collect_processes(nc)
            assert (status["parked_instances"], status["parked_triggers"]) == (1, 3)

            retried, _ = await cqrs(nats_server.url, "retry", "relay")
            assert list(retried) == ["b-1"] and len(retried["b-1"]) == 3
            assert await relayed(store, "b-1") == [1, 13, 2, 3]
            assert await parked_equals(nc, {})
            assert (await instance(nc, "b-1")).parked is None

            await client.send("counter", "b-1", "add", {"amount": 4})
            await wait_until(lambda: relayed_equals(store, "b-1", [1, 13, 2, 3, 4]), 30, "b-1")


async def test_an_undecodable_event_is_parked_and_discard_drops_it_with_those_behind(
    tmp_path: Path, nats_server: EmbeddedServer, nc: NATS, store: EventStore
) -> None:
    """An event whose data does not decode parks its instance (the next event behind it);
    `discard` drops both, says so in its log, and the instance reacts to what comes next."""
    js = nc.jetstream()

    async def commit(version: int, data: dict[str, Any]) -> None:
        headers = {H_COMMAND_ID: f"raw-{version}", H_VERSION: str(version), H_RECORDED_AT: ""}
        body = codec.dumps([{"type": "counter.added.v1", "data": data}])
        await js.publish("events.counter.u-1", body, headers=headers)

    async with run_app(nc, App((counter,)), projections=[]):
        with workers(replica(tmp_path, nats_server.url)) as (proc,):
            await proc.wait_ready()
            await commit(1, {"amount": "many"})
            await commit(2, {"amount": 5})
            await wait_until(lambda: parked_equals(nc, {"u-1": 2}), 30, "u-1 parked")
            (listed,), _ = await cqrs(nats_server.url, "dead-letters", "relay")
            assert "undecodable event counter.added.v1" in listed["first"]["error"]

            dropped, log = await cqrs(nats_server.url, "discard", "relay", "--key", "u-1")
            assert [d["seq"] for d in dropped] == [1, 2]
            assert log.count("process_trigger_discarded") == 2
            assert await parked_equals(nc, {})
            await commit(3, {"amount": 6})
            await wait_until(lambda: relayed_equals(store, "u-1", [6]), 30, "u-1 relayed")


async def test_a_retry_killed_mid_way_and_run_again_sends_each_command_once(
    tmp_path: Path, nats_server: EmbeddedServer, nc: NATS, store: EventStore
) -> None:
    """A `retry` SIGKILLed after it stored the replayed reaction but before its command was
    answered leaves the instance parked; the next `retry` sends the same command id, and the
    relay holds the amount once."""
    client = Client(nc)
    instances = InstanceStore(nc)
    await instances.start()
    with workers(replica(tmp_path, nats_server.url, BROKEN)) as (proc,):
        await proc.wait_ready()
        async with run_app(nc, App((counter,)), projections=[]):
            await client.send("counter", "d-1", "add", {"amount": 13})
            await wait_until(lambda: parked_equals(nc, {"d-1": 1}), 30, "d-1 parked")
        # No worker serves counters now: the replayed reaction is stored, its command waits.
        retry = WorkerProcess(
            tmp_path / "retry",
            nats_server.url,
            user=None,
            command="processes",
            app=APP,
            extra=["retry", "relay", "--key", "d-1"],
        )
        with workers(retry):
            await wait_until(lambda: _outbox(instances, "d-1"), 30, "the replayed reaction")
            retry.signal(signal.SIGKILL)
            await retry.wait_exit(10)
        assert (await instances.get("relay", "d-1")).parked is not None
        async with run_app(nc, App((counter,)), projections=[]):
            retried, _ = await cqrs(nats_server.url, "retry", "relay", "--key", "d-1")
    assert len(retried["d-1"]) == 1
    assert await relayed(store, "d-1") == [13]
    assert await parked_equals(nc, {})


async def test_a_timer_firing_for_a_parked_instance_is_parked_and_replayed_after_the_event(
    tmp_path: Path, nats_server: EmbeddedServer, nc: NATS, store: EventStore
) -> None:
    """A timer that fires while its instance is parked is parked behind the failing event;
    `retry` replays the event, then the timer, each once."""
    client = Client(nc)
    env = {**BROKEN, "CQRS_TEST_NUDGE_SECONDS": "4"}
    async with run_app(nc, App((counter,)), projections=[]):
        with workers(replica(tmp_path, nats_server.url, env)) as (proc,):
            await proc.wait_ready()
            await client.send("counter", "t-1", "add", {"amount": 100})
            await client.send("counter", "t-1", "add", {"amount": 13})
            await wait_until(lambda: parked_equals(nc, {"t-1": 2}), 30, "the nudge parked")
            assert await relayed(store, "t-1") == [100]
            (listed,), _ = await cqrs(nats_server.url, "dead-letters", "relay")
            assert listed["first"]["kind"] == "event" and listed["behind"] == 1
            await cqrs(nats_server.url, "retry", "relay", "--key", "t-1")
            assert await relayed(store, "t-1") == [100, 13, 1000]
            assert (await instance(nc, "t-1")).timers == {}


async def instance(nc: NATS, key: str) -> Instance:
    instances = InstanceStore(nc)
    await instances.start()
    return await instances.get("relay", key)


async def _outbox(instances: InstanceStore, key: str) -> bool:
    return bool((await instances.get("relay", key)).outbox)


async def owners(nc: NATS) -> dict[str, int]:
    """Partitions of the relay each lease holder owns now."""
    bucket = LeaseBucket(nc, ProcessSettings().lease_bucket, ttl=2)
    if not await bucket.bind():
        return {}
    found: dict[str, int] = {}
    for lease in await bucket.leases():
        if lease.aggregate == "relay":
            found[lease.owner] = found.get(lease.owner, 0) + 1
    return found


async def relay_commits(nc: NATS) -> int:
    info = await nc.jetstream().stream_info("EVENTS", subjects_filter="events.counter.*")
    return sum(n for s, n in (info.state.subjects or {}).items() if s.endswith("-relay"))


KEYS = [f"k-{i}" for i in range(40)]


def two_replicas(tmp_path: Path, url: str) -> tuple[WorkerProcess, WorkerProcess]:
    first = replica(tmp_path, url)
    second = WorkerProcess(
        tmp_path / "second", url, user=None, command="processes", app=APP, extra=first.extra
    )
    return first, second


async def add_to_every_key(client: Client, *amounts: int) -> None:
    for amount in amounts:
        for key in KEYS:
            await client.send("counter", key, "add", {"amount": amount})


async def sharing_and_relaying(
    nc: NATS, client: Client, first: WorkerProcess, second: WorkerProcess
) -> None:
    """Wait for both replicas to own partitions, then load every key until relays begin."""
    await first.wait_ready()
    await second.wait_ready()
    await wait_until(lambda: _split(nc), 30, "both replicas owning partitions")
    await add_to_every_key(client, 1, 2, 3)
    await wait_until(lambda: _at_least(relay_commits(nc), 40), 30, "the first relays")


async def test_two_replicas_share_instances_and_a_killed_ones_partitions_move_exactly_once(
    tmp_path: Path, nats_server: EmbeddedServer, nc: NATS, store: EventStore
) -> None:
    """Two replicas split the partitions; one is SIGKILLed mid-load, the other takes its
    partitions over, and every instance's events take effect exactly once, in order."""
    client = Client(nc)
    first, second = two_replicas(tmp_path, nats_server.url)
    async with run_app(nc, App((counter,)), projections=[]):
        with workers(first, second):
            await sharing_and_relaying(nc, client, first, second)
            first.signal(signal.SIGKILL)
            await first.wait_exit(10)
            await add_to_every_key(client, 4, 5)
            await wait_until(lambda: _at_least(relay_commits(nc), 5 * len(KEYS)), 60, "all")
            await wait_until(lambda: _equals(owners(nc), 16), 30, "the survivor owning all")
    assert await relay_commits(nc) == 5 * len(KEYS)
    for key in KEYS:
        assert await relayed(store, key) == [1, 2, 3, 4, 5]


async def test_a_paused_replica_resumed_after_losing_its_partitions_changes_nothing_twice(
    tmp_path: Path, nats_server: EmbeddedServer, nc: NATS, store: EventStore
) -> None:
    """One of two replicas is SIGSTOPped mid-load until the other has taken all its
    partitions over and gone on with new events; resumed, it finds its leases gone and its
    writes stale, and every instance's events still take effect exactly once, in order. Then
    the partitions are shared again."""
    client = Client(nc)
    first, second = two_replicas(tmp_path, nats_server.url)
    async with run_app(nc, App((counter,)), projections=[]):
        with workers(first, second):
            await sharing_and_relaying(nc, client, first, second)
            first.signal(signal.SIGSTOP)
            try:
                await wait_until(lambda: _equals(owners(nc), 16), 30, "the other owning all")
                await add_to_every_key(client, 4, 5)
                await wait_until(
                    lambda: _at_least(relay_commits(nc), 5 * len(KEYS)), 60, "all relayed"
                )
            finally:
                first.signal(signal.SIGCONT)
            await wait_until(lambda: _split(nc), 30, "both replicas owning partitions again")
            await add_to_every_key(client, 6)
            await wait_until(lambda: _at_least(relay_commits(nc), 6 * len(KEYS)), 60, "the last")
    assert await relay_commits(nc) == 6 * len(KEYS)
    for key in KEYS:
        assert await relayed(store, key) == [1, 2, 3, 4, 5, 6]


async def _split(nc: NATS) -> bool:
    found = await owners(nc)
    return len(found) == 2 and sum(found.values()) == 16


async def _at_least(count: Awaitable[int], expected: int) -> bool:
    return await count >= expected


async def _equals(found: Awaitable[dict[str, int]], partitions: int) -> bool:
    return list((await found).values()) == [partitions]
