"""Who serves what: the live workers and the partitions each one holds, read from the lease
bucket (for ``cqrs workers``)."""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client as NATS

from .coordinator import OwnershipSettings
from .leases import LeaseBucket
from .rendezvous import assign, serving_members


async def workers_report(
    nc: NATS, stream: str, settings: OwnershipSettings | None = None
) -> dict[str, Any]:
    """``{"bucket", "workers": [{member, host, pid, aggregates, owns: {aggregate: [p]}}],
    "unowned": {aggregate: [p]}, "moving": {aggregate: [p]}}``; empty when no worker has ever
    used partitions here. ``moving`` lists the partitions held by another worker than the one
    the live members assign them to (a rebalance under way)."""
    settings = settings or OwnershipSettings()
    name = settings.bucket_for(stream)
    report: dict[str, Any] = {"bucket": name, "workers": [], "unowned": {}, "moving": {}}
    bucket = LeaseBucket(nc, name, ttl=settings.lease_ttl)
    if not await bucket.bind():
        return report
    members = await bucket.members()
    leases = await bucket.leases()
    owns: dict[str, dict[str, list[int]]] = {m: {} for m in members}
    for lease in leases:
        owns.setdefault(lease.owner, {}).setdefault(lease.aggregate, []).append(lease.partition)
    for member, owned in sorted(owns.items()):
        info = members.get(member, {})
        report["workers"].append(
            {
                "member": member,
                "live": member in members,
                "host": info.get("host"),
                "pid": info.get("pid"),
                "aggregates": info.get("aggregates", sorted(owned)),
                "partitions": info.get("partitions"),
                "owns": owned,
            }
        )
    held = {(lease.aggregate, lease.partition): lease.owner for lease in leases}
    for info in members.values():
        count = int(info.get("partitions") or settings.partitions)
        for aggregate in info.get("aggregates", []):
            missing = [p for p in range(count) if (aggregate, p) not in held]
            if missing:
                report["unowned"][aggregate] = missing
            owners = assign(serving_members(members, aggregate), aggregate, count)
            moving = [p for p in range(count) if held.get((aggregate, p), owners[p]) != owners[p]]
            if moving:
                report["moving"][aggregate] = moving
    return report
