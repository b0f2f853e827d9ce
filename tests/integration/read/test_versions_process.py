"""Deploying a changed projection with ``cqrs projector`` processes: a replica serves only once
it has caught up, one version answers at a time, and the switch (and the rollback) loses and
falsifies no answer under continuous query load."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from nats.aio.client import Client as NATS

from runtime import Client, CqrsError, EventStore
from runtime.read.board import read_board
from runtime.read.status import collect
from runtime.transport.embedded import EmbeddedServer

from ..procs import WorkerProcess, wait_until, workers
from ..projection_support import append_orders, order_created

V1_APP = "aggregates:AGGREGATES,projections:orders"
V2_APP = "aggregates:AGGREGATES,tests.integration.read.versions_support:orders_v2"
V2_SLOW_APP = "aggregates:AGGREGATES,tests.integration.read.versions_support:orders_v2_slow"
ORDERS = 600  # orders in the stream before the first replica starts (900 commits)


def projector(tmp: Path, url: str, name: str, app: str, *extra: str) -> WorkerProcess:
    return WorkerProcess(
        directory=tmp / name,
        url=url,
        user=None,
        command="projector",
        app=app,
        extra=("--projections", "orders", *extra),
    )


@dataclass
class Answer:
    # What the test was doing when the query was sent, and when its answer came: a phase ends
    # with a signal to a process, so a query sent just before it may reach the server after it,
    # and be answered by whoever serves then. An answer belongs to a phase only when both agree.
    phase: str
    received: str
    floor: int  # the highest sequence any answer received before this query was sent showed
    seq: int
    version: int


@dataclass
class Load:
    """Queries for existing orders without pause, and read-your-writes queries right after
    commands, recording every answer and every error."""

    client: Client
    store: EventStore
    phase: str = "v1"
    prefix: str = "a"  # of the existing orders the readers ask for
    answers: list[Answer] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    highest: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def note(self, phase: str, floor: int, reply: Any) -> None:
        self.answers.append(Answer(phase, self.phase, floor, reply.seq, reply.version))
        self.highest = max(self.highest, reply.seq)

    async def reader(self, stop: anyio.Event) -> None:
        while not stop.is_set():
            phase, floor = self.phase, self.highest
            order_id = f"{self.prefix}-{self.rng.randrange(ORDERS)}"
            try:
                reply = await self.client.query(
                    "orders", "get_order_by_id", {"order_id": order_id}, timeout=10
                )
            except CqrsError as exc:
                self.errors[f"{exc.code} ({phase})"] += 1
                continue
            self.note(phase, floor, reply)

    async def writer(self, stop: anyio.Event) -> None:
        i = 0
        while not stop.is_set():
            seq, _ = await self.store.append(order_created(f"w-{i}", "u-1"), 0)
            phase, floor = self.phase, self.highest
            try:
                reply = await self.client.query(
                    "orders", "get_order_by_id", {"order_id": f"w-{i}"}, min_seq=seq, timeout=10
                )
            except CqrsError as exc:
                self.errors[f"{exc.code} read-your-writes ({phase})"] += 1
            else:
                assert reply.seq >= seq
                self.note(phase, floor, reply)
            i += 1

    def versions(self, phase: str) -> set[int]:
        return {a.version for a in self.answers if a.phase == a.received == phase}

    def answered(self, phase: str, version: int) -> int:
        return sum(
            1 for a in self.answers if a.phase == a.received == phase and a.version == version
        )

    def behind(self) -> list[Answer]:
        """Answers from a model behind one an earlier answer had already shown."""
        return [a for a in self.answers if a.seq < a.floor]


@asynccontextmanager
async def load(client: Client, store: EventStore, prefix: str = "a") -> AsyncIterator[Load]:
    state = Load(client, store, prefix=prefix)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(state.reader, stop)
        tg.start_soon(state.writer, stop)
        try:
            yield state
        finally:
            stop.set()


async def board(nc: NATS) -> dict[tuple[int, str], dict[str, Any]]:
    return {
        (s["version"], s["replica"]): s for s in await read_board(nc) if s["projection"] == "orders"
    }


async def serving(nc: NATS) -> set[tuple[int, str]]:
    return {key for key, state in (await board(nc)).items() if state["serving"]}


async def test_a_new_version_takes_over_and_hands_back_without_a_wrong_or_missing_answer(
    nc: NATS, nats_server: EmbeddedServer, store: EventStore, tmp_path: Path
) -> None:
    """Under continuous queries, version 2 rebuilding beside version 1 leaves version 1
    answering until it has caught up, then version 2 alone answers, then version 1 again once
    version 2 stops: no query finds no responder, none answers not_found or from a model behind
    an earlier answer, and read-your-writes holds throughout."""
    await append_orders(store, ORDERS, prefix="a")
    url = nats_server.url
    # The same replica id in both versions: what the default (the host name) gives on one host.
    v1 = projector(tmp_path, url, "v1", V1_APP, "--replica", "r1")
    v2 = projector(tmp_path, url, "v2", V2_APP, "--replica", "r1", "--batch", "20")
    with workers(v1):
        await v1.wait_ready()
        async with load(Client(nc), store) as state:
            await wait_until(lambda: state.answered("v1", 1) >= 50, 30, "answers from v1")
            with workers(v2):
                state.phase = "switching"
                await v2.wait_ready(60)
                await wait_until(lambda: _only(serving(nc), {(2, "r1")}), 30, "v2 to serve alone")
                state.phase = "v2"
                await wait_until(lambda: state.answered("v2", 2) >= 50, 30, "answers from v2")
                state.phase = "rollback"
                v2.signal()
                assert await v2.wait_exit(30) == 0
            state.phase = "v1 again"
            await wait_until(lambda: state.answered("v1 again", 1) >= 50, 30, "v1 again")
        v1.signal()
        assert await v1.wait_exit(30) == 0
    assert not state.errors, state.errors
    assert not state.behind(), state.behind()[:5]
    assert state.versions("v1") == {1}
    assert state.versions("switching") <= {1, 2}
    assert state.versions("v2") == {2}
    assert state.versions("v1 again") == {1}


async def _only(current: Any, wanted: set[tuple[int, str]]) -> bool:
    return await current == wanted


async def test_a_new_version_killed_mid_rebuild_leaves_the_old_one_serving(
    nc: NATS, nats_server: EmbeddedServer, store: EventStore, tmp_path: Path
) -> None:
    """A version 2 replica SIGKILLed while it rebuilds never answers (cqrs status shows it
    catching up meanwhile); version 1 answers every query throughout."""
    # Three times the stream, 2 ms of CPU per event, read one commit per fetch: version 2 must
    # still be rebuilding when it is killed, after cqrs status has been asked (its replica is
    # asked over $SRV, so it runs meanwhile).
    await append_orders(store, 3 * ORDERS, prefix="a")
    url = nats_server.url
    v1 = projector(tmp_path, url, "v1", V1_APP, "--replica", "r1")
    v2 = projector(tmp_path, url, "v2", V2_SLOW_APP, "--replica", "r1", "--batch", "1")
    with workers(v1):
        await v1.wait_ready()
        async with load(Client(nc), store) as state:
            with workers(v2):

                async def rebuilding() -> bool:
                    mine = (await board(nc)).get((2, "r1"))
                    return mine is not None and mine["position"] > 0 and not mine["caught_up"]

                await wait_until(rebuilding, 30, "version 2 to be rebuilding")
                report = await collect(nc, projections=["orders"])
                rows = {(r["version"], r["replica"]): r for r in report["replicas"]}
                v2.kill()
            state.phase = "after the kill"
            await wait_until(lambda: state.answered("after the kill", 1) >= 50, 30, "answers")
    assert not state.errors, state.errors
    assert {a.version for a in state.answers} == {1}
    assert not state.behind()
    # cqrs status showed the rebuilding replica: not serving, with what it had left to do.
    assert rows[(1, "r1")]["serving"] and rows[(2, "r1")]["caught_up"] is False
    assert rows[(2, "r1")]["serving"] is False and rows[(2, "r1")]["lag"] > 0
    assert "eta_seconds" in rows[(2, "r1")]


async def test_a_replica_restored_from_an_old_snapshot_serves_only_once_caught_up(
    nc: NATS, nats_server: EmbeddedServer, store: EventStore, tmp_path: Path
) -> None:
    """A second replica of the same version that finds only an old snapshot stays out of the
    query group while it replays the rest, then joins it: no query meanwhile misses a row."""
    await append_orders(store, ORDERS, prefix="a")
    url = nats_server.url
    first = projector(tmp_path, url, "r1", V1_APP, "--replica", "r1")
    with workers(first):
        await first.wait_ready()
        first.signal()  # its final snapshot, at the end of what is stored now
        assert await first.wait_exit(30) == 0
    old = int((await nc.jetstream().stream_info("EVENTS")).state.last_seq)
    await append_orders(store, ORDERS, prefix="b")  # after that snapshot
    no_snapshots = ("--snapshot-every", "0", "--snapshot-interval", "0")
    r1 = projector(tmp_path, url, "r1", V1_APP, "--replica", "r1", *no_snapshots)
    r2 = projector(tmp_path, url, "r2", V1_APP, "--replica", "r2", "--batch", "1")
    with workers(r1):
        await r1.wait_ready()
        async with load(Client(nc), store, prefix="b") as state:  # orders its snapshot lacks
            with workers(r2):
                await r2.wait_ready(60)
                state.phase = "both"
                await wait_until(lambda: state.answered("both", 1) >= 50, 30, "answers")
                r2.signal()
                assert await r2.wait_exit(30) == 0
    assert not state.errors, state.errors
    events = {e["event"]: e for e in r2.log_events()}
    assert events["snapshot_restored"]["seq"] == old  # the only snapshot there was
    assert events["replica_caught_up"]["position"] >= old + ORDERS * 3 // 2
    assert events["replica_serving"]["timestamp"] >= events["replica_caught_up"]["timestamp"]


async def test_two_replicas_of_the_new_version_share_its_queries(
    nc: NATS, nats_server: EmbeddedServer, store: EventStore, tmp_path: Path
) -> None:
    """Two replicas of version 2 both serve once caught up, version 1 stands by; stopping one
    leaves the other serving alone, and version 1 answers again only after both stopped."""
    await append_orders(store, ORDERS, prefix="a")
    url = nats_server.url
    v1 = projector(tmp_path, url, "v1", V1_APP, "--replica", "r1")
    a = projector(tmp_path, url, "a", V2_APP, "--replica", "a")
    b = projector(tmp_path, url, "b", V2_APP, "--replica", "b")
    with workers(v1):
        await v1.wait_ready()
        async with load(Client(nc), store) as state:
            with workers(a, b):
                await a.wait_ready()
                await b.wait_ready()
                await wait_until(
                    lambda: _only(serving(nc), {(2, "a"), (2, "b")}), 30, "both v2 serving"
                )
                a.signal()
                assert await a.wait_exit(30) == 0
                state.phase = "b alone"
                await wait_until(lambda: state.answered("b alone", 2) >= 50, 30, "answers")
                assert await serving(nc) == {(2, "b")}
                state.phase = "rollback"
                b.signal()
                assert await b.wait_exit(30) == 0
            state.phase = "v1 again"
            await wait_until(lambda: state.answered("v1 again", 1) >= 50, 30, "v1 again")
    assert not state.errors, state.errors
    assert state.versions("b alone") == {2}
    assert state.versions("v1 again") == {1}


async def test_killing_the_serving_new_version_brings_the_old_one_back(
    nc: NATS, nats_server: EmbeddedServer, store: EventStore, tmp_path: Path
) -> None:
    """When the only replica of version 2, serving, is SIGKILLed, version 1 answers again once
    its entry on the replica board has expired; meanwhile queries find no responder (or, sent
    before the kill, time out), and none is answered wrong."""
    await append_orders(store, ORDERS, prefix="a")
    url = nats_server.url
    v1 = projector(tmp_path, url, "v1", V1_APP, "--replica", "r1")
    v2 = projector(tmp_path, url, "v2", V2_APP, "--replica", "r1")
    with workers(v1):
        await v1.wait_ready()
        async with load(Client(nc), store) as state:
            with workers(v2):
                await v2.wait_ready()
                await wait_until(lambda: _only(serving(nc), {(2, "r1")}), 30, "v2 alone")
                state.phase = "v2"
                await wait_until(lambda: state.answered("v2", 2) >= 20, 30, "answers from v2")
                state.phase = "killed"
                v2.kill()
            await wait_until(lambda: state.answered("killed", 1) >= 1, 30, "version 1 again")
            state.phase = "v1 again"
            await wait_until(lambda: state.answered("v1 again", 1) >= 50, 30, "answers")
    # Queries in flight at the kill time out (safe to retry); later ones find no responder.
    assert all(e.startswith(("no_responders", "timeout")) for e in state.errors), state.errors
    assert not [e for e in state.errors if e.endswith("(v1 again)")], state.errors
    assert state.versions("v1 again") == {1} and not state.behind()
