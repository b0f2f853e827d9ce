"""A steady command load with client-side retries, and the exactly-once check against the stream.

Each command gets a fresh command id; a command whose outcome is unknown (timeout, no
responders, an internal error during a failover) is retried with the *same* id, as a careful
client would, so the stream must hold every acknowledged id exactly once.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import anyio
from nats.aio.client import Client as NATS

from runtime import Client, CqrsError

from .support import StoredCommit, stream_commits

RETRYABLE = {"timeout", "no_responders", "internal", "busy", "conflict"}


@dataclass
class CommandLoad:
    """``concurrency`` senders, each adding to its own counters until stopped."""

    client: Client
    concurrency: int = 8
    ids_per_sender: int = 4
    timeout: float = 2.0
    retry: bool = True
    retry_for: float = 30.0  # seconds one command may be retried before the load gives up
    hot_aggregates: int = 0  # >0: every sender spreads over these few shared aggregates instead
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    acked: dict[str, float] = field(default_factory=dict)  # command id -> monotonic time
    gave_up: list[tuple[str, str]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # not retried: (id, code)
    errors: Counter[str] = field(default_factory=Counter)
    # command id -> aggregate id, of the commands that timed out at least once
    unanswered: dict[str, str] = field(default_factory=dict)
    in_flight: int = 0

    def acked_after(self, moment: float) -> list[float]:
        return sorted(t for t in self.acked.values() if t > moment)

    async def run(self, stop: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            for sender in range(self.concurrency):
                tg.start_soon(self._sender, sender, stop)

    async def _sender(self, sender: int, stop: anyio.Event) -> None:
        n = 0
        while not stop.is_set():
            aggregate_id = (
                f"{self.prefix}-hot-{(sender + n) % self.hot_aggregates}"
                if self.hot_aggregates
                else f"{self.prefix}-{sender}-{n % self.ids_per_sender}"
            )
            command_id = f"{self.prefix}-{sender}-{n}"
            n += 1
            await self._one(aggregate_id, command_id)

    async def _one(self, aggregate_id: str, command_id: str) -> None:
        started = time.monotonic()
        self.in_flight += 1
        try:
            while True:
                try:
                    await self.client.send(
                        "counter",
                        aggregate_id,
                        "add",
                        {"amount": 1},
                        command_id=command_id,
                        timeout=self.timeout,
                    )
                except CqrsError as exc:
                    self.errors[exc.code] += 1
                    if exc.code == "timeout":
                        self.unanswered[command_id] = aggregate_id
                    if not self.retry:
                        self.refused.append((command_id, exc.code))
                        return
                    if exc.code not in RETRYABLE or time.monotonic() - started > self.retry_for:
                        self.gave_up.append((command_id, exc.code))
                        return
                    await anyio.sleep(0.05)  # back off a little before the retry
                    continue
                self.acked[command_id] = time.monotonic()
                return
        finally:
            self.in_flight -= 1


async def assert_exactly_once(nc: NATS, acked: set[str], stream: str = "EVENTS") -> int:
    """Every acknowledged command id is in the stream once, no id twice, versions contiguous."""
    return assert_commits_exactly_once(await stream_commits(nc, stream), acked)


def assert_commits_exactly_once(commits: list[StoredCommit], acked: set[str]) -> int:
    """:func:`assert_exactly_once` on commits already read from the stream."""
    counts = Counter(c.command_id for c in commits)
    missing = [c for c in acked if counts[c] == 0]
    doubled = {c: n for c, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} acknowledged commands are not in the stream: {missing[:5]}"
    assert not doubled, f"commands stored more than once: {list(doubled.items())[:5]}"
    versions: dict[str, list[int]] = {}
    for commit in commits:
        versions.setdefault(commit.subject, []).append(commit.version)
    for subject, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), f"{subject} versions {seen[:20]}..."
    return len(commits)
