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
from runtime.ownership.report import workers_report
from runtime.transport.connection import open_connection
from runtime.transport.startup import is_transient
from runtime.transport.streams import ensure_event_stream
from runtime.wire.partitions import DEFAULT_PARTITIONS, partition_of

from ..load import CommandLoad, assert_commits_exactly_once
from ..procs import READ_APP, NatsNode, WorkerProcess, cluster_nodes, password, running, wait_until
from ..procs import workers as worker_processes
from ..support import StoredCommit, stream_commits

APP = load_app(READ_APP)
RESUME_BOUND = 15.0  # seconds: the longest election (9 s), a client attempt (2 s), margin
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


async def settled_leader(admin: NATS, size: int = 3) -> str | None:
    """The EVENTS stream's leader if it has one and all its replicas are current, else None."""
    try:
        info = await admin.jetstream(timeout=2).stream_info("EVENTS")
    except (nats.errors.Error, nats.js.errors.Error):
        return None
    cluster = info.cluster
    if cluster is None or cluster.leader is None:
        return None
    replicas = cluster.replicas or []
    if len(replicas) == size - 1 and all(r.current for r in replicas):
        return str(cluster.leader)
    return None


async def replicas_current(admin: NATS) -> bool:
    """Whether the EVENTS stream has an elected leader and all its replicas are current."""
    return await settled_leader(admin) is not None


async def read_back(admin: NATS) -> list[StoredCommit] | None:
    """Every commit of the settled stream; None while it is not settled, or while a JetStream
    API call times out or finds no leader (a failover still going on)."""
    if not await replicas_current(admin):
        return None
    try:
        return await stream_commits(admin)
    except Exception as exc:
        if not is_transient(exc):
            raise
        return None


async def settled_commits(admin: NATS) -> list[StoredCommit]:
    """Every commit of the stream, read once it has a leader and current replicas."""
    commits: list[StoredCommit] | None = None

    async def read() -> bool:
        nonlocal commits
        commits = await read_back(admin)
        return commits is not None

    await wait_until(read, 60, "the EVENTS stream to settle (a leader, current replicas), to read")
    assert commits is not None
    return commits


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


async def projection_mismatch(admin: NATS, client: Client) -> str | None:
    """Why the counters read model does not (yet) equal a full replay of the stream at its last
    seq; None once it does."""
    commits = await read_back(admin)
    if commits is None:
        return "the stream is not settled, or reading it back timed out"
    expected: dict[str, int] = {}
    for commit in commits:
        _, aggregate, aggregate_id = commit.subject.split(".")
        if aggregate == "counter":
            expected[aggregate_id] = expected.get(aggregate_id, 0) + 1
    last_seq = commits[-1].seq
    try:
        answer = await client.query("counters", "totals", min_seq=last_seq, timeout=10)
    except CqrsError as exc:
        return f"the query at seq {last_seq} failed: {exc.code} {exc.message}"
    if answer.result == expected:
        return None
    differing = {
        key: (answer.result.get(key), expected.get(key))
        for key in set(answer.result) | set(expected)
        if answer.result.get(key) != expected.get(key)
    }
    return f"at seq {answer.seq} (read model, replay): {sorted(differing.items())[:5]}"


async def kill_stream_leader(cluster: Sequence[NatsNode], admin: NATS) -> NatsNode:
    """SIGKILL the node that leads the EVENTS stream, once that is settled; return it (to start
    it again)."""
    name: str | None = None

    async def settled() -> bool:
        nonlocal name
        name = await settled_leader(admin)
        return name is not None

    await wait_until(settled, 60, "the EVENTS stream to settle (a leader, current replicas)")
    leader = next(n for n in cluster if n.name == name)
    leader.kill()
    return leader


async def test_killing_the_stream_leader_loses_no_acknowledged_command(
    cluster: Sequence[NatsNode], tmp_path: Path
) -> None:
    """SIGKILL the R3 stream's leader under load: service resumes within 15 s, and after it
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
        # nats-server's followers wait 4-9 s (its raft election timeout) for a lost leader
        # before they campaign; then the attempts in flight time out (2 s) and are sent again.
        assert resumed < RESUME_BOUND, f"100 commands took {resumed:.1f}s after the leader died"
        assert not load.gave_up, f"{load.gave_up[:5]} {load.errors}"
        assert_commits_exactly_once(await settled_commits(admin), set(load.acked))


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
            mismatch: str | None = "not compared yet"

            async def converged() -> bool:
                nonlocal mismatch
                mismatch = await projection_mismatch(admin, client)
                return mismatch is None

            try:
                await wait_until(converged, 60, "the projection to equal a replay of the stream")
            except TimeoutError as exc:
                raise AssertionError(f"{exc}: {mismatch}\n{procs[-1].log_tail(8000)}") from None
            assert procs[-1].process is not None and procs[-1].process.poll() is None


async def counter_partitions(admin: NATS, proc: WorkerProcess) -> set[int]:
    """The partitions of the ``counter`` commands whose leases ``proc`` holds, once every
    partition has its owner (none while a rebalance goes on)."""
    assert proc.process is not None
    try:
        report = await workers_report(admin, "EVENTS")
    except CqrsError:
        return set()  # the lease bucket is not answering yet
    if report["unowned"] or report["moving"]:
        return set()
    return {
        partition
        for worker in report["workers"]
        if worker["pid"] == proc.process.pid
        for partition in worker["owns"].get("counter", [])
    }


async def test_a_killed_worker_s_retried_commands_apply_exactly_once(
    cluster: Sequence[NatsNode], tmp_path: Path
) -> None:
    """SIGKILL one of two workers while commands sent to it are unanswered: the client retries
    them with the same ids, and the other worker applies each exactly once."""
    async with connection(cluster, "admin") as admin, connection(cluster, "client") as client_nc:
        await event_stream_r3(cluster, admin)
        with worker_processes(*worker_pair(cluster, tmp_path)) as (victim, survivor):
            await victim.wait_ready()
            await survivor.wait_ready()
            owned: set[int] = set()

            async def victim_serves() -> bool:
                owned.update(await counter_partitions(admin, victim))
                return bool(owned)

            load = CommandLoad(Client(client_nc), timeout=1.0)
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(load.run, stop)
                await wait_until(lambda: len(load.acked) >= 300, 30, "the load to get going")
                # Two workers, settled: nothing moves again until one of them goes.
                await wait_until(victim_serves, 60, "the victim to hold counter partitions")
                # Stopped, the victim keeps its leases until they expire but answers nothing:
                # commands sent to its partitions are in flight when it is killed.
                earlier = set(load.unanswered)
                victim.signal(signal.SIGSTOP)

                def stuck() -> set[str]:
                    return {
                        command_id
                        for command_id, aggregate_id in load.unanswered.items()
                        if command_id not in earlier
                        and partition_of(DEFAULT_PARTITIONS, "counter", aggregate_id) in owned
                    }

                await wait_until(stuck, 30, "commands sent to the stopped victim to time out")
                unanswered = stuck()
                victim.signal(signal.SIGKILL)
                before = len(load.acked)

                def survived() -> bool:
                    assert not load.gave_up, f"{load.gave_up[:5]} {load.errors}"
                    return len(load.acked) >= before + 300 and unanswered <= load.acked.keys()

                await wait_until(survived, 60, "the survivor to answer those and more")
                stop.set()
            assert victim.process is not None and victim.process.wait() == -signal.SIGKILL
        assert not load.gave_up, f"{load.gave_up[:5]} {load.errors}"
        assert_commits_exactly_once(await settled_commits(admin), set(load.acked))
