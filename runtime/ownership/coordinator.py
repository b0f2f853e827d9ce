"""Membership and rebalancing: which partitions this worker should own, and keeping them.

Every ``ttl / 3`` seconds a worker announces itself (its heartbeat key), reads the live members,
and for each (aggregate type, partition) asks rendezvous hashing with bounded loads
(:mod:`.rendezvous`) who should own it:

- a partition it holds and should keep: renew the lease (compare-and-set on its revision); when
  the renewal fails someone else has taken it, and the worker stops serving it at once;
- a partition it holds but another member should own: hand it off (stop taking its commands,
  let the commands already received finish, then release the lease);
- a partition it should own but does not hold: take the lease when it is free (the old owner
  releases it at its own next round, or the server expires it within the TTL).

A lease the worker could not renew in time (NATS unreachable, the process paused) is dropped as
soon as the worker notices, and no command is answered under it meanwhile (see
:meth:`~runtime.ownership.leases.Lease.valid`).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from ..errors import CqrsError
from ..log import get_logger
from ..wire.partitions import DEFAULT_PARTITIONS, check_partitions
from .leases import Lease, LeaseBucket
from .rendezvous import assign, serving_members

log = get_logger("runtime.ownership.coordinator")

DEFAULT_LEASE_TTL = 10  # seconds: a dead worker's partitions move within this
HANDOVER_POLL = 0.25  # seconds between rounds while a partition is being handed over to us


@dataclass(frozen=True, slots=True)
class OwnershipSettings:
    """How commands are partitioned and how long a lease lives."""

    partitions: int = DEFAULT_PARTITIONS
    lease_ttl: int = DEFAULT_LEASE_TTL
    bucket: str | None = None  # default: <stream>_leases
    handoff_timeout: float = 10.0  # seconds a handoff waits for the partition's commands

    def bucket_for(self, stream: str) -> str:
        return self.bucket or f"{stream}_leases"


class PartitionServer(Protocol):
    """What serves the commands of the partitions a worker owns (the write side's router)."""

    async def take(self, lease: Lease) -> None:
        """Start serving the partition of ``lease``."""

    async def hand_off(self, aggregate: str, partition: int) -> None:
        """Stop taking the partition's commands and wait for those already received."""

    async def drop(self, aggregate: str, partition: int) -> None:
        """Stop serving the partition at once (its lease is lost)."""


@dataclass(slots=True)
class OwnershipStats:
    """Counts for status output and metrics."""

    acquired: int = 0
    renewed: int = 0
    handed_off: int = 0
    lost: int = 0
    rounds: int = 0
    failed_rounds: int = 0


def _listed(keys: set[tuple[str, int]]) -> str:
    return " ".join(f"{aggregate}/{partition}" for aggregate, partition in sorted(keys))


def new_member_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class Coordinator:
    """Keeps the leases of the partitions this worker should own, and only those."""

    bucket: LeaseBucket
    aggregates: Sequence[str]
    server: PartitionServer
    settings: OwnershipSettings = field(default_factory=OwnershipSettings)
    member: str = field(default_factory=new_member_id)
    held: dict[tuple[str, int], Lease] = field(default_factory=dict)
    stats: OwnershipStats = field(default_factory=OwnershipStats)
    awaited: int = 0  # partitions this worker should own but another still holds

    def __post_init__(self) -> None:
        check_partitions(self.settings.partitions)

    @property
    def owned(self) -> int:
        return len(self.held)

    def owned_partitions(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {a: [] for a in self.aggregates}
        for aggregate, partition in sorted(self.held):
            out[aggregate].append(partition)
        return out

    async def run(self) -> None:
        """Rebalance every ``ttl / 3`` seconds until cancelled (after a first :meth:`round`)."""
        period = self.settings.lease_ttl / 3
        while True:
            await anyio.sleep(self._next_wait(period))
            await self.round()

    def _next_wait(self, period: float) -> float:
        """Until the next round, or sooner when a lease would otherwise lapse unrenewed, or
        while a partition this worker should own is still being handed over: its former owner
        releases it once its commands are answered, and until this worker takes it nobody
        serves it (clients retry), so the lease is tried again every ``HANDOVER_POLL``."""
        if self.awaited:
            return HANDOVER_POLL
        now = time.monotonic()
        soonest = min((lease.valid_until for lease in self.held.values()), default=now + period)
        return max(0.05, min(period, soonest - now - period / 2))

    async def round(self) -> None:
        self.stats.rounds += 1
        self.awaited = 0  # a failed round waits the normal period, not the handover's
        try:
            await self.bucket.heartbeat(self.member, self.announcement())
            members = await self.bucket.members()
        except CqrsError as exc:
            self.stats.failed_rounds += 1
            log.warning("ownership_round_failed", member=self.member, reason=exc.message)
            await self._drop_lapsed()
            return
        before = set(self.held)
        for aggregate in self.aggregates:
            # Only members that serve this aggregate type compete for its partitions: a worker
            # of other aggregates sharing the bucket must not win a partition it cannot serve.
            serving = serving_members(members, aggregate) | {self.member}
            owners = assign(serving, aggregate, self.settings.partitions)
            for partition in range(self.settings.partitions):
                wanted = owners.get(partition) == self.member
                try:
                    await self._settle(aggregate, partition, wanted=wanted)
                except CqrsError as exc:
                    self.stats.failed_rounds += 1
                    log.warning(
                        "partition_round_failed",
                        aggregate=aggregate,
                        partition=partition,
                        reason=exc.message,
                    )
        await self._drop_lapsed()
        if set(self.held) != before:
            log.info(
                "partitions_rebalanced",
                member=self.member,
                members=len(members),
                taken=_listed(set(self.held) - before),
                given_up=_listed(before - set(self.held)),
                owned=self.owned,
            )

    async def _settle(self, aggregate: str, partition: int, *, wanted: bool) -> None:
        key = (aggregate, partition)
        lease = self.held.get(key)
        if lease is not None and not wanted:
            await self.hand_off(lease)
        elif lease is not None:
            # Shielded, as the acquisition below: a stop that cancelled the round between the
            # server storing the renewal and its revision being kept here would make the
            # release at stop, conditional on the revision, leave the lease until it expires.
            with anyio.CancelScope(shield=True):
                renewed = await self.bucket.renew(lease, self.member)
            if renewed:
                self.stats.renewed += 1
            else:
                await self._lose(lease, "taken_over")
        elif wanted:
            # Shielded: a stop that cancelled the round between the server storing the lease
            # and its being held here would leave it unreleased until it expires.
            with anyio.CancelScope(shield=True):
                taken = await self.bucket.acquire(aggregate, partition, self.member)
                if taken is not None:
                    self.held[key] = taken
            if taken is None:
                self.awaited += 1
                return
            self.stats.acquired += 1
            await self.server.take(taken)

    async def hand_off(self, lease: Lease) -> None:
        """Stop taking the partition's commands, finish those received, release the lease."""
        self.held.pop((lease.aggregate, lease.partition), None)
        # Bounded below the renewal period, so the other leases are renewed in time. A handoff
        # cut short keeps the lease until it expires: the next owner then confirms its
        # decisions against the stream for a TTL, in case a command from here still lands.
        with anyio.move_on_after(min(self.settings.handoff_timeout, self.settings.lease_ttl / 3)):
            await self.server.hand_off(lease.aggregate, lease.partition)
            # Also past its trusted time (a slow drain on a loaded machine): the delete is
            # conditional on the lease's revision, so it never removes another member's lease.
            if not lease.lost:
                await self.bucket.release(lease)
        lease.lost = True
        self.stats.handed_off += 1

    async def _lose(self, lease: Lease, reason: str) -> None:
        lease.lost = True
        self.held.pop((lease.aggregate, lease.partition), None)
        self.stats.lost += 1
        await self.server.drop(lease.aggregate, lease.partition)
        log.warning(
            "partition_lost", aggregate=lease.aggregate, partition=lease.partition, reason=reason
        )

    async def _drop_lapsed(self) -> None:
        now = time.monotonic()
        for lease in [lease for lease in self.held.values() if lease.valid_until <= now]:
            await self._lose(lease, "not_renewed_in_time")

    async def release_all(self) -> None:
        """On shutdown: hand every partition off and withdraw, so others take over at once."""
        for lease in list(self.held.values()):
            try:
                await self.hand_off(lease)
            except CqrsError as exc:
                log.warning(
                    "partition_release_failed", partition=lease.partition, reason=exc.message
                )
        try:
            await self.bucket.leave(self.member)
        except CqrsError as exc:
            log.warning("member_leave_failed", reason=exc.message)

    def announcement(self) -> dict[str, object]:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "aggregates": list(self.aggregates),
            "partitions": self.settings.partitions,
            "owned": {a: ps for a, ps in self.owned_partitions().items() if ps},
        }
