"""Listing the lease bucket while workers keep writing to it."""

from __future__ import annotations

import anyio
from nats.aio.client import Client as NATS

from runtime.ownership.leases import Lease, LeaseBucket


async def test_the_listing_finds_every_member_and_lease_while_they_are_renewed(nc: NATS) -> None:
    """Three heartbeats and 16 leases, renewed without pause: every listing finds them all."""
    bucket = LeaseBucket(nc, "EVENTS_leases", ttl=10)
    await bucket.start()
    leases: list[Lease] = []
    for partition in range(16):
        lease = await bucket.acquire("user", partition, f"m{partition % 3}")
        assert lease is not None
        leases.append(lease)
    members = [f"m{n}" for n in range(3)]
    for member in members:
        await bucket.heartbeat(member, {"aggregates": ["user"]})
    listed: list[tuple[int, int]] = []

    async def renew_without_pause() -> None:
        while True:
            for lease in leases:
                assert await bucket.renew(lease, f"m{lease.partition % 3}")
            for member in members:
                await bucket.heartbeat(member, {"aggregates": ["user"]})

    async with anyio.create_task_group() as tg:
        tg.start_soon(renew_without_pause)
        for _ in range(60):
            listed.append((len(await bucket.members()), len(await bucket.leases())))
        tg.cancel_scope.cancel()
    assert set(listed) == {(3, 16)}
