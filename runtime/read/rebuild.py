"""Rebuilding a read model from the first event, apart from the live replicas.

``cqrs projections rebuild <name>`` throws the stored read model away and builds a new one from
the first event with the same code a replica runs (its own consumer, batches, poison policy), up
to the stream's end. Then it proves the result: a live replica (a serving one, through the
query queue group) is asked for the digest of its model, and the rebuilt model, brought to the
same sequence, must have the same digest (when the serving replica runs another version of the
projection there is nothing to compare with). Finally the rebuilt model is stored as the
projection's newest snapshot of its version; with ``replace`` that version's older snapshots are
deleted, so replicas started afterwards
resume from the rebuilt model (stop them first: a running replica writes a snapshot of its own
model when it stops).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from nats.aio.client import Client as NATS

from ..domain.projection import Projection
from ..errors import Internal, NoResponders, Timeout
from ..log import get_logger
from ..transport.nats_errors import nats_call
from ..wire import codec
from ..wire.naming import query_subject
from .consumer import delivery_of
from .projector import Projector, model_digest
from .query_service import DIGEST_QUERY
from .settings import ProjectorSettings
from .snapshots import ProjectionSnapshot

log = get_logger("runtime.read.rebuild")

REBUILD_REPLICA = "rebuild"
Progress = Callable[[int, int], None]  # (commits applied, commits to apply)


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild did, and whether a live replica's model equals the rebuilt one."""

    projection: str
    applied_seq: int
    commits: int
    events: int
    seconds: float
    digest: str
    live: dict[str, Any] | None  # the live replica's digest reply, when one answered
    equal: bool | None  # None: no live replica at the same sequence to compare with
    snapshot: ProjectionSnapshot | None
    replaced: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "projection": self.projection,
            "applied_seq": self.applied_seq,
            "commits": self.commits,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "digest": self.digest,
            "live": self.live,
            "equal": self.equal,
            "snapshot": self.snapshot.to_dict() if self.snapshot else None,
            "replaced": self.replaced,
        }


async def live_digest(nc: NATS, projection: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """The digest of a live replica's model (whichever replica answers), or None."""
    subject = query_subject(projection, DIGEST_QUERY)
    try:
        with nats_call(f"the digest request on {subject}"):
            msg = await nc.request(subject, b"{}", timeout=timeout)
    except (NoResponders, Timeout):
        return None
    body = codec.loads(msg.data)
    result = body.get("result") if isinstance(body, dict) else None
    return result if isinstance(result, dict) else None


class _Rebuild:
    def __init__(self, projector: Projector[Any], progress: Progress | None) -> None:
        self.projector = projector
        self.progress = progress
        self.commits = 0
        self.total = 0

    async def run_to(self, seq: int) -> None:
        """Apply everything the consumer delivers until the model reflects ``seq``."""
        p = self.projector
        while p.position < seq:
            if p.halted is not None:
                raise Internal(
                    f"the rebuild halted on a poison event at seq {p.halted.seq}: {p.halted.error}",
                    details=p.halted.to_dict(),
                )
            msgs = await p.consumer.fetch(p.settings.batch)
            if msgs:
                before = p.applied
                await p.apply_batch(msgs)
                self.commits += sum(1 for m in msgs if before < delivery_of(m)[0])
                if self.progress is not None:
                    self.progress(self.commits, max(self.total, self.commits))
            else:
                await p.refresh_position()


async def rebuild(
    nc: NATS,
    projection: Projection[Any],
    settings: ProjectorSettings | None = None,
    *,
    progress: Progress | None = None,
    replace_snapshots: bool = False,
    save: bool = True,
) -> RebuildResult:
    """Build ``projection``'s read model from the first event; compare it with a live replica's
    model; store it as the newest snapshot (see the module docstring)."""
    base = settings or ProjectorSettings()
    projector = Projector(
        nc,
        projection,
        replace(base, replica=REBUILD_REPLICA, snapshot_every=None, snapshot_interval=None),
    )
    started = time.monotonic()
    await projector.start(restore=False)
    job = _Rebuild(projector, progress)
    try:
        job.total, _ = await projector.consumer.pending()
        if progress is not None:
            progress(0, job.total)
        await job.run_to(await projector.consumer.stream_last_seq())
        live = await live_digest(nc, projection.name)
        if live is not None and int(live.get("applied_seq", 0)) > projector.applied:
            await job.run_to(int(live["applied_seq"]))  # the live replica has moved on
        digest = model_digest(projector.model)
        equal: bool | None = None
        same_version = live is not None and live.get("version", 1) == projection.version
        if same_version and live is not None and live.get("applied_seq", -1) == projector.applied:
            equal = live.get("digest") == digest
        snapshot = await projector.snapshot_now() if save else None
        replaced: list[str] = []
        if save and replace_snapshots:
            for info in await projector.snapshots.list(projection.name):
                if info.replica != REBUILD_REPLICA and info.schema == projection.version:
                    await projector.snapshots.delete(info)
                    replaced.append(info.object_name)
    finally:
        await projector.consumer.delete()
    result = RebuildResult(
        projection=projection.name,
        applied_seq=projector.applied,
        commits=job.commits,
        events=projector.events,
        seconds=time.monotonic() - started,
        digest=digest,
        live=live,
        equal=equal,
        snapshot=snapshot,
        replaced=replaced,
    )
    log.info("projection_rebuilt", **{k: v for k, v in result.to_dict().items() if k != "live"})
    return result
