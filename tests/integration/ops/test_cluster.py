"""A 3-node JetStream cluster on loopback: failover of the stream leader and of a worker."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS

from runtime import Client, ConnectOptions, CqrsError, StreamSettings
from runtime.domain.app import load_app
from runtime.errors import ConfigurationError
from runtime.ops.permissions import UserPlan
from runtime.transport.connection import open_connection
from runtime.transport.streams import ensure_event_stream

from ..load import CommandLoad, assert_exactly_once
from ..procs import READ_APP, NatsNode, WorkerProcess, cluster_nodes, password, running, wait_until
from ..procs import workers as worker_processes
from ..support import stream_commits

APP = load_app(READ_APP)
PLAN = UserPlan()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sequence[NatsNode]]:
    """Three nats-servers running the generated cluster config, routed on loopback."""
    nodes = cluster_nodes(tmp_path_factory.mktemp("cluster"), APP, PLAN)
    with running(nodes):
        yield nodes


def urls(nodes: Sequence[NatsNode]) -> str:
    return ",".join(node.url for node in nodes)


@asynccontextmanager
async def connection(nodes: Sequence[NatsNode], user: str) -> AsyncIterator[NATS]:
    nc = await open_connection(
        urls(nodes), ConnectOptions(user=user, password=password(user), name=f"test-{user}")
    )
    try:
        yield nc
    finally:
        await nc.close()


async def event_stream_r3(nodes: Sequence[NatsNode], admin: NATS) -> None:
    """Wait for the cluster, then create the R3 event stream (as the first worker would)."""
    for node in nodes:
        await node.wait_listening()

    async def created() -> bool:
        try:
            await ensure_event_stream(admin.jetstream(timeout=2), StreamSettings(replicas=3))
        except (ConfigurationError, nats.errors.Error, nats.js.errors.Error):
            return False  # no meta leader yet
        return True

    await wait_until(created, 30, "the R3 event stream", period=0.2)


async def replicas_current(admin: NATS, size: int = 3) -> bool:
    try:
        info = await admin.jetstream(timeout=2).stream_info("EVENTS")
    except (nats.errors.Error, nats.js.errors.Error):
        return False
    cluster = info.cluster
    if cluster is None or cluster.leader is None:
        return False
    replicas = cluster.replicas or []
    return len(replicas) == size - 1 and all(r.current for r in replicas)


def worker_pair(nodes: Sequence[NatsNode], directory: Path) -> tuple[WorkerProcess, ...]:
    return tuple(
        WorkerProcess(directory / name, urls(nodes), extra=("--replicas", "3"))
        for name in ("w1", "w2")
    )


def projector(nodes: Sequence[NatsNode], directory: Path) -> WorkerProcess:
    return WorkerProcess(
        directory / "p1",
        urls(nodes),
        user="projector",
        command="projector",
        app=READ_APP,
        extra=("--projections", "counters", "--replica", "p1", "--replicas", "3"),
    )


async def projection_converged(admin: NATS, client: Client) -> bool:
    """The counters read model equals a full replay of the stream, at the stream's last seq."""
    commits = await stream_commits(admin)
    expected: dict[str, int] = {}
    for commit in commits:
        _, aggregate, aggregate_id = commit.subject.split(".")
        if aggregate == "counter":
            expected[aggregate_id] = expected.get(aggregate_id, 0) + 1
    try:
        answer = await client.query("counters", "totals", min_seq=commits[-1].seq, timeout=10)
    except CqrsError:
        return False
    return bool(answer.result == expected)


async def kill_stream_leader(cluster: Sequence[NatsNode], admin: NATS) -> NatsNode:
    """SIGKILL the node that leads the EVENTS stream; return it (to start it again)."""
    info = await admin.jetstream().stream_info("EVENTS")
    assert info.cluster is not None
    leader = next(n for n in cluster if n.name == info.cluster.leader)
    leader.kill()
    return leader


async def test_killing_the_stream_leader_loses_no_acknowledged_command(
    cluster: Sequence[NatsNode], tmp_path: Path
) -> None:
    """SIGKILL the R3 stream's leader under load: service resumes within 10 s, and after it
    rejoins every acknowledged command is in the stream exactly once."""
    async with connection(cluster, "admin") as admin, connection(cluster, "client") as client_nc:
        await event_stream_r3(cluster, admin)
        procs = worker_pair(cluster, tmp_path)
        with worker_processes(*procs):
            for proc in procs:
                await proc.wait_ready()
            load = CommandLoad(Client(client_nc), timeout=2.0)
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(load.run, stop)
                await wait_until(lambda: len(load.acked) >= 300, 30, "the load to get going")
                leader = await kill_stream_leader(cluster, admin)
                killed_at, before = time.monotonic(), len(load.acked)
                await wait_until(lambda: len(load.acked) >= before + 100, 30, "service to resume")
                resumed = load.acked_after(killed_at)[99] - killed_at
                leader.start()
                await leader.wait_listening()
                await wait_until(lambda: replicas_current(admin), 60, "the node to catch up")
                after = len(load.acked)
                await wait_until(lambda: len(load.acked) >= after + 200, 30, "more commands")
                stop.set()
        assert resumed < 10, f"100 commands took {resumed:.1f}s after the leader was killed"
        assert not load.gave_up, f"{load.gave_up[:5]} {load.errors}"
        await assert_exactly_once(admin, set(load.acked))


async def test_a_projection_converges_after_the_stream_leader_fails_over(
    cluster: Sequence[NatsNode], tmp_path: Path
) -> None:
    """A projector consuming under load through a leader failover ends up equal to a full
    replay of the stream."""
    async with connection(cluster, "admin") as admin, connection(cluster, "client") as client_nc:
        await event_stream_r3(cluster, admin)
        procs = (*worker_pair(cluster, tmp_path), projector(cluster, tmp_path))
        with worker_processes(*procs):
            for proc in procs:
                await proc.wait_ready()
            load = CommandLoad(Client(client_nc), timeout=2.0)
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(load.run, stop)
                await wait_until(lambda: len(load.acked) >= 300, 30, "the load to get going")
                leader = await kill_stream_leader(cluster, admin)
                before = len(load.acked)
                await wait_until(lambda: len(load.acked) >= before + 200, 30, "service to resume")
                leader.start()
                await leader.wait_listening()
                await wait_until(lambda: replicas_current(admin), 60, "the node to catch up")
                stop.set()
            client = Client(client_nc)
            await wait_until(lambda: projection_converged(admin, client), 30, "the projection")
            assert procs[-1].process is not None and procs[-1].process.poll() is None


async def test_a_killed_worker_s_retried_commands_apply_exactly_once(
    cluster: Sequence[NatsNode], tmp_path: Path
) -> None:
    """SIGKILL one of two workers under load: the client retries its unanswered commands with
    the same ids, the other worker applies each exactly once."""
    async with connection(cluster, "admin") as admin, connection(cluster, "client") as client_nc:
        await event_stream_r3(cluster, admin)
        with worker_processes(*worker_pair(cluster, tmp_path)) as (victim, survivor):
            await victim.wait_ready()
            await survivor.wait_ready()
            load = CommandLoad(Client(client_nc), timeout=1.0)
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(load.run, stop)
                await wait_until(lambda: len(load.acked) >= 300, 30, "the load to get going")
                victim.signal(signal.SIGKILL)
                before = len(load.acked)
                await wait_until(lambda: len(load.acked) >= before + 300, 30, "the survivor")
                stop.set()
            assert victim.process is not None and victim.process.wait() == -signal.SIGKILL
        assert not load.gave_up, f"{load.gave_up[:5]} {load.errors}"
        assert load.errors["timeout"] > 0, "the kill should have left commands unanswered"
        await assert_exactly_once(admin, set(load.acked))
