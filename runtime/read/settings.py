"""How a projection replica consumes, snapshots and handles failures: its settings alone, so the
consumer, the snapshot store and the projector can share them without importing each other."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ..backoff import Backoff
from ..errors import InvalidInput
from ..transport.startup import DEFAULT_STARTUP_TIMEOUT
from ..wire.naming import check_id
from .dead_letters import DEFAULT_STREAM as DEFAULT_DEAD_LETTER_STREAM
from .presence import DEFAULT_TTL as PRESENCE_TTL
from .snapshots import DEFAULT_BUCKET

RETRY_BACKOFF = Backoff(first=0.1, maximum=5.0)


def default_replica() -> str:
    """A replica id that stays the same across restarts on one host (its consumer's name)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname()).strip("-")[:32]
    return name or "r1"


@dataclass(frozen=True)
class ProjectorSettings:
    """How one projection replica consumes, snapshots and handles failures."""

    stream: str = "EVENTS"
    replica: str = field(default_factory=default_replica)
    batch: int = 500
    fetch_timeout: float = 1.0  # long-poll of an idle replica
    snapshot_every: int | None = 20_000  # commits applied between snapshots
    snapshot_interval: float | None = 30.0  # seconds between snapshots when something changed
    snapshot_bucket: str = DEFAULT_BUCKET
    dead_letter_stream: str = DEFAULT_DEAD_LETTER_STREAM
    max_attempts: int = 5  # handler attempts on one event before the poison policy applies
    retry_backoff: Backoff = RETRY_BACKOFF  # between those attempts
    stale_timeout: float = 5.0  # how long a query waits for its minimum sequence
    catch_up_lag: int = 100  # commits left to deliver below which a starting replica may serve
    consumer_inactive: float = 7 * 24 * 3600.0  # an abandoned replica's consumer goes away
    presence_ttl: float = PRESENCE_TTL  # seconds a dead replica's claim on its id outlives it
    replicas: int = 1  # JetStream replicas of the bucket and stream a replica creates
    timeout: float = 10.0  # JetStream API calls
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT  # see runtime/transport/startup.py
    ready_file: Path | None = None  # see runtime/transport/readiness.py

    def __post_init__(self) -> None:
        check_id(self.replica, field="replica")  # it names the consumer and the snapshot
        if self.batch < 1:
            raise InvalidInput("batch must be at least 1", details={"field": "batch"})
        if self.catch_up_lag < 0:
            raise InvalidInput("catch_up_lag must be 0 or more", details={"field": "catch_up_lag"})

    @property
    def ack_wait(self) -> float:
        """Longer than the time between two snapshots, so unacknowledged batches are not
        redelivered in the meantime (a redelivery would be skipped anyway)."""
        return max(60.0, 3 * (self.snapshot_interval or 30.0))
