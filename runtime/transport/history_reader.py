"""How the write side reads one aggregate's commits: the port, and the choice between readers.

Two readers answer the same three questions (a subject's history after a sequence, its newest
message, the message at a sequence on it):

- :class:`~runtime.transport.direct_get.DirectGetter`: batched direct get, the fastest read.
  The server takes the subject from the request body, so a NATS permission can only grant it
  for the whole stream: a user allowed it can read every aggregate's events.
- :class:`~runtime.transport.consumer_history.ConsumerHistoryReader`: an ephemeral consumer per
  read, created on the subject-suffixed API that a permission scopes to one aggregate type, so
  a worker reads only its aggregates' events (``scoped_reads``).
"""

from __future__ import annotations

from typing import Protocol

from nats.aio.client import Client as NATS

from ..wire.envelope import RawMessage
from .consumer_history import ConsumerHistoryReader
from .direct_get import DirectGetter


class HistoryReader(Protocol):
    """Reads messages of one subject of one stream, oldest first."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def subject_history(
        self,
        subject: str,
        *,
        after_seq: int = 0,
        up_to_seq: int | None = None,
        up_to_time: str | None = None,
    ) -> list[RawMessage]: ...

    async def last_for_subject(self, subject: str) -> RawMessage | None: ...

    async def at(self, subject: str, seq: int) -> RawMessage | None: ...


def history_reader(nc: NATS, stream: str, *, scoped: bool, timeout: float) -> HistoryReader:
    """The consumer reader when ``scoped`` (least privilege), else batched direct get."""
    if scoped:
        return ConsumerHistoryReader(nc, stream, timeout=timeout)
    return DirectGetter(nc, stream, timeout=timeout)
