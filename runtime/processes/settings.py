"""Settings of a process manager replica."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..backoff import Backoff
from ..transport.startup import DEFAULT_STARTUP_TIMEOUT

StartAt = Literal["new", "all"]

RETRY_BACKOFF = Backoff(first=0.1, maximum=5.0, jitter=0.2)


@dataclass(frozen=True, slots=True)
class ProcessSettings:
    """How a process manager replica consumes, stores its instances and schedules its timers.

    ``pin_timeout`` must exceed ``ack_wait``: a replica that dies holding deliveries has them
    redelivered before another replica is pinned, so the next replica sees them first.
    """

    stream: str = "EVENTS"
    timers_stream: str = "CQRS_TIMERS"
    bucket: str = "cqrs-processes"
    parked_stream: str = "CQRS_PM_PARKED"  # sequenced dead letters (runtime/processes/parking.py)
    replicas: int = 1  # of the timers stream and the state bucket, when this replica creates them
    start: StartAt = "new"  # where a new consumer starts: new events only, or the first event
    batch: int = 100
    concurrency: int = 64  # instances reacting at once within a batch
    ack_wait: float = 10.0
    pin_timeout: float = 15.0
    fetch_timeout: float = 1.0
    command_timeout: float = 10.0
    retry: Backoff = RETRY_BACKOFF  # before retrying a failed reaction or fetch
    max_attempts: int = 5  # tries of a raising reaction before its instance is parked
    timeout: float = 5.0  # JetStream API calls
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT  # see runtime/transport/startup.py
    ready_file: Path | None = None

    def __post_init__(self) -> None:
        if self.pin_timeout <= self.ack_wait:
            raise ValueError("pin_timeout must be longer than ack_wait")
        if self.batch < 1 or self.concurrency < 1 or self.max_attempts < 1:
            raise ValueError("batch, concurrency and max_attempts must be at least 1")
