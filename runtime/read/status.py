"""What ``cqrs status`` reports: every live projection replica, its consumer and its snapshot.

Replicas are found through ``nats.micro`` discovery: a ``$SRV.STATS.projection-<name>`` request
is answered by every replica of the projection, serving or not (a replica is discoverable while it
catches up, see :mod:`runtime.read.election`), each carrying its status (version, applied
sequence, caught up or not with what is left and an estimate of when it will serve, serving or
standing by, last snapshot, halted or retrying state) as endpoint data. The rest comes from
JetStream: the stream's last sequence, each replica's consumer (pending count) and the stored
snapshots, so a projection whose replicas are all down still shows up with its newest snapshot.

The lag is in stream sequences: how far the stream's last sequence is ahead of what the replica
reflects. A replica whose consumer has nothing left to deliver and has applied all it was given
is caught up (lag 0), even when the newest events are of aggregates it does not follow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from ..errors import CqrsError, InvalidInput
from ..transport.nats_errors import nats_call, no_responders, translate
from ..wire import codec
from ..wire.naming import service_name
from .consumer import CONSUMER_PREFIX
from .snapshots import DEFAULT_BUCKET, ProjectionSnapshotStore


async def gather(nc: NATS, subject: str, *, timeout: float = 0.5) -> list[Any]:
    """Every reply to one request within ``timeout`` (scatter-gather), decoded from JSON."""
    inbox = nc.new_inbox()
    with nats_call(f"the request on {subject}"):
        sub = await nc.subscribe(inbox)
    replies: list[Any] = []
    try:
        with nats_call(f"the request on {subject}"):
            await nc.publish(subject, b"", reply=inbox)
        deadline = anyio.current_time() + timeout
        while (left := deadline - anyio.current_time()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                break
            except nats.errors.Error as exc:
                raise translate(exc, f"the request on {subject}") from None
            if no_responders(msg):
                break
            with contextlib.suppress(InvalidInput):  # not a discovery answer: not ours to read
                replies.append(codec.loads(msg.data))
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return replies


async def replica_statuses(
    nc: NATS, projections: Sequence[str] | None, *, timeout: float = 0.5
) -> list[dict[str, Any]]:
    """The status of every replica that answers (of ``projections``, or of all)."""
    subjects = (
        [f"$SRV.STATS.{service_name('projection', p)}" for p in projections]
        if projections
        else ["$SRV.STATS"]
    )
    out: list[dict[str, Any]] = []
    for subject in subjects:
        for reply in await gather(nc, subject, timeout=timeout):
            if not isinstance(reply, dict) or not str(reply.get("name", "")).startswith(
                "projection-"
            ):
                continue
            for endpoint in reply.get("endpoints") or []:
                data = endpoint.get("data")
                if isinstance(data, dict) and "applied_seq" in data:
                    out.append({**data, "instance": reply.get("id")})
                    break
    return sorted(out, key=lambda s: (s["projection"], s["replica"]))


async def collect(
    nc: NATS,
    *,
    stream: str = "EVENTS",
    projections: Sequence[str] | None = None,
    bucket: str = DEFAULT_BUCKET,
    timeout: float = 0.5,
) -> dict[str, Any]:
    """The whole status report: the stream, the live replicas, and the stored snapshots."""
    js = nc.jetstream(timeout=5.0)
    with nats_call(f"the info of stream {stream}"):
        try:
            last_seq = int((await js.stream_info(stream)).state.last_seq)
        except nats.js.errors.NotFoundError:
            last_seq = 0
    replicas = await replica_statuses(nc, projections, timeout=timeout)
    now = datetime.now(UTC)
    for replica in replicas:
        pending: int | None = None
        position = int(replica.get("position", replica["applied_seq"]))
        try:
            info = await js.consumer_info(stream, replica["consumer"])
            pending = int(info.num_pending or 0)
            delivered = int(info.delivered.stream_seq if info.delivered else 0)
            if pending == 0 and delivered <= replica["applied_seq"] and not replica["halted"]:
                position = max(position, last_seq)
            replica["ack_floor"] = int(info.ack_floor.stream_seq if info.ack_floor else 0)
            replica["ack_pending"] = int(info.num_ack_pending or 0)
        except nats.errors.Error:  # the replica's consumer is gone or not reachable: no figures
            pass
        replica["pending"] = pending
        replica["stream_last_seq"] = last_seq
        replica["lag"] = max(0, last_seq - position)
        snapshot = replica.get("last_snapshot")
        if snapshot:
            taken = datetime.fromisoformat(snapshot["taken_at"])
            snapshot["age_seconds"] = round((now - taken).total_seconds(), 1)
    snapshots: list[dict[str, Any]] = []
    with contextlib.suppress(CqrsError):
        store = ProjectionSnapshotStore(nc, bucket)
        await store.start(create=False)
        for info in await store.list():
            if projections and info.projection not in projections:
                continue
            snapshots.append({**info.to_dict(), "age_seconds": round(info.age(now), 1)})
    live = {r["projection"] for r in replicas}
    idle = sorted({s["projection"] for s in snapshots} - live)
    wanted = sorted(set(projections or []) - live - set(idle))
    return {
        "stream": stream,
        "stream_last_seq": last_seq,
        "replicas": replicas,
        "snapshots": snapshots,
        "not_running": idle + wanted,
        "orphaned_consumers": await orphaned_consumers(
            js, stream, {r["consumer"] for r in replicas}, now
        ),
    }


async def orphaned_consumers(
    js: JetStreamContext, stream: str, live: set[str], now: datetime
) -> list[dict[str, Any]]:
    """Replica consumers on ``stream`` that no live replica uses (replicas that are stopped, or
    gone under an id never used again), with when each last delivered. The server deletes each
    after ``ProjectorSettings.consumer_inactive`` unused; ``nats consumer rm`` does it sooner."""
    try:
        infos = await js.consumers_info(stream)
    except (nats.errors.Error, nats.js.errors.Error):
        return []  # not allowed to list consumers, or no stream yet
    out = []
    for info in infos:
        name = info.name or ""
        if not name.startswith(CONSUMER_PREFIX) or name in live:
            continue
        active = info.delivered.last_active if info.delivered else None
        out.append(
            {
                "consumer": name,
                "delivered_seq": int(info.delivered.stream_seq if info.delivered else 0),
                "idle_seconds": round((now - active).total_seconds(), 1) if active else None,
            }
        )
    return sorted(out, key=lambda c: c["consumer"])
