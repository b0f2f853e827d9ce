"""Aggregate snapshots against a real nats-server: loading, fallbacks, idempotency, failures."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from nats.js import api
from structlog.testing import capture_logs

from runtime import (
    ActorHost,
    Aggregate,
    Client,
    EventStore,
    HostSettings,
    Rejected,
    WorkerSettings,
    run_worker,
)
from runtime.write.actor import Actor
from runtime.write.snapshots import (
    Snapshot,
    SnapshotSettings,
    SnapshotStore,
    decode_snapshot,
    encode_snapshot,
    remembered,
    snapshot_key,
)

from ..ledger import Ledger, Posted, make_ledger, send


@dataclass(frozen=True, slots=True)
class LedgerV2:
    balance: int = 0
    big: int = 0  # entries of 10 or more


ID = "l-1"
KEY = snapshot_key("ledger", ID)


@pytest.fixture
async def stores(nc: NATS) -> AsyncIterator[tuple[EventStore, SnapshotStore]]:
    store = EventStore(nc)
    await store.start()
    snapshots = SnapshotStore(nc, store.stream)
    await snapshots.start()
    try:
        yield store, snapshots
    finally:
        await store.stop()


async def cold(ledger: Aggregate[Any], store: EventStore, snapshots: SnapshotStore | None) -> Actor:
    """A freshly loaded actor, as after a restart or passivation."""
    actor = Actor(ledger, ID, store, snapshots)
    await actor.catch_up()
    return actor


def position(actor: Actor) -> tuple[Any, ...]:
    return actor.state, actor.version, actor.last_seq, remembered(actor)


async def stored_snapshot(ledger: Aggregate[Ledger], snapshots: SnapshotStore) -> Snapshot:
    entry = await snapshots.kv.get(KEY)
    return decode_snapshot(ledger, snapshots.stream, ID, entry.value or b"")


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_snapshot_plus_tail_equals_full_replay(
    stores: tuple[EventStore, SnapshotStore], seed: int
) -> None:
    """For random commands of 1-3 events, snapshot + tail always loads what a full replay does."""
    store, snapshots = stores
    rng = random.Random(seed)
    ledger = make_ledger(snapshot_every=rng.choice([2, 3, 5]), remember_commands=6)
    host = ActorHost(store, [ledger], snapshots=snapshots)
    decided: list[dict[str, Any]] = []
    loads_from_snapshot = loads_with_tail = 0

    async def check() -> None:
        nonlocal loads_from_snapshot, loads_with_tail
        with_snapshot = await cold(ledger, store, snapshots)
        replayed = await cold(ledger, store, None)
        assert position(with_snapshot) == position(replayed)
        events = [ledger.decode_event(e["type"], e["data"]) for e in decided]
        assert replayed.state == ledger.fold(events)
        assert replayed.version == len(events)
        loads_from_snapshot += with_snapshot.snapshot_version > 0
        loads_with_tail += 0 < with_snapshot.snapshot_version < with_snapshot.version

    async with host.running():
        for i in range(40):
            amounts = [rng.randint(-6, 9) for _ in range(rng.randint(1, 3))]
            try:
                reply = await send(host, "ledger", ID, "post", {"amounts": amounts, "memo": f"{i}"})
            except Rejected:
                continue
            decided += reply["events"]
            if rng.random() < 0.3:
                await host.snapshots_settled()
                await check()
        await host.snapshots_settled()
    await check()
    assert loads_from_snapshot > 0 and loads_with_tail > 0


async def test_a_corrupt_snapshot_is_ignored_rebuilt_and_replaced(
    stores: tuple[EventStore, SnapshotStore],
) -> None:
    """An undecodable snapshot is logged and ignored, the state is right, and it is rewritten."""
    store, snapshots = stores
    ledger = make_ledger(snapshot_every=2)
    async with ActorHost(store, [ledger], snapshots=snapshots).running() as host:
        for amount in (5, 6, 7):
            await send(host, "ledger", ID, "post", {"amounts": [amount]})
    expected = position(await cold(ledger, store, None))
    await snapshots.kv.put(KEY, b'{"format": 1, "state": [not json')

    with capture_logs() as logs:
        loaded = await cold(ledger, store, snapshots)
    assert position(loaded) == expected
    assert [e["event"] for e in logs] == ["snapshot_ignored"]

    async with ActorHost(store, [ledger], snapshots=snapshots).running() as host:
        await send(host, "ledger", ID, "post", {"amounts": [1]})
        await host.snapshots_settled()
    assert (await stored_snapshot(ledger, snapshots)).version == 4


async def test_a_snapshot_of_an_older_state_schema_falls_back_to_full_replay(
    stores: tuple[EventStore, SnapshotStore],
) -> None:
    """A snapshot taken under another state_version is ignored even though it would decode."""
    store, snapshots = stores
    old = make_ledger(snapshot_every=1)
    async with ActorHost(store, [old], snapshots=snapshots).running() as host:
        for amount in (3, 4):
            await send(host, "ledger", ID, "post", {"amounts": [amount, 10]})
        await host.snapshots_settled()
    assert (await stored_snapshot(old, snapshots)).version == 4

    # The new code keeps other state; the old snapshot would decode into it, wrongly.
    new: Aggregate[LedgerV2] = Aggregate("ledger", LedgerV2(), state_version=2, snapshot_every=1)

    @new.event("ledger.posted.v1")
    def posted(state: LedgerV2, event: Posted) -> LedgerV2:
        return LedgerV2(state.balance + event.amount, state.big + (event.amount >= 10))

    with capture_logs() as logs:
        loaded = await cold(new, store, snapshots)
    assert loaded.state == LedgerV2(balance=27, big=2)
    assert loaded.version == 4 and loaded.snapshot_version == 0
    assert any(e["event"] == "snapshot_ignored" and "state schema" in e["reason"] for e in logs)


async def test_a_snapshot_that_does_not_line_up_with_the_stream_is_ignored(
    stores: tuple[EventStore, SnapshotStore],
) -> None:
    """A snapshot claiming commits the stream does not have loses to the stream."""
    store, snapshots = stores
    ledger = make_ledger(snapshot_every=None)
    async with ActorHost(store, [ledger], snapshots=snapshots).running() as host:
        for amounts in ([2, 2], [1], [1]):
            await send(host, "ledger", ID, "post", {"amounts": amounts})
    forged = Snapshot(state=Ledger(balance=999), version=50, seq=10_000, recent=[])
    await snapshots.kv.put(KEY, encode_snapshot(ledger, store.stream, ID, forged))
    ledger.snapshot_every = 2
    with capture_logs() as logs:
        loaded = await cold(ledger, store, snapshots)
    assert (loaded.state.balance, loaded.version) == (6, 4)
    assert [e["event"] for e in logs] == ["snapshot_ignored"]


async def test_a_retried_command_after_restart_and_snapshot_gets_its_original_reply(
    nc: NATS,
) -> None:
    """A command id whose commit lies inside the snapshot is still recognised after a restart."""
    ledger = make_ledger(snapshot_every=2)
    client = Client(nc)
    async with run_worker(nc, [ledger]) as host:
        replies = [
            await client.send("ledger", ID, "post", {"amounts": [i]}, command_id=f"c-{i}")
            for i in range(1, 6)
        ]
        assert host.snapshots is not None
        snapshots = host.snapshots
    snapshot = await stored_snapshot(ledger, snapshots)  # the one written on shutdown
    assert snapshot.version == 5
    assert replies[0].seq < snapshot.seq  # c-1 is known from the snapshot, not from a commit
    stream_messages = (await nc.jetstream().stream_info("EVENTS")).state.messages

    async with run_worker(nc, [ledger]) as host:
        retried = await client.send("ledger", ID, "post", {"amounts": [1]}, command_id="c-1")
        assert host.actors[("ledger", ID)].snapshot_version == snapshot.version
    assert retried == replies[0]
    assert (await nc.jetstream().stream_info("EVENTS")).state.messages == stream_messages


async def test_a_failing_snapshot_write_never_fails_a_command(nc: NATS) -> None:
    """Commands succeed while every snapshot write fails; each later commit tries again."""
    js = nc.jetstream()
    await js.create_key_value(
        api.KeyValueConfig(bucket="EVENTS_aggregates", max_value_size=16, direct=True)
    )
    ledger = make_ledger(snapshot_every=1)
    with capture_logs() as logs:
        async with run_worker(nc, [ledger], WorkerSettings()) as host:
            for amount in (1, 2, 3):
                reply = await Client(nc).send("ledger", ID, "post", {"amounts": [amount]})
                await host.snapshots_settled()
            assert reply.version == 3
    # One attempt after each commit, one more when the worker shut down.
    assert [e["event"] for e in logs].count("snapshot_failed") == 4
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await (await js.key_value("EVENTS_aggregates")).get(KEY)


async def test_no_snapshots_are_written_when_the_policy_is_off(nc: NATS) -> None:
    """snapshot_every=None writes nothing, and disabled settings create no bucket at all."""
    async with run_worker(nc, [make_ledger(snapshot_every=None)]) as host:
        await send(host, "ledger", ID, "post", {"amounts": [1] * 5})
        await host.snapshots_settled()
    with pytest.raises(nats.js.errors.BucketNotFoundError):
        await nc.jetstream().key_value("EVENTS_aggregates")
    settings = WorkerSettings(snapshots=SnapshotSettings(enabled=False))
    async with run_worker(nc, [make_ledger(snapshot_every=1)], settings) as host:
        await send(host, "ledger", ID, "post", {"amounts": [1]})
        assert host.snapshot_writer is None


async def test_an_aggregate_leaving_memory_gets_a_current_snapshot(
    stores: tuple[EventStore, SnapshotStore],
) -> None:
    """Idle passivation and LRU eviction snapshot an aggregate whose snapshot lacks events."""
    store, snapshots = stores
    ledger = make_ledger(snapshot_every=3)
    settings = HostSettings(max_actors=1, idle_timeout=3600)
    async with ActorHost(store, [ledger], settings, snapshots=snapshots).running() as host:
        for _ in range(4):
            await send(host, "ledger", ID, "post", {"amounts": [1]})
        await host.snapshots_settled()
        assert (await stored_snapshot(ledger, snapshots)).version == 3
        await send(host, "ledger", "l-2", "post", {"amounts": [1]})  # evicts l-1
        await host.snapshots_settled()
        assert (await stored_snapshot(ledger, snapshots)).version == 4

        for _ in range(4):
            await send(host, "ledger", ID, "post", {"amounts": [1]})  # evicts l-2, young
        await host.snapshots_settled()
        assert (await stored_snapshot(ledger, snapshots)).version == 7
        host.settings = replace(settings, idle_timeout=0)
        assert host.passivate_idle() == 1
        await host.snapshots_settled()
        assert (await stored_snapshot(ledger, snapshots)).version == 8
    with pytest.raises(nats.js.errors.KeyNotFoundError):  # too young to need one
        await snapshots.kv.get(snapshot_key("ledger", "l-2"))


async def test_a_draining_host_snapshots_what_it_holds(
    stores: tuple[EventStore, SnapshotStore],
) -> None:
    """Shutting down writes the snapshots that lag behind their aggregates."""
    store, snapshots = stores
    ledger = make_ledger(snapshot_every=3)
    async with ActorHost(store, [ledger], snapshots=snapshots).running() as host:
        await send(host, "ledger", ID, "post", {"amounts": [1, 1, 1, 1, 1]})
        await send(host, "ledger", ID, "post", {"amounts": [1]})
    snapshot = await stored_snapshot(ledger, snapshots)
    assert (snapshot.version, snapshot.state.balance) == (6, 6)
    assert position(await cold(ledger, store, snapshots))[:2] == (Ledger(6, 6, 1, ("",) * 3), 6)
