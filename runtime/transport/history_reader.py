"""How the write side reads one aggregate's commits: the port, and the choice between readers.

Two readers answer the same three questions (a subject's history after a sequence, its newest
message, the message at a sequence on it):

- :class:`~runtime.transport.direct_get.DirectGetter`: batched direct get, the fastest read.
  The server takes the subject from the request body, so a NATS permission can only grant it
  for the whole stream: a user allowed it can read every aggregate's events.
- :class:`~runtime.transport.consumer_history.ConsumerHistoryReader`: an ephemeral consumer per
  read, created on the subject-suffixed API that a permission scopes to one aggregate type, so
  a worker reads only its aggregates' events (``scoped_reads``).

Without ``scoped_reads`` a worker reads by direct get until the server refuses it the
stream-wide form (the generated ``worker`` users are not granted it): the refusal arrives at
once (:mod:`runtime.transport.refusals`), and from then on the worker reads through scoped
consumers, saying so once in the log (``history_reads_scoped``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from nats.aio.client import Client as NATS

from ..errors import PermissionDenied
from ..log import get_logger
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


log = get_logger("runtime.transport.history_reader")
T = TypeVar("T")


class DirectUnlessRefused:
    """Batched direct get, and the scoped consumer reader for good once the server refuses the
    stream-wide direct get. The newest message is the subject-suffixed direct get in both."""

    def __init__(self, nc: NATS, stream: str, *, timeout: float) -> None:
        self._stream = stream
        self._direct = DirectGetter(nc, stream, timeout=timeout)
        self._scoped = ConsumerHistoryReader(nc, stream, timeout=timeout, newest=self._direct)
        self._reader: HistoryReader = self._direct

    @property
    def scoped(self) -> bool:
        """Whether reads go through scoped consumers (the direct get was refused)."""
        return self._reader is self._scoped

    async def start(self) -> None:
        await self._direct.start()

    async def stop(self) -> None:
        await self._direct.stop()

    async def subject_history(
        self,
        subject: str,
        *,
        after_seq: int = 0,
        up_to_seq: int | None = None,
        up_to_time: str | None = None,
    ) -> list[RawMessage]:
        return await self._read(
            lambda r: r.subject_history(
                subject, after_seq=after_seq, up_to_seq=up_to_seq, up_to_time=up_to_time
            )
        )

    async def last_for_subject(self, subject: str) -> RawMessage | None:
        return await self._direct.last_for_subject(subject)

    async def at(self, subject: str, seq: int) -> RawMessage | None:
        return await self._read(lambda r: r.at(subject, seq))

    async def _read(self, read: Callable[[HistoryReader], Awaitable[T]]) -> T:
        reader = self._reader
        try:
            return await read(reader)
        except PermissionDenied as exc:
            if reader is not self._direct:
                raise
            if not self.scoped:
                self._reader = self._scoped
                log.info(
                    "history_reads_scoped",
                    stream=self._stream,
                    reason=exc.message,
                    hint="set --scoped-reads (CQRS_SCOPED_READS=true) to start this way",
                )
            return await read(self._scoped)


def history_reader(nc: NATS, stream: str, *, scoped: bool, timeout: float) -> HistoryReader:
    """The consumer reader when ``scoped`` (least privilege), else batched direct get until
    the server refuses it."""
    if scoped:
        return ConsumerHistoryReader(nc, stream, timeout=timeout)
    return DirectUnlessRefused(nc, stream, timeout=timeout)
