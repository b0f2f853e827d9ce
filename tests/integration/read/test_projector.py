"""Projection replicas against a real nats-server: convergence, snapshots, restarts, duplicates,
corrupt snapshots and poison events."""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import msgspec
import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.js import api
from structlog.testing import capture_logs

import runtime.read.snapshot_blob as blob_format
from aggregates import AGGREGATES
from aggregates.order import order
from projections import orders, users
from runtime import (
    Backoff,
    Client,
    DeadLetters,
    EventStore,
    InvalidInput,
    Projection,
    Projector,
    ProjectorSettings,
    Stale,
    Timeout,
    run_replica,
)
from runtime.domain.app import App
from runtime.ops.run import run_app
from runtime.read.snapshot_blob import MAGIC
from runtime.read.snapshots import (
    DEFAULT_BUCKET,
    H_PROJECTION,
    H_REPLICA,
    H_SCHEMA,
    H_SEQ,
    ProjectionSnapshotStore,
)
from runtime.testing import ProjectionSpec
from tests.snapshot_frames import as_format_2, split_frames

from ..procs import wait_until
from ..projection_support import (
    Calls,
    Statuses,
    append_orders,
    counting,
    order_created,
    read_commits,
    send_random_commands,
)

# Snapshots only when the tests take them (on stop), so counts are deterministic.
SETTINGS = ProjectorSettings(
    replica="r1",
    snapshot_every=None,
    snapshot_interval=None,
    max_attempts=3,
    retry_backoff=Backoff(first=0.001, maximum=0.001),
    stale_timeout=2.0,
)


async def fold(nc: NATS, projection: Any) -> Any:
    """The model a pure fold of every commit in the stream gives."""
    return ProjectionSpec(projection).given_commits(await read_commits(nc)).model


async def test_replicas_converge_to_the_pure_fold_of_random_commands(nc: NATS) -> None:
    """After 3,000 random commands both example read models equal a pure fold of the stream."""
    app = App(aggregates=AGGREGATES, projections=(orders, users))
    async with run_app(nc, app, projector_settings=SETTINGS) as running:
        results = await send_random_commands(Client(nc), 3000, seed=7)
        last = max(r.seq for r in results)
        for projector in running.projectors:
            assert await projector.wait_for(last, timeout=30)
        by_name = {p.projection.name: p.model for p in running.projectors}
        assert by_name["orders"] == await fold(nc, orders)
        assert by_name["users"] == await fold(nc, users)
        assert len(by_name["orders"].orders) > 50


async def test_a_restart_resumes_from_the_snapshot(nc: NATS, store: EventStore) -> None:
    """A restarted replica restores its snapshot and runs handlers only for later events."""
    projection, calls = counting()
    first = await append_orders(store, 200, prefix="a")
    async with run_replica(nc, projection, SETTINGS) as replica:
        assert await replica.wait_for(first, timeout=10)
    assert calls.n == 300  # 200 creations, 100 payments; stopping took a snapshot at `first`

    last = await append_orders(store, 40, prefix="b")
    calls.n = 0
    calls.seqs.clear()
    async with run_replica(nc, projection, SETTINGS) as replica:
        assert replica.restored_from is not None and replica.restored_from.seq == first
        assert await replica.wait_for(last, timeout=10)
        assert calls.n == 60 and min(calls.seqs) > first
        assert replica.model == await fold(nc, counting()[0])


async def test_duplicates_and_redeliveries_change_nothing(nc: NATS, store: EventStore) -> None:
    """Redelivering the whole stream (consumer reset to seq 1) runs no handler twice."""
    projection, calls = counting()
    last = await append_orders(store, 100)
    async with run_replica(nc, projection, SETTINGS) as replica:
        assert await replica.wait_for(last, timeout=10)
        before = calls.n
        await nc.jetstream().reset_consumer("EVENTS", replica.consumer.name, seq=1)
        seq, _ = await store.append(order_created("late", "u-1"), 0)
        assert await replica.wait_for(seq, timeout=10)
        assert calls.n == before + 1
        assert replica.duplicates >= 150
        assert replica.model == await fold(nc, counting()[0])


async def corrupt(nc: NATS, projection: str, replica: str, payload: bytes) -> None:
    """Overwrite a snapshot's bytes, keeping the metadata that points at it."""
    snapshots = ProjectionSnapshotStore(nc)
    await snapshots.start()
    [info] = [s for s in await snapshots.list(projection) if s.replica == replica]
    headers = {
        H_PROJECTION: [info.projection],
        H_REPLICA: [info.replica],
        H_SEQ: [str(info.seq)],
        H_SCHEMA: [str(info.schema)],
    }
    obs = await nc.jetstream().object_store(DEFAULT_BUCKET)
    await obs.put(info.object_name, payload, meta=api.ObjectMeta(headers=headers))


@pytest.mark.parametrize("payload", [b"not a snapshot", b"CQRS-PROJECTION-SNAPSHOT\n{}\n"])
async def test_a_corrupt_snapshot_falls_back_to_full_replay(
    nc: NATS, store: EventStore, payload: bytes
) -> None:
    """An unreadable snapshot is logged and the replica rebuilds from the first event."""
    projection, calls = counting()
    last = await append_orders(store, 60)
    async with run_replica(nc, projection, SETTINGS) as replica:
        assert await replica.wait_for(last, timeout=10)
    await corrupt(nc, "tally", "r1", payload)
    await rebuilds_from_the_first_event(nc, projection, calls, last)


async def rebuilds_from_the_first_event(
    nc: NATS, projection: Projection[Statuses], calls: Calls, last: int
) -> None:
    """A replica started now logs its snapshot as unreadable and applies all 60 orders' events
    again, to the model a fold of the stream gives."""
    calls.n = 0
    with capture_logs() as logs:
        async with run_replica(nc, projection, SETTINGS) as replica:
            assert replica.restored_from is None
            assert await replica.wait_for(last, timeout=10)
            assert calls.n == 90
            assert replica.model == await fold(nc, counting()[0])
    assert any(e["event"] == "snapshot_unreadable" for e in logs)


async def stored_blob(nc: NATS, projection: str, replica: str) -> bytes:
    snapshots = ProjectionSnapshotStore(nc)
    await snapshots.start()
    [info] = [s for s in await snapshots.list(projection) if s.replica == replica]
    obs = await nc.jetstream().object_store(DEFAULT_BUCKET)
    out = io.BytesIO()
    await obs.get(info.object_name, writeinto=out)  # type: ignore[arg-type]
    return out.getvalue()


DAMAGES: dict[str, Callable[[bytes, list[bytes]], bytes]] = {
    "cut inside a frame": lambda head, frames: head + b"".join(frames)[:-10],
    "cut between frames": lambda head, frames: head + b"".join(frames[:-2]),
    "a frame garbled": lambda head, frames: head + frames[0] + b"\x00" * 40 + b"".join(frames[2:]),
}


@pytest.mark.parametrize("damage", DAMAGES)
async def test_a_damaged_snapshot_falls_back_to_full_replay(
    nc: NATS, store: EventStore, damage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot cut short or garbled is logged, and the replica rebuilds."""
    monkeypatch.setattr(blob_format, "PIECE", 8)  # 60 orders: 8 frames of entries
    projection, calls = counting()
    last = await append_orders(store, 60)
    async with run_replica(nc, projection, SETTINGS) as replica:
        assert await replica.wait_for(last, timeout=10)
    head, frames = split_frames(await stored_blob(nc, "tally", "r1"))
    assert b'"format":3' in head and len(frames) == 9
    await corrupt(nc, "tally", "r1", DAMAGES[damage](head, frames))
    await rebuilds_from_the_first_event(nc, projection, calls, last)


async def resumes_from_the_snapshot(
    nc: NATS, store: EventStore, projection: Projection[Statuses], calls: Calls, first: int
) -> None:
    """After 10 more orders, a replica started now restores the snapshot taken at ``first`` and
    applies only the later events, to the model a fold of the stream gives."""
    last = await append_orders(store, 10, prefix="b")
    calls.n = 0
    async with run_replica(nc, projection, SETTINGS) as replica:
        assert replica.restored_from is not None and replica.restored_from.seq == first
        assert await replica.wait_for(last, timeout=10)
        assert calls.n == 15  # only the later events
        assert replica.model == await fold(nc, counting()[0])


async def test_a_format_1_snapshot_still_restores(nc: NATS, store: EventStore) -> None:
    """A snapshot stored in format 1 (one zlib stream of the whole model) is restored."""
    projection, calls = counting()
    first = await append_orders(store, 40, prefix="a")
    async with run_replica(nc, projection, SETTINGS) as replica:
        assert await replica.wait_for(first, timeout=10)
        model = replica.model
    header = orjson.loads(split_frames(await stored_blob(nc, "tally", "r1"))[0].split(b"\n")[1])
    header["format"] = 1
    del header["frames"]
    body = zlib.compress(msgspec.msgpack.encode(model), 1)
    await corrupt(nc, "tally", "r1", b"".join((MAGIC, b"\n", orjson.dumps(header), b"\n", body)))
    await resumes_from_the_snapshot(nc, store, projection, calls, first)


async def test_a_format_2_snapshot_still_restores(nc: NATS, store: EventStore) -> None:
    """A snapshot stored in format 2 (frames without their sizes) is restored."""
    projection, calls = counting()
    first = await append_orders(store, 40, prefix="a")
    async with run_replica(nc, projection, SETTINGS) as replica:
        assert await replica.wait_for(first, timeout=10)
    await corrupt(nc, "tally", "r1", as_format_2(await stored_blob(nc, "tally", "r1")))
    await resumes_from_the_snapshot(nc, store, projection, calls, first)


async def test_a_snapshot_of_another_schema_version_is_replayed_over(
    nc: NATS, store: EventStore
) -> None:
    """A snapshot of schema version 1 is not restored into version 2: full replay, logged as
    information, not as a warning (versions run side by side during every version change)."""
    v1, _ = counting(version=1)
    last = await append_orders(store, 30)
    async with run_replica(nc, v1, SETTINGS) as replica:
        assert await replica.wait_for(last, timeout=10)
    v2, calls = counting(version=2)
    with capture_logs() as logs:
        async with run_replica(nc, v2, SETTINGS) as replica:
            assert await replica.wait_for(last, timeout=10)
    assert calls.n == 45
    skipped = [e for e in logs if e["event"] == "snapshot_other_version"]
    assert skipped and all(e["log_level"] == "info" for e in skipped), skipped


async def test_a_poison_event_halts_the_replica_which_keeps_serving(
    nc: NATS, store: EventStore
) -> None:
    """Under `halt` a failing handler is retried, then applying stops before it; queries go on."""
    projection, calls = counting(poison_user="u-poison")
    good = await append_orders(store, 10, prefix="g")
    poison, _ = await store.append(order_created("bad", "u-poison"), 0)
    later = await append_orders(store, 5, prefix="h")
    async with run_replica(nc, projection, SETTINGS) as replica:
        assert not await replica.wait_for(later, timeout=10)
        assert replica.halted is not None and replica.halted.seq == poison
        assert replica.applied == good
        assert calls.seqs.count(poison) == 3  # max_attempts
        status = replica.status()
        assert status["state"] == "halted" and "u-poison" in status["halted"]["error"]
        client = Client(nc)
        answer = await client.query("tally", "status_of", {"order_id": "g-1"})
        assert answer.result == "paid" and answer.seq == good
        with pytest.raises(Stale) as stale:
            await client.query("tally", "status_of", {"order_id": "h-1"}, min_seq=later)
        assert stale.value.details["halted"] is True


async def test_a_poison_event_is_dead_lettered_under_skip(nc: NATS, store: EventStore) -> None:
    """Under `skip` a failing event is recorded where an operator can list it; the rest goes on."""
    projection, _ = counting("skipper", on_poison="skip", poison_user="u-poison")
    await append_orders(store, 10, prefix="g")
    poison, _ = await store.append(order_created("bad", "u-poison"), 0)
    later = await append_orders(store, 5, prefix="h")
    async with run_replica(nc, projection, SETTINGS) as replica:
        assert await replica.wait_for(later, timeout=10)
        assert replica.halted is None and replica.poison.dead_lettered == 1
        assert "bad" not in replica.model.status and replica.model.status["h-1"] == "paid"
    [letter] = await DeadLetters(nc).list("skipper")
    assert letter.seq == poison and letter.subject == "events.order.bad"
    assert letter.type == "order.created.v2" and "u-poison" in letter.error
    assert letter.attempts == 3 and letter.data["user_id"] == "u-poison"
    assert await DeadLetters(nc).list("tally") == []


async def test_a_replica_stopped_right_after_it_started_stops(nc: NATS, store: EventStore) -> None:
    """Leaving a replica's context at once stops its loop even before the loop ever ran."""
    projection, _ = counting()
    last = await append_orders(store, 3)
    with anyio.fail_after(10):
        async with Projector(nc, projection, SETTINGS).running():
            pass
        async with Projector(nc, projection, SETTINGS).running() as replica:
            assert replica.applied in (0, last)  # whatever the first got to apply


def test_a_replica_id_must_be_one_subject_token() -> None:
    """A replica id names a consumer and a snapshot, so it must be a valid token."""
    with pytest.raises(InvalidInput, match="replica"):
        ProjectorSettings(replica="a.b")


async def test_deliveries_lost_on_the_way_are_not_overtaken(nc: NATS, store: EventStore) -> None:
    """When deliveries go missing (as with a dropped connection), later ones do not overtake
    them: the replica puts its consumer back and applies every event exactly once."""
    projection, calls = counting()
    first = await append_orders(store, 10, prefix="a")
    replica = Projector(nc, projection, SETTINGS)
    await replica.start()
    try:
        await replica.apply_batch(await replica.consumer.fetch(500))
        assert replica.applied == first
        last = await append_orders(store, 10, prefix="b")
        # Another subscriber takes the next deliveries: to the replica they are lost.
        thief = await nc.jetstream().pull_subscribe_bind(replica.consumer.name, stream="EVENTS")
        assert len(await thief.fetch(5, timeout=2)) == 5
        await thief.unsubscribe()
        with capture_logs() as logs:
            while replica.applied < last:
                await replica.apply_batch(await replica.consumer.fetch(500))
    finally:
        await replica.consumer.stop()
    assert [e["expected"] for e in logs if e["event"] == "delivery_gap"] == [16]
    assert calls.n == 30 and len(set(calls.seqs)) == 30
    assert replica.model == await fold(nc, counting()[0])


async def test_a_failed_consumer_recovery_is_tried_again_without_new_deliveries(
    nc: NATS, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the last deliveries went missing and putting the consumer back fails once (JetStream
    not answering in a failover), the replica tries again instead of waiting for an event that
    may never come, and applies every event exactly once."""
    projection, calls = counting()
    first = await append_orders(store, 10, prefix="a")
    replica = Projector(nc, projection, SETTINGS)
    held, at_gate, gate = False, anyio.Event(), anyio.Event()
    fetch, start = replica.consumer.fetch, replica.consumer.start
    failures = 0

    async def losing_fetch(batch: int) -> list[Any]:
        nonlocal held
        if not held:
            return await fetch(batch)
        at_gate.set()
        await gate.wait()  # until every commit of the batch below is in the stream
        msgs = await fetch(batch)
        held = False
        return msgs[1:]  # the first delivery is lost on the way

    async def failing_start(*, after_seq: int) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise Timeout("JetStream did not answer while setting up the consumer")
        await start(after_seq=after_seq)

    monkeypatch.setattr(replica.consumer, "fetch", losing_fetch)
    monkeypatch.setattr(replica.consumer, "start", failing_start)
    with capture_logs() as logs:
        async with replica.running():
            await wait_until(lambda: replica.applied == first, 20, "the first commits")
            held, failures = True, 1
            await at_gate.wait()
            last = await append_orders(store, 10, prefix="b")
            gate.set()
            await wait_until(lambda: replica.applied == last, 20, "the lost commits")
    assert [e["event"] for e in logs if e["event"] == "consumer_recovery_failed"] == [
        "consumer_recovery_failed"
    ]
    assert calls.n == 30 and len(set(calls.seqs)) == 30
    assert replica.model == await fold(nc, counting()[0])


@dataclass
class Opaque:
    things: list[Any] = field(default_factory=list)


async def test_a_model_that_cannot_be_snapshotted_keeps_applying(
    nc: NATS, store: EventStore
) -> None:
    """A model msgspec cannot encode is reported as a failed snapshot; applying goes on."""
    opaque = Projection("opaque", Opaque, follows=[order])

    @opaque.on("order.created.v2")
    def created(model: Opaque, event: Any) -> None:
        model.things.append(object())

    last = await append_orders(store, 5)
    with capture_logs() as logs:
        async with run_replica(nc, opaque, replace(SETTINGS, snapshot_every=1)) as replica:
            assert await replica.wait_for(last, timeout=10)
            assert len(replica.model.things) == 5
    events = [e["event"] for e in logs]
    assert "snapshot_failed" in events and "final_snapshot_failed" in events
