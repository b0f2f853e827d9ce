"""A worker stopped in the middle of an ownership round still releases every lease it holds."""

from __future__ import annotations

import anyio
import pytest
from nats.aio.client import Client as NATS

from runtime.ownership.coordinator import Coordinator, OwnershipSettings
from runtime.ownership.leases import Lease, LeaseBucket

BUCKET = "EVENTS_leases"


class Serving:
    """The partition server's part: takes and hands off partitions at once."""

    async def take(self, lease: Lease) -> None:
        pass

    async def hand_off(self, aggregate: str, partition: int) -> None:
        pass

    async def drop(self, aggregate: str, partition: int) -> None:
        raise AssertionError("nothing is lost here")


async def test_a_stop_while_a_renewal_is_answered_still_releases_the_lease(
    nc: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round cancelled after the server stored a lease's renewal but before the worker had
    its answer (a Ctrl-C mid-round) keeps the renewal's revision, so the release at stop
    deletes the lease instead of leaving it held until it expires."""
    bucket = LeaseBucket(nc, BUCKET, ttl=10)
    await bucket.start()
    coordinator = Coordinator(bucket, ["user"], Serving(), OwnershipSettings(partitions=1))
    await coordinator.round()
    assert [v.partition for v in await bucket.leases()] == [0]

    stored = anyio.Event()
    write = bucket._write

    async def answered_late(key: str, value: bytes, *, last: int | None) -> int | None:
        revision = await write(key, value, last=last)
        if key.startswith("lease."):
            stored.set()
            await anyio.sleep(0.5)  # the answer still on its way when the stop comes
        return revision

    monkeypatch.setattr(bucket, "_write", answered_late)
    async with anyio.create_task_group() as tg:

        async def stop_once_stored() -> None:
            await stored.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(stop_once_stored)
        await coordinator.round()
    assert stored.is_set()
    await coordinator.release_all()
    assert await bucket.leases() == []
