"""Settings of a process manager replica."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..backoff import Backoff
from ..ownership.coordinator import DEFAULT_LEASE_TTL
from ..transport.startup import DEFAULT_STARTUP_TIMEOUT
from ..wire.partitions import DEFAULT_PARTITIONS, check_partitions

StartAt = Literal["new", "all"]

RETRY_BACKOFF = Backoff(first=0.1, maximum=5.0, jitter=0.2)


@dataclass(frozen=True, slots=True)
class ProcessSettings:
    """How a process manager replica consumes, stores its instances and schedules its timers.

    A partition's new owner rewinds its consumers to what its former owner acknowledged, so a
    takeover after a crash takes up to ``lease_ttl``.
    """

    stream: str = "EVENTS"
    timers_stream: str = "CQRS_TIMERS"
    bucket: str = "cqrs-processes"
    parked_stream: str = "CQRS_PM_PARKED"  # sequenced dead letters (runtime/processes/parking.py)
    replicas: int = 1  # of the timers stream and the state bucket, when this replica creates them
    start: StartAt = "new"  # where a new consumer starts: new events only, or the first event
    # Events fetched at once per partition, as many as a projection takes: a batch's instance
    # reads, writes and acknowledgement are round trips shared by its events.
    batch: int = 500
    concurrency: int = 64  # instances reacting at once within a batch
    ack_wait: float = 10.0
    partitions: int = DEFAULT_PARTITIONS  # of CQRS_PM_EVENTS and of the timers (layout.py)
    lease_ttl: int = DEFAULT_LEASE_TTL  # seconds: a dead replica's partitions move within this
    lease_bucket: str = "cqrs-processes-leases"
    fetch_timeout: float = 1.0
    command_timeout: float = 10.0
    retry: Backoff = RETRY_BACKOFF  # before retrying a failed reaction or fetch
    max_attempts: int = 5  # tries of a raising reaction before its instance is parked
    timeout: float = 5.0  # JetStream API calls
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT  # see runtime/transport/startup.py
    ready_file: Path | None = None

    def __post_init__(self) -> None:
        check_partitions(self.partitions)
        if self.lease_ttl < 1:
            raise ValueError("lease_ttl must be at least 1 second")
        if self.batch < 1 or self.concurrency < 1 or self.max_attempts < 1:
            raise ValueError("batch, concurrency and max_attempts must be at least 1")
