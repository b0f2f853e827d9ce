"""Retiring a projection version no replica runs any more: its consumers and snapshots go.

After a deploy of changed projection code the older version's replicas are stopped, but their
durable consumers (``cqrs-proj-...``) and snapshots stay, so that a rollback resumes where they
were. Once the new version is there to stay, ``cqrs projections retire <name> --version N``
deletes them. It refuses while any replica of that version is live (on the replica board, see
:mod:`runtime.read.board`): deleting a running replica's consumer would only make it recreate one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nats.js.errors
from nats.aio.client import Client as NATS

from ..errors import InvalidInput, NotFound, ReplicaInUse
from ..transport.nats_errors import nats_call
from ..wire.naming import check_name
from .board import read_board
from .consumer import consumer_version
from .snapshots import DEFAULT_BUCKET, ProjectionSnapshotStore


@dataclass
class Retired:
    """What a retirement deleted."""

    projection: str
    version: int
    consumers: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "projection": self.projection,
            "version": self.version,
            "consumers": self.consumers,
            "snapshots": self.snapshots,
        }


async def retire(
    nc: NATS,
    projection: str,
    version: int,
    *,
    stream: str = "EVENTS",
    bucket: str = DEFAULT_BUCKET,
) -> Retired:
    """Delete the consumers and snapshots of ``projection``'s ``version``; refuse with
    :class:`~runtime.errors.ReplicaInUse` while one of its replicas is live."""
    check_name(projection, field="projection")
    if version < 1:
        raise InvalidInput("a projection version is 1 or more", details={"field": "version"})
    live = [
        s for s in await read_board(nc) if s["projection"] == projection and s["version"] == version
    ]
    if live:
        where = ", ".join(f"{s['replica']} ({s['host']} pid {s['pid']})" for s in live)
        raise ReplicaInUse(
            f"version {version} of projection {projection!r} still runs: {where}; stop its "
            "replicas first (a killed replica's entry expires within seconds)",
            details={"projection": projection, "version": version, "live": live},
        )
    retired = Retired(projection, version)
    js = nc.jetstream(timeout=10.0)
    with nats_call(f"listing the consumers of stream {stream}"):
        try:
            infos = await js.consumers_info(stream)
        except nats.js.errors.NotFoundError:
            infos = []
    for info in infos:
        if consumer_version(projection, info) == version and info.name:
            with nats_call(f"deleting consumer {info.name}"):
                try:
                    await js.delete_consumer(stream, info.name)
                except nats.js.errors.NotFoundError:
                    continue
            retired.consumers.append(info.name)
    store = ProjectionSnapshotStore(nc, bucket)
    try:
        await store.start(create=False)
    except NotFound:
        return retired
    for snapshot in await store.list(projection):
        if snapshot.schema == version:
            await store.delete(snapshot)
            retired.snapshots.append(snapshot.object_name)
    return retired
