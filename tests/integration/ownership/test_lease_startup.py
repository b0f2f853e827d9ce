"""A worker's first ownership round is part of its start: it waits for its lease bucket."""

from __future__ import annotations

import anyio
from nats.aio.client import Client as NATS
from structlog.testing import capture_logs

from runtime.ownership.coordinator import Coordinator, OwnershipSettings
from runtime.ownership.leases import Lease, LeaseBucket
from runtime.transport.startup import waiting_for_jetstream

from ..procs import wait_until

BUCKET = "EVENTS_leases"


class Taken:
    """The partition server's part, recorded: which partitions the coordinator took."""

    def __init__(self) -> None:
        self.partitions: list[int] = []

    async def take(self, lease: Lease) -> None:
        self.partitions.append(lease.partition)

    async def hand_off(self, aggregate: str, partition: int) -> None:
        raise AssertionError("nothing to hand off")

    async def drop(self, aggregate: str, partition: int) -> None:
        raise AssertionError("nothing to drop")


async def test_a_first_round_while_starting_waits_for_its_bucket_then_takes_its_partitions(
    nc: NATS,
) -> None:
    """Inside the start-up window, a round whose lease bucket does not answer yet (no stream
    takes the writes, as before a new bucket's leader is elected) waits for it, then takes
    every partition of the lone worker."""
    bucket = LeaseBucket(nc, BUCKET, ttl=10)
    await bucket.start()
    await nc.jetstream().delete_key_value(BUCKET)
    server = Taken()
    coordinator = Coordinator(bucket, ["user"], server, OwnershipSettings(partitions=4))
    with capture_logs() as logs:

        async def bucket_back() -> None:
            def waiting() -> bool:
                return any(e["event"] == "jetstream_waiting" for e in logs)

            await wait_until(waiting, 30, "the round to wait for its bucket")
            await LeaseBucket(nc, BUCKET, ttl=10).start()

        async with anyio.create_task_group() as tg:
            tg.start_soon(bucket_back)
            with waiting_for_jetstream(60):
                await coordinator.round()
    assert sorted(server.partitions) == [0, 1, 2, 3]
    assert coordinator.stats.failed_rounds == 0
    assert list(await bucket.members()) == [coordinator.member]
