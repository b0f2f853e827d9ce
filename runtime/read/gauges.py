"""A projection replica as Prometheus sees it: applied sequence, lag, halted, snapshot age,
whether it serves and, while it catches up, how much it has left.

Nothing here runs per event. A scrape asks the stream for its last sequence and lets the replica
confirm its position (the same check a read-your-writes query makes), then reads the numbers:
the lag is how far the stream's end is ahead of what the model reflects, as in ``cqrs status``.
"""

from __future__ import annotations

from typing import Any

from ..log import get_logger
from ..observability.metrics import ReplicaGauges
from .projector import Projector

log = get_logger("runtime.read.gauges")


class ReplicaGaugeSource:
    """Reads one :class:`~runtime.read.projector.Projector`'s gauges for the metrics."""

    def __init__(self, projector: Projector[Any]) -> None:
        self.projector = projector
        self.stream_last = 0  # the stream's last sequence at the latest scrape

    @property
    def labels(self) -> tuple[str, str]:
        return self.projector.projection.name, self.projector.replica

    def gauges(self) -> ReplicaGauges:
        p = self.projector
        snapshot = p.last_snapshot or p.restored_from
        standing = p.standing() if p.standing is not None else {}
        return ReplicaGauges(
            applied=p.applied,
            lag=max(0, self.stream_last - p.position),
            halted=p.halted is not None,
            snapshot_age=snapshot.age() if snapshot is not None else None,
            version=p.projection.version,
            serving=bool(standing.get("serving")),
            catching_up=None if standing.get("caught_up", True) else int(standing["pending"]),
        )

    async def refresh(self) -> None:
        # The stream's end first: a position confirmed afterwards covers at least that far.
        try:
            self.stream_last = await self.projector.consumer.stream_last_seq()
            await self.projector.refresh_position()
        except Exception as exc:  # NATS away: the gauges stay as last read
            log.debug("replica_gauges_refresh_failed", error=repr(exc))
