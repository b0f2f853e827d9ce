"""The event store: the ``EVENTS`` stream on JetStream.

Appends use ``Nats-Expected-Last-Subject-Sequence`` (optimistic concurrency per aggregate) and a
``Nats-Msg-Id`` scoped to the aggregate (JetStream dedupe; see :mod:`runtime.wire.idempotency`).
Reads use batched direct get on the aggregate's subject, or consumers scoped to it
(``StreamSettings.scoped_reads``, :mod:`runtime.transport.history_reader`). The stream is created
if missing and checked if present: a stream with other settings is a configuration error, never
silently reconfigured.
"""

from __future__ import annotations

from nats.aio.client import Client as NATS

from ..errors import Timeout
from ..transport.history_reader import history_reader
from ..transport.limits import too_large
from ..transport.publisher import NoStream, Publisher, Refused
from ..transport.streams import StreamSettings, ensure_event_stream
from ..wire.envelope import Commit
from ..wire.naming import event_subject


class WrongLastSequence(Exception):
    """Raised (internally) when another writer appended to the aggregate first."""

    def __init__(self, description: str) -> None:
        super().__init__(description)


class EventStore:
    """Appends commits to and reads aggregate histories from one JetStream stream."""

    def __init__(self, nc: NATS, settings: StreamSettings | None = None, *, timeout: float = 5.0):
        self.nc = nc
        self.js = nc.jetstream(timeout=timeout)
        self.settings = settings or StreamSettings()
        self.stream = self.settings.name
        self.timeout = timeout
        self.publisher = Publisher(nc, timeout)
        self.reader = history_reader(
            nc, self.stream, scoped=self.settings.scoped_reads, timeout=timeout
        )

    async def start(self) -> None:
        await ensure_event_stream(self.js, self.settings)
        await self.reader.start()

    async def stop(self) -> None:
        await self.publisher.stop()
        await self.reader.stop()

    async def append(self, commit: Commit, expected_last_seq: int) -> tuple[int, bool]:
        """Append ``commit``; return its stream sequence and whether JetStream saw a duplicate.

        Raises :class:`WrongLastSequence` on a concurrency conflict, :class:`Timeout` when the
        outcome is unknown, :class:`InvalidInput` (``too_large``) when the commit or its reply
        would exceed the server's max payload (nothing is stored), :class:`Unavailable` when
        nothing could be sent, :class:`JetStreamError` on a refusal.
        """
        subject = event_subject(commit.aggregate, commit.aggregate_id)
        body, header_block = commit.body(), commit.header_block(expected_last_seq)
        # The server closes the connection over a message too large: refuse it here instead,
        # and also a commit whose success reply (which repeats the events) could not be sent.
        size = len(body) + len(header_block)
        if size > self.nc.max_payload:
            raise too_large("the command's commit", size, self.nc.max_payload)
        reply_size = commit.reply_size_bound(body)
        if reply_size > self.nc.max_payload:
            raise too_large("the command's reply", reply_size, self.nc.max_payload)
        try:
            ack = await self.publisher.publish(subject, body, header_block)
        except Refused as exc:
            if exc.conflict:
                raise WrongLastSequence(exc.description or "wrong last sequence") from None
            raise exc.as_error(f"the append to {subject}") from None
        except (Timeout, NoStream):
            # No ack, or a stream without a leader (a cluster failing over): unknown outcome.
            raise Timeout("JetStream did not acknowledge the commit in time") from None
        return ack.seq, bool(ack.duplicate)

    async def history(
        self,
        aggregate: str,
        aggregate_id: str,
        *,
        after_seq: int = 0,
        up_to_seq: int | None = None,
        up_to_time: str | None = None,
    ) -> list[Commit]:
        """The aggregate's commits with a stream sequence above ``after_seq``, oldest first."""
        messages = await self.reader.subject_history(
            event_subject(aggregate, aggregate_id),
            after_seq=after_seq,
            up_to_seq=up_to_seq,
            up_to_time=up_to_time,
        )
        return [Commit.from_message(m) for m in messages]

    async def last_commit(self, aggregate: str, aggregate_id: str) -> Commit | None:
        """The aggregate's newest commit (found through the subject index, whatever its age)."""
        msg = await self.reader.last_for_subject(event_subject(aggregate, aggregate_id))
        return Commit.from_message(msg) if msg is not None else None

    async def last_seq(self, aggregate: str, aggregate_id: str) -> int:
        """The stream sequence of the aggregate's newest commit (0: none), for the fence."""
        commit = await self.last_commit(aggregate, aggregate_id)
        return commit.seq if commit is not None else 0

    async def commit_at(self, aggregate: str, aggregate_id: str, seq: int) -> Commit | None:
        """The aggregate's commit at stream sequence ``seq``, or None when it has none there."""
        msg = await self.reader.at(event_subject(aggregate, aggregate_id), seq)
        return Commit.from_message(msg) if msg is not None else None
