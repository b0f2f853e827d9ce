"""Versions of one projection side by side in one process: their own consumers, snapshots and
claims; which one answers; a read-your-writes bound beyond the stream; retiring a version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import nats
import orjson
import pytest
from nats.aio.client import Client as NATS

from runtime import (
    Client,
    EventStore,
    ProjectorSettings,
    ReplicaInUse,
    Stale,
    Unavailable,
    run_replica,
)
from runtime.read.board import Board, read_board
from runtime.read.gauges import ReplicaGaugeSource
from runtime.read.rebuild import rebuild
from runtime.read.retire import retire
from runtime.read.snapshots import ProjectionSnapshotStore
from runtime.read.status import collect
from runtime.transport.embedded import EmbeddedServer

from ..procs import wait_until
from ..projection_support import append_orders, counting, order_created

CQRS = str(Path(sys.executable).parent / "cqrs")
SETTINGS = ProjectorSettings(replica="r1", snapshot_every=None, snapshot_interval=None)


async def consumers(nc: NATS) -> set[str]:
    return {i.name or "" for i in await nc.jetstream().consumers_info("EVENTS")}


async def snapshots(nc: NATS) -> set[str]:
    store = ProjectionSnapshotStore(nc)
    await store.start()
    return {s.object_name for s in await store.list("tally")}


async def test_two_versions_on_one_replica_id_run_side_by_side_and_the_newer_answers(
    nc: NATS, store: EventStore
) -> None:
    """Versions 1 and 2 under the same replica id keep their own consumers and snapshots; once
    version 2 has caught up it alone answers, and version 1 answers again when it stops."""
    v1, _ = counting(version=1)
    v2, _ = counting(version=2)
    last = await append_orders(store, 20)
    client = Client(nc)
    async with run_replica(nc, v1, SETTINGS) as old:
        assert (await client.query("tally", "status_of", {"order_id": "o-1"})).version == 1
        async with run_replica(nc, v2, SETTINGS) as new:
            assert await new.wait_for(last, timeout=10)

            async def v2_alone() -> bool:
                return old.standing is not None and not old.standing()["serving"]

            await wait_until(v2_alone, 10, "version 1 to stand by")
            answer = await client.query("tally", "status_of", {"order_id": "o-1"})
            assert answer.version == 2 and answer.result == "paid"
            gauges = ReplicaGaugeSource(new).gauges()
            assert gauges.serving and gauges.version == 2 and gauges.catching_up is None
            assert not ReplicaGaugeSource(old).gauges().serving
            report = await collect(nc, projections=["tally"])
            rows = {(r["version"], r["replica"]): r for r in report["replicas"]}
            assert rows[(2, "r1")]["serving"] and not rows[(1, "r1")]["serving"]
            assert rows[(1, "r1")]["caught_up"] and rows[(2, "r1")]["lag"] == 0
        # Version 2 handed its queries back before it stopped taking them.
        assert old.standing is not None and old.standing()["serving"]
        assert (await client.query("tally", "status_of", {"order_id": "o-1"})).version == 1
    assert {"cqrs-proj-tally-r1", "cqrs-proj-tally-v2-r1"} <= await consumers(nc)
    assert await snapshots(nc) == {"tally.r1", "tally.v2.r1"}


async def test_a_new_version_that_halts_after_taking_over_hands_the_queries_back(
    nc: NATS, store: EventStore
) -> None:
    """Version 2 serves once caught up; when a poison event halts it, version 1 (healthy)
    answers again, from a model past the poison event."""
    v1, _ = counting(version=1)
    v2, _ = counting(version=2, poison_user="u-poison")
    await append_orders(store, 10)
    client = Client(nc)
    async with run_replica(nc, v1, SETTINGS) as old, run_replica(nc, v2, SETTINGS) as new:
        await wait_until(lambda: not serving(old), 10, "version 1 to stand by")
        assert (await client.query("tally", "status_of", {"order_id": "o-1"})).version == 2
        poison, _ = await store.append(order_created("bad", "u-poison"), 0)
        await wait_until(lambda: serving(old) and not serving(new), 10, "version 1 to serve")
        assert new.halted is not None
        answer = await client.query("tally", "status_of", {"order_id": "bad"}, min_seq=poison)
        assert answer.version == 1 and answer.result == "created"


async def test_a_new_version_serves_only_once_it_has_seen_the_whole_board(
    nc: NATS, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caught-up version 2 whose board watch has not delivered version 1's entry yet takes no
    query: it cannot know that version 1 serves, unfenced, so both would answer with nothing
    keeping an answer from coming behind another. Once the board is in, the switch goes on."""
    v1, _ = counting(version=1)
    v2, _ = counting(version=2)
    await append_orders(store, 10)
    async with run_replica(nc, v1, SETTINGS) as old:
        assert serving(old)
        delivered, stop = anyio.Event(), anyio.Event()
        watch = Board._watch

        async def held_back(board: Board) -> None:
            await delivered.wait()
            await watch(board)

        monkeypatch.setattr(Board, "_watch", held_back)
        started: list[Any] = []

        async def run_v2() -> None:
            async with run_replica(nc, v2, SETTINGS) as new:
                started.append(new)
                await stop.wait()

        async def v2_entry() -> dict[str, Any] | None:
            entries = [e for e in await read_board(nc) if e["version"] == 2]
            return entries[0] if entries and entries[0]["caught_up"] else None

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_v2)
            # Its entry is published after each decision: caught up, and it decided not to serve.
            await wait_until(v2_entry, 10, "version 2 to catch up")
            entry = await v2_entry()
            assert entry is not None and not entry["serving"] and serving(old) and not started
            delivered.set()
            await wait_until(
                lambda: started and serving(started[0]) and not serving(old), 10, "v2 alone"
            )
            stop.set()


def serving(replica: Any) -> bool:
    return bool(replica.standing is not None and replica.standing()["serving"])


async def test_retiring_a_version_refuses_while_it_runs_then_deletes_only_its_own(
    nc: NATS, nats_server: EmbeddedServer, store: EventStore
) -> None:
    """cqrs projections retire refuses while a replica of the version is live; afterwards it
    deletes that version's consumers and snapshots and leaves the other version's alone."""
    v1, _ = counting(version=1)
    v2, _ = counting(version=2)
    await append_orders(store, 10)
    async with run_replica(nc, v2, SETTINGS):
        async with run_replica(nc, v1, SETTINGS):
            with pytest.raises(ReplicaInUse):
                await retire(nc, "tally", 1)
        done = await anyio.run_process(
            [CQRS, "projections", "retire", "tally", "--version", "1", "--json"],
            env={"NATS_URL": nats_server.url, "PATH": str(Path(sys.executable).parent)},
            check=False,
            stderr=subprocess.STDOUT,
        )
    assert done.returncode == 0, done.stdout
    retired = orjson.loads(done.stdout)
    assert retired["consumers"] == ["cqrs-proj-tally-r1"] and retired["snapshots"] == ["tally.r1"]
    assert "cqrs-proj-tally-v2-r1" in await consumers(nc)
    assert await snapshots(nc) == {"tally.v2.r1"}


async def test_a_rebuild_compares_and_replaces_only_within_its_version(
    nc: NATS, store: EventStore
) -> None:
    """Rebuilding version 1 while version 2 serves compares with nothing (the live model is
    another version's) and replaces only version 1's snapshots."""
    v1, _ = counting(version=1)
    v2, _ = counting(version=2)
    await append_orders(store, 10)
    async with run_replica(nc, v1, SETTINGS), run_replica(nc, v2, SETTINGS) as new:
        await new.snapshot_now()
        await wait_until(lambda: serving(new), 10, "version 2 to serve")
        result = await rebuild(nc, v1, replace_snapshots=True)
    assert result.live is not None and result.live["version"] == 2 and result.equal is None
    assert await snapshots(nc) >= {"tally.v2.r1", "tally.rebuild"}


async def test_a_min_seq_beyond_the_stream_is_stale_at_once(nc: NATS, store: EventStore) -> None:
    """A query whose Cqrs-Min-Seq no commit has yet is answered `stale` without waiting out
    the stale timeout, saying the sequence is ahead of the stream."""
    projection, _ = counting()
    last = await append_orders(store, 5)
    patient = ProjectorSettings(replica="r1", stale_timeout=60.0)
    async with run_replica(nc, projection, patient):
        with pytest.raises(Stale) as stale:
            # Waiting out the stale timeout would make this a client timeout instead.
            await Client(nc).query(
                "tally", "status_of", {"order_id": "o-1"}, min_seq=last + 100, timeout=10
            )
    assert "ahead of the stream" in stale.value.message
    assert stale.value.details["ahead_of_stream"] is True
    assert stale.value.details["stream_last_seq"] == last


async def test_a_board_that_cannot_be_read_is_an_error_not_an_empty_board(
    nats_server: EmbeddedServer,
) -> None:
    """Retiring decides on the board: one it could not read must fail, never read as empty
    (which would let ``retire`` delete the resources of replicas that are live)."""
    connection = await nats.connect(nats_server.url)
    await connection.close()
    with pytest.raises(Unavailable):
        await read_board(connection)
    with pytest.raises(Unavailable):
        await retire(connection, "tally", 1)
