"""Several ``cqrs worker`` processes on one aggregate type: one writer per aggregate, exact
replies and histories, whatever happens to the workers."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import anyio
import nats
from nats.aio.client import Client as NATS

from runtime import Client
from runtime.ownership.coordinator import OwnershipSettings
from runtime.ownership.leases import LeaseBucket
from runtime.ownership.report import workers_report
from runtime.transport.embedded import EmbeddedServer
from tests.ports import free_port

from ..flipflop import FlipFlop
from ..load import CommandLoad, assert_exactly_once
from ..procs import CQRS, WorkerProcess, wait_until, workers

FAST = ("--lease-ttl", "2")


def worker(tmp_path: Path, name: str, url: str, *extra: str) -> WorkerProcess:
    return WorkerProcess(tmp_path / name, url, user=None, extra=(*FAST, *extra))


async def all_owned(nc: NATS, owners: int) -> bool:
    """Whether every user partition has a lease, spread over ``owners`` members, and none is
    still moving to the member the live ones assign it to (a rebalance has finished)."""
    bucket = LeaseBucket(nc, OwnershipSettings().bucket_for("EVENTS"), ttl=2)
    await bucket.start()
    leases = [lease for lease in await bucket.leases() if lease.aggregate == "user"]
    if len(leases) != 16 or len({lease.owner for lease in leases}) != owners:
        return False
    report = await workers_report(nc, "EVENTS", OwnershipSettings(lease_ttl=2))
    return not report["unowned"] and not report["moving"]


async def test_three_workers_flip_flop_exactly(
    nats_server: EmbeddedServer, nc: NATS, tmp_path: Path
) -> None:
    """Three workers, sequential role flips: no spurious no-op or rejection, exact histories."""
    with workers(*(worker(tmp_path, n, nats_server.url) for n in "abc")) as procs:
        for proc in procs:
            await proc.wait_ready()
        flips = FlipFlop(Client(nc))
        await flips.run()
        await wait_until(lambda: all_owned(nc, 3), 20, "the partitions to spread over 3 workers")
        again = FlipFlop(Client(nc))
        await again.run()
        shown = await anyio.run_process(
            [CQRS, "workers", "--json"], env={**os.environ, "NATS_URL": nats_server.url}
        )
    report = json.loads(shown.stdout)
    owned = sorted(p for w in report["workers"] for p in w["owns"].get("user", []))
    assert len(report["workers"]) == 3 and all(w["live"] for w in report["workers"])
    assert owned == list(range(16)) and not report["unowned"]
    assert not flips.anomalies + again.anomalies, (flips.anomalies + again.anomalies)[:5]
    assert not await flips.histories_exact(nc) + await again.histories_exact(nc)


async def test_three_workers_settle_on_even_shares(
    nats_server: EmbeddedServer, nc: NATS, tmp_path: Path
) -> None:
    """Three workers end up owning 6, 5 and 5 of the 16 partitions, with nothing moving."""
    with workers(*(worker(tmp_path, n, nats_server.url) for n in "abc")) as procs:
        for proc in procs:
            await proc.wait_ready()

        await wait_until(lambda: all_owned(nc, 3), 30, "three workers to settle")
        report = await workers_report(nc, "EVENTS")
    shares = sorted(len(w["owns"]["user"]) for w in report["workers"])
    assert shares == [5, 5, 6]


async def test_flip_flop_survives_a_sigkill_and_a_new_worker(
    nats_server: EmbeddedServer, nc: NATS, tmp_path: Path
) -> None:
    """One of three workers SIGKILLed and a fourth started mid-run: every reply still exact."""
    with workers(*(worker(tmp_path, n, nats_server.url) for n in "abc")) as (a, b, c):
        for proc in (a, b, c):
            await proc.wait_ready()
        await wait_until(lambda: all_owned(nc, 3), 20, "the partitions to spread over 3 workers")
        flips = FlipFlop(Client(nc), users=40, rounds=10)
        d = worker(tmp_path, "d", nats_server.url)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(flips.run)
                await wait_until(lambda: flips.replies >= 60, 30, "the flips to get going")
                assert a.process is not None
                os.kill(a.process.pid, signal.SIGKILL)
                d.start()
                await wait_until(lambda: flips.replies >= 200, 60, "the flips to go on")
            await wait_until(lambda: all_owned(nc, 3), 20, "b, c and d to own every partition")
        finally:
            d.kill()
    assert not flips.anomalies, flips.anomalies[:5]
    assert not await flips.histories_exact(nc)


async def test_a_worker_paused_past_its_lease_answers_nothing_stale(
    nats_server: EmbeddedServer, nc: NATS, tmp_path: Path
) -> None:
    """A worker SIGSTOPped past its lease and resumed: its partitions moved, and no reply from it
    (or anyone) was decided on an old state."""
    with workers(
        worker(tmp_path, "a", nats_server.url), worker(tmp_path, "b", nats_server.url)
    ) as (
        a,
        b,
    ):
        await a.wait_ready()
        await b.wait_ready()
        await wait_until(lambda: all_owned(nc, 2), 20, "the partitions to spread over 2 workers")
        first = FlipFlop(Client(nc), users=20, rounds=4)
        await first.run()
        assert a.process is not None
        os.kill(a.process.pid, signal.SIGSTOP)
        try:
            await wait_until(lambda: all_owned(nc, 1), 20, "b to take a's partitions")
            during = FlipFlop(Client(nc), users=20, rounds=4)
            await during.run()
        finally:
            os.kill(a.process.pid, signal.SIGCONT)
        await wait_until(lambda: all_owned(nc, 2), 20, "a to rejoin")
        after = FlipFlop(Client(nc), users=20, rounds=4)
        await after.run()
    for flips in (first, during, after):
        assert not flips.anomalies, flips.anomalies[:5]
        assert not await flips.histories_exact(nc)
    assert '"partition_lost"' in a.log.read_text() or '"partitions_rebalanced"' in a.log.read_text()
    # The requests of its former partitions that reached it while paused were let go, and said.
    ignored = [e for e in a.log_events() if e["event"] == "command_ignored"]
    assert ignored and all(e["command_id"] for e in ignored), a.log_tail()


async def test_hot_aggregates_with_three_workers_answer_each_command_once(
    nats_server: EmbeddedServer, nc: NATS, tmp_path: Path
) -> None:
    """64 senders on 10 aggregates against three workers: no conflict storm, each command once."""
    with workers(*(worker(tmp_path, n, nats_server.url) for n in "abc")) as procs:
        for proc in procs:
            await proc.wait_ready()
        await wait_until(lambda: all_owned(nc, 3), 20, "the partitions to spread over 3 workers")
        load = CommandLoad(Client(nc), concurrency=64, hot_aggregates=10, retry=False, timeout=10)
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(load.run, stop)
            await wait_until(lambda: len(load.acked) >= 1000, 60, "1000 hot commands")
            stop.set()
    assert not load.refused, load.refused[:5]
    await assert_exactly_once(nc, set(load.acked))


async def test_workers_without_the_mapping_stay_exact(tmp_path: Path) -> None:
    """On a plain nats-server (no partition mapping) three workers say so once and, fenced,
    still answer the flips exactly."""
    server = EmbeddedServer(tmp_path / "plain", port=free_port(), partitions=None)
    server.start()
    try:
        await server.wait_ready()
        conn = await nats.connect(server.url)
        try:
            with workers(*(worker(tmp_path, n, server.url) for n in "abc")) as procs:
                for proc in procs:
                    await proc.wait_ready()
                flips = FlipFlop(Client(conn))
                await flips.run()
            assert not flips.anomalies, flips.anomalies[:5]
            assert not await flips.histories_exact(conn)
        finally:
            await conn.close()
    finally:
        server.stop()
    for proc in procs:
        assert proc.log.read_text().count('"commands_not_partitioned"') == 1


async def owners_of(nc: NATS, aggregate: str) -> dict[int, str]:
    """Partition -> owning member of ``aggregate``'s leases."""
    bucket = LeaseBucket(nc, OwnershipSettings().bucket_for("EVENTS"), ttl=2)
    await bucket.start()
    return {
        lease.partition: lease.owner
        for lease in await bucket.leases()
        if lease.aggregate == aggregate
    }


async def test_workers_of_different_aggregates_each_own_all_their_partitions(
    nats_server: EmbeddedServer, nc: NATS, tmp_path: Path
) -> None:
    """A user-only and an order-only worker sharing the lease bucket: each owns every partition
    of its own type, so every command is served and none waits for an owner that never comes."""
    users = worker(tmp_path, "u", nats_server.url, "--aggregates", "user")
    orders = worker(tmp_path, "o", nats_server.url, "--aggregates", "order")
    with workers(users, orders):
        await users.wait_ready()
        await orders.wait_ready()

        async def settled() -> bool:
            by_type = [await owners_of(nc, "user"), await owners_of(nc, "order")]
            return all(len(owners) == 16 and len(set(owners.values())) == 1 for owners in by_type)

        await wait_until(settled, 20, "each worker to own all 16 partitions of its type")
        assert set((await owners_of(nc, "user")).values()) != set(
            (await owners_of(nc, "order")).values()
        )
        client = Client(nc, timeout=5)
        for i in range(48):  # enough ids to reach every partition of both types
            await client.send(
                "user",
                f"u-{i}",
                "create",
                {"name": "Ada", "email": f"ada{i}@example.com", "role": "customer"},
            )
            created = await client.send(
                "order",
                f"o-{i}",
                "create",
                {"user_id": f"u-{i}", "lines": [{"sku": "a", "quantity": 1, "unit_price": "1"}]},
            )
            assert created.version == 1
