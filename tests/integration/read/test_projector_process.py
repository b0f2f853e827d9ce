"""``cqrs projector`` as a process (killed with SIGKILL mid-stream) and the read-side CLI:
status, query, projections rebuild and dead-letters."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from nats.aio.client import Client as NATS
from structlog.testing import capture_logs

from projections import orders
from runtime import Client, EventStore, NoResponders, ProjectorSettings, QueryResult, run_replica
from runtime.read.snapshots import ProjectionSnapshotStore
from runtime.testing import ProjectionSpec
from runtime.transport.embedded import EmbeddedServer

from ..procs import wait_until
from ..projection_support import append_orders, counting, read_commits

CQRS = str(Path(sys.executable).parent / "cqrs")
SETTINGS = ProjectorSettings(replica="k9", snapshot_every=None, snapshot_interval=None)


@contextmanager
def projector_process(url: str, tmp: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp / "projector.log").open("ab")
    proc = subprocess.Popen(
        [CQRS, "projector", "--nats", url, "--log-format", "json", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=tmp,
    )
    log.close()
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def query_when_served(client: Client, min_seq: int, deadline: float = 30.0) -> QueryResult:
    """Ask until a replica serves the projection (the process is still starting up)."""
    answers: list[QueryResult] = []

    async def answered() -> bool:
        try:
            answers.append(
                await client.query(
                    "orders", "get_order_by_id", {"order_id": "a-1"}, min_seq=min_seq, timeout=10
                )
            )
        except NoResponders:
            return False
        return True

    await wait_until(answered, deadline, "a replica to serve the projection")
    return answers[0]


async def snapshot_of(nc: NATS, replica: str, deadline: float = 30.0) -> int:
    """The sequence of ``replica``'s first stored snapshot, once there is one."""
    snapshots = ProjectionSnapshotStore(nc)
    await snapshots.start()
    found: list[int] = []

    async def stored() -> bool:
        found[:] = [s.seq for s in await snapshots.list("orders") if s.replica == replica]
        return bool(found)

    await wait_until(stored, deadline, "the replica's first snapshot")
    return found[0]


async def stream_reached(nc: NATS, seq: int) -> bool:
    return int((await nc.jetstream().stream_info("EVENTS")).state.last_seq) >= seq


async def cqrs(*args: str, url: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "NATS_URL": url, "COLUMNS": "200"}
    return await anyio.run_process([CQRS, *args], env=env, check=check)


async def test_kill_9_mid_stream_then_restart_equals_a_full_replay(
    nc: NATS, nats_server: EmbeddedServer, store: EventStore, tmp_path: Path
) -> None:
    """A projector killed with SIGKILL while events arrive comes back, from its snapshot, to
    exactly the model a full replay gives."""
    first = await append_orders(store, 400, prefix="a")
    args = ["--projections", "orders", "--replica", "k9", "--snapshot-every", "150"]
    with projector_process(nats_server.url, tmp_path, *args, "--snapshot-interval", "0.1") as proc:
        client = Client(nc)
        await query_when_served(client, first)
        assert await snapshot_of(nc, "k9") > 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(append_orders, store, 400, prefix="b"))
            await wait_until(
                partial(stream_reached, nc, first + 200), 30, "half of the new events stored"
            )
            await query_when_served(client, first + 200)  # it is applying the new events
            proc.kill()  # SIGKILL, while the appends go on
        proc.wait()
    last = int((await nc.jetstream().stream_info("EVENTS")).state.last_seq)
    assert last == first + 600
    with capture_logs() as logs:
        restart = ProjectorSettings(replica="k9", snapshot_every=150, snapshot_interval=0.1)
        async with run_replica(nc, orders, restart) as replica:
            assert replica.restored_from is not None and replica.restored_from.seq > 0
            assert await replica.wait_for(last, timeout=30)
            assert (
                replica.model == ProjectionSpec(orders).given_commits(await read_commits(nc)).model
            )
    [restored] = [e for e in logs if e["event"] == "snapshot_restored"]
    # Usually the killed process had fetched past its last snapshot, so its consumer is put
    # back (unless the kill fell right after a snapshot of everything it had fetched).
    for reset in (e for e in logs if e["event"] == "consumer_reset"):
        assert reset["delivered_seq"] > restored["seq"]
        assert reset["start_seq"] == restored["seq"] + 1


async def test_a_consumer_ahead_of_the_snapshot_is_put_back(nc: NATS, store: EventStore) -> None:
    """Messages delivered but never snapshotted (a crash) are delivered again after a restart:
    the consumer is put back right after the snapshot, and each handler runs exactly once."""
    projection, calls = counting()
    snapped = await append_orders(store, 50, prefix="a")
    async with run_replica(nc, projection, SETTINGS) as replica:
        assert await replica.wait_for(snapped, timeout=10)
    last = await append_orders(store, 20, prefix="b")
    # What a crashed replica leaves behind: deliveries past its snapshot, never acknowledged.
    sub = await nc.jetstream().pull_subscribe_bind("cqrs-proj-tally-k9", stream="EVENTS")
    assert len(await sub.fetch(100, timeout=2)) == 30
    await sub.unsubscribe()
    calls.n = 0
    with capture_logs() as logs:
        async with run_replica(nc, projection, SETTINGS) as replica:
            assert await replica.wait_for(last, timeout=10)
    assert calls.n == 30
    [reset] = [e for e in logs if e["event"] == "consumer_reset"]
    assert reset["delivered_seq"] == last and reset["start_seq"] == snapped + 1


async def test_status_query_rebuild_and_dead_letters_from_the_cli(
    nc: NATS, nats_server: EmbeddedServer, store: EventStore
) -> None:
    """cqrs status/query/projections rebuild talk to a live replica; rebuilt equals live."""
    last = await append_orders(store, 120)
    url = nats_server.url
    async with run_replica(nc, orders, ProjectorSettings(replica="live")) as replica:
        assert await replica.wait_for(last, timeout=10)
        await replica.snapshot_now()
        status_run, answer_run, rebuild_run = await _run_all(
            ("status", "--json", "--wait", "2"),
            ("query", "orders", "get_order_by_id", '{"order_id": "o-3"}'),
            ("projections", "rebuild", "orders", "--json"),
            url=url,
        )
        rebuilt: dict[str, Any] = orjson.loads(rebuild_run.stdout)
        assert rebuilt["equal"] is True and rebuilt["applied_seq"] == replica.applied
        assert rebuilt["digest"] == replica.digest()["digest"]
    status = orjson.loads(status_run.stdout)
    [row] = [r for r in status["replicas"] if r["replica"] == "live"] or [status]
    assert row["applied_seq"] == last and row["lag"] == 0 and row["pending"] == 0
    assert row["last_snapshot"]["seq"] == last and row["state"] == "running"
    answer = orjson.loads(answer_run.stdout)
    assert answer["result"]["status"] == "paid" and answer["seq"] == last
    assert answer["version"] == 1  # the version that answered, as in the NATS reply
    dead = await cqrs("projections", "dead-letters", "orders", "--json", url=url)
    assert orjson.loads(dead.stdout) == []


async def _run_all(
    *commands: tuple[str, ...], url: str
) -> list[subprocess.CompletedProcess[bytes]]:
    results: dict[int, subprocess.CompletedProcess[bytes]] = {}

    async def one(i: int, args: tuple[str, ...]) -> None:
        results[i] = await cqrs(*args, url=url)

    async with anyio.create_task_group() as tg:
        for i, args in enumerate(commands):
            tg.start_soon(one, i, args)
    return [results[i] for i in range(len(commands))]


@pytest.mark.parametrize(
    ("args", "code", "status"),
    [
        (("nowhere", "get_order_by_id", '{"order_id": "o-1"}'), "unknown_query", 64),
        (("orders", "get_order_by_id", "{oops"), "invalid", 65),
        (("orders", "get_everything", "{}"), "unknown_query", 64),
        (("orders", "get_order_by_id", '{"order_id": 7}'), "invalid", 65),
        (("orders", "get_order_by_id", '{"order_id": "o-404"}'), "not_found", 66),
    ],
)
async def test_bad_cli_queries_exit_with_the_status_of_their_code(
    nc: NATS,
    nats_server: EmbeddedServer,
    store: EventStore,
    args: tuple[str, ...],
    code: str,
    status: int,
) -> None:
    """cqrs query reports an unknown projection, malformed JSON, an unknown query, wrong
    argument types and a missing row with their codes and the exit status of each code."""
    async with run_replica(nc, orders, SETTINGS):
        done = await cqrs("query", *args, url=nats_server.url, check=False)
    assert done.returncode == status
    assert f"({code})" in done.stderr.decode()


async def test_the_demo_shows_query_answers_with_read_your_writes(tmp_path: Path) -> None:
    """cqrs demo runs the projections and prints query answers, one right after a command."""
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    done = await anyio.run_process([CQRS, "demo"], cwd=tmp_path, env={**env, "COLUMNS": "200"})
    out = done.stdout.decode()
    assert "find_user_by_email(" in out and "with min_seq=" in out
    assert "(support), read model at seq" in out  # the user's role changed in the scenario
    assert "get_orders_for_user(" in out and "(cancelled)" in out and "(delivered)" in out
    assert "not_found" in out and "demo finished" in out
