"""Serving the command partitions a worker owns: one subscription per (aggregate, partition).

The coordinator (:mod:`runtime.ownership.coordinator`) decides which partitions this worker owns;
this router subscribes to each one's ``cmd.<partition>.<aggregate>.*.*``, counts the commands in
flight per partition, and on handoff drains the subscription and waits for those commands to be
answered before the lease is released, so the next owner never decides while an answer from here
is still on its way. A lost lease ends the subscription at once, without waiting.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping

import anyio
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ..log import get_logger
from ..ownership.leases import Lease
from ..transport.nats_errors import nats_call
from ..wire.envelope import H_COMMAND_ID
from ..wire.partitions import partition_subject
from .command_service import CommandService

log = get_logger("runtime.write.partitioned")

Key = tuple[str, int]


class PartitionRouter:
    """Subscribes to owned partitions and hands their commands to the command services."""

    def __init__(self, nc: NATS, services: Mapping[str, CommandService]) -> None:
        self.nc = nc
        self.services = services
        self.subscriptions: dict[Key, Subscription] = {}
        self.in_flight: collections.Counter[Key] = collections.Counter()
        self._settled: dict[Key, anyio.Event] = {}
        self.handoffs = 0
        self.ignored = 0  # requests that arrived after their lease lapsed

    @property
    def serving(self) -> int:
        return len(self.subscriptions)

    async def take(self, lease: Lease) -> None:
        key = (lease.aggregate, lease.partition)
        service = self.services[lease.aggregate]

        def done() -> None:
            self.in_flight[key] -= 1
            if self.in_flight[key] <= 0:
                del self.in_flight[key]
                settled = self._settled.pop(key, None)
                if settled is not None:
                    settled.set()

        async def on_command(msg: Msg) -> None:
            if not lease.held():
                # Delivered while this process was paused past its lease: the partition may have
                # a new owner, which got the same request. Stay silent; the client retries.
                self.ignored += 1
                log.warning(
                    "command_ignored",
                    subject=msg.subject,
                    command_id=(msg.headers or {}).get(H_COMMAND_ID),
                    reason="the partition's lease lapsed before the request arrived",
                )
                return
            self.in_flight[key] += 1
            refusal = service.receive_owned(msg, lease, done)
            if refusal is not None:
                await refusal

        old = self.subscriptions.pop(key, None)
        if old is not None:
            await old.unsubscribe()
        # No queue group: a paused former owner's subscription may linger at the server, and a
        # queue group would hand it half of the partition's requests. Without one the new owner
        # gets every request; the former owner ignores its copies (see on_command).
        with nats_call(f"subscribing to partition {lease.partition} of {lease.aggregate}"):
            self.subscriptions[key] = await self.nc.subscribe(
                partition_subject(lease.partition, lease.aggregate), cb=on_command
            )

    async def hand_off(self, aggregate: str, partition: int) -> None:
        key = (aggregate, partition)
        subscription = self.subscriptions.pop(key, None)
        if subscription is not None:
            try:
                await subscription.drain()  # type: ignore[no-untyped-call]
            except nats.errors.Error as exc:  # a closed connection: nothing left to drain
                log.debug("partition_drain_failed", error=repr(exc))
        while self.in_flight[key] > 0:
            settled = self._settled.setdefault(key, anyio.Event())
            await settled.wait()
        self.in_flight.pop(key, None)
        self.handoffs += 1

    async def drop(self, aggregate: str, partition: int) -> None:
        subscription = self.subscriptions.pop((aggregate, partition), None)
        if subscription is not None:
            try:
                await subscription.unsubscribe()
            except nats.errors.Error as exc:
                log.debug("partition_unsubscribe_failed", error=repr(exc))

    async def stop(self) -> None:
        """Drain every partition subscription (shutdown; the host drains the commands)."""
        for aggregate, partition in list(self.subscriptions):
            subscription = self.subscriptions.pop((aggregate, partition))
            try:
                await subscription.drain()  # type: ignore[no-untyped-call]
            except nats.errors.Error as exc:
                log.debug("partition_drain_failed", error=repr(exc))
