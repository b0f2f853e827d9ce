"""The partitions of process managers this replica owns: the ownership coordinator's server.

The coordinator (:mod:`runtime.ownership.coordinator`) keeps one lease per (process manager,
partition) in the KV bucket ``cqrs-processes-leases``, the process manager's name standing
where a worker's aggregate type does; this host starts a partition's reactions when its lease
is taken, stops them between batches on a handoff, and cancels them at once when the lease is
lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from ..errors import CqrsError
from ..log import get_logger
from ..ownership.leases import Lease
from .reactor import Reactor

log = get_logger("runtime.processes.partitions")

Key = tuple[str, int]


@dataclass
class _Serving:
    stopping: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)


class PartitionHost:
    """Runs :meth:`Reactor.serve` for each partition whose lease this replica holds."""

    def __init__(self, reactors: Mapping[str, Reactor], tg: TaskGroup) -> None:
        self.reactors = reactors
        self.tg = tg
        self.serving: dict[Key, _Serving] = {}

    async def take(self, lease: Lease) -> None:
        key = (lease.aggregate, lease.partition)
        await self.drop(*key)
        serving = self.serving[key] = _Serving()
        reactor = self.reactors[lease.aggregate]

        async def serve() -> None:
            failures = 0
            try:
                with serving.scope:
                    while not serving.stopping.is_set() and not lease.lost:
                        try:
                            await reactor.serve(lease, serving.stopping)
                            return
                        except Exception as exc:  # NATS unavailable: try again while ours
                            failures += 1
                            log.warning(
                                "partition_failed",
                                process_manager=lease.aggregate,
                                partition=lease.partition,
                                error=exc.message if isinstance(exc, CqrsError) else repr(exc),
                            )
                            await anyio.sleep(reactor.settings.retry.delay(failures))
            finally:
                serving.done.set()

        self.tg.start_soon(serve)

    async def hand_off(self, aggregate: str, partition: int) -> None:
        serving = self.serving.pop((aggregate, partition), None)
        if serving is not None:
            serving.stopping.set()  # finish the batch in hand, acknowledge it, stop
            await serving.done.wait()

    async def drop(self, aggregate: str, partition: int) -> None:
        serving = self.serving.pop((aggregate, partition), None)
        if serving is not None:
            serving.scope.cancel()
            await serving.done.wait()
