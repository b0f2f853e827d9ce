"""Poison events: an event a projection's handler keeps failing on (or that does not decode).

A failing handler may be failing for a passing reason (a bug being deployed, a resource briefly
gone), so the event is first retried with exponential back-off. When the attempts run out the
projection's policy decides:

- ``halt`` (the default): stop applying. The replica keeps serving queries from the model as it
  is, reports the event and the error (log, ``cqrs status``), and waiting read-your-writes
  queries answer ``stale``. A restart retries.
- ``skip``: record the event and the error in the dead-letter stream, then go on. When the record
  cannot be stored the replica halts instead: a skip nobody can find is a silent hole.

A commit whose body cannot be read at all fails as a whole (index -1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
from nats.aio.msg import Msg

from ..backoff import Backoff
from ..domain.projection import PoisonPolicy
from ..errors import CqrsError
from ..log import Logger
from .dead_letters import DeadLetter, DeadLetters


def now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class PoisonReport:
    """An event whose handler keeps failing (or that does not decode)."""

    seq: int
    index: int  # the event's position in its commit; -1: the whole commit
    subject: str
    type: str
    error: str
    attempts: int
    at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EventFailed(Exception):
    """Raised (internally) when applying one event of a commit fails."""

    def __init__(self, index: int, type_name: str, data: Any, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.index = index
        self.type_name = type_name
        self.data = data
        self.error = error


Apply = Callable[[Msg, int, int], None]  # (message, seq, first event index) -> None


class PoisonHandler:
    """Retries a failing event, then halts or dead-letters it by the projection's policy."""

    def __init__(
        self,
        projection: str,
        replica: str,
        policy: PoisonPolicy,
        max_attempts: int,
        backoff: Backoff,
        dead_letters: DeadLetters,
        log: Logger,
    ) -> None:
        self.projection = projection
        self.replica = replica
        self.policy = policy
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.dead_letters = dead_letters
        self.log = log
        self.retrying: PoisonReport | None = None
        self.dead_lettered = 0

    async def handle(
        self, msg: Msg, seq: int, failure: EventFailed, apply: Apply
    ) -> PoisonReport | None:
        """Retry from the failing event until the commit applies (None) or the policy says
        halt (the report). ``apply`` re-applies the commit from a given event index."""
        attempts = 1
        while True:
            report = PoisonReport(
                seq=seq,
                index=failure.index,
                subject=msg.subject,
                type=failure.type_name,
                error=str(failure),
                attempts=attempts,
                at=now(),
            )
            if attempts >= self.max_attempts:
                self.retrying = None
                if self.policy != "skip" or not await self._dead_letter(report, failure.data):
                    return report
                if failure.index < 0:
                    return None  # the unreadable commit is skipped as a whole
                start = failure.index + 1
            else:
                self.retrying = report
                self.log.warning("event_failed", **report.to_dict())
                await anyio.sleep(self.backoff.delay(attempts))
                start = max(failure.index, 0)
            try:
                apply(msg, seq, start)
            except EventFailed as again:
                attempts = attempts + 1 if again.index == failure.index else 1
                failure = again
                continue
            self.retrying = None
            return None

    async def _dead_letter(self, report: PoisonReport, data: Any) -> bool:
        letter = DeadLetter(
            projection=self.projection,
            replica=self.replica,
            seq=report.seq,
            index=report.index,
            subject=report.subject,
            type=report.type,
            data=data,
            error=report.error,
            attempts=report.attempts,
            at=report.at,
        )
        try:
            await self.dead_letters.start()
            await self.dead_letters.record(letter)
        except CqrsError as exc:
            self.log.error("dead_letter_failed", code=exc.code, reason=exc.message)
            return False
        self.dead_lettered += 1
        self.log.error("event_skipped", **report.to_dict())
        return True
