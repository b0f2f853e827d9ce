"""The event store: the ``EVENTS`` stream on JetStream.

Appends use ``Nats-Expected-Last-Subject-Sequence`` (optimistic concurrency per aggregate) and
``Nats-Msg-Id`` = command id (JetStream dedupe). Reads use batched direct get on the aggregate's
subject. The stream is created if missing and checked if present: a stream with other settings is
a configuration error, never silently reconfigured.
"""

from __future__ import annotations

from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import api

from .envelope import Commit
from .errors import ConfigurationError, Internal, InvalidInput, Timeout
from .jsapi import DirectGetter
from .naming import EVENT_PREFIX, event_subject

WRONG_LAST_SEQUENCE = 10071


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """What the event stream must look like."""

    name: str = "EVENTS"
    replicas: int = 1
    duplicate_window: float = 120.0  # seconds
    max_msg_size: int | None = None


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
        self.reader = DirectGetter(nc, self.stream, timeout=timeout)

    async def start(self) -> None:
        await ensure_event_stream(self.js, self.settings)
        await self.reader.start()

    async def stop(self) -> None:
        await self.reader.stop()

    async def append(self, commit: Commit, expected_last_seq: int) -> tuple[int, bool]:
        """Append ``commit``; return its stream sequence and whether JetStream saw a duplicate.

        Raises :class:`WrongLastSequence` on a concurrency conflict, :class:`Timeout` when the
        outcome is unknown, :class:`InvalidInput` when the commit exceeds the max payload.
        """
        subject = event_subject(commit.aggregate, commit.aggregate_id)
        try:
            ack = await self.js.publish(
                subject, commit.body(), headers=commit.headers(expected_last_seq)
            )
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise WrongLastSequence(exc.description or "wrong last sequence") from None
            raise Internal(f"append rejected by JetStream: {exc.description}") from None
        except nats.errors.MaxPayloadError:
            raise InvalidInput(
                "the command's events exceed the server's max payload",
                details={"field": "$", "max_payload": self.nc.max_payload},
            ) from None
        except nats.errors.TimeoutError:
            raise Timeout("JetStream did not acknowledge the commit in time") from None
        except (nats.js.errors.NoStreamResponseError, nats.errors.ConnectionClosedError):
            # A stream without a leader (a cluster failing over) or a connection going away.
            raise Timeout("JetStream is not available right now; try again") from None
        except nats.js.errors.APIError as exc:
            raise Internal(f"append failed: {exc.description}") from None
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

    async def commit_at(self, seq: int) -> Commit | None:
        msg = await self.reader.get(seq)
        return Commit.from_message(msg) if msg is not None else None

    async def last_seq(self) -> int:
        info = await self.js.stream_info(self.stream)
        return int(info.state.last_seq)

    async def message_count(self) -> int:
        info = await self.js.stream_info(self.stream)
        return int(info.state.messages)


async def ensure_event_stream(js: nats.js.JetStreamContext, settings: StreamSettings) -> None:
    """Create the event stream, or check that the existing one has the required settings."""
    wanted = api.StreamConfig(
        name=settings.name,
        subjects=[f"{EVENT_PREFIX}.>"],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        num_replicas=settings.replicas,
        duplicate_window=settings.duplicate_window,
        allow_direct=True,
        deny_delete=True,
        deny_purge=True,
        max_msg_size=settings.max_msg_size,
    )
    try:
        info = await js.stream_info(settings.name)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(wanted)
            return
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != 10058:  # created meanwhile by another process
                raise ConfigurationError(f"cannot create stream: {exc.description}") from None
            info = await js.stream_info(settings.name)
    except nats.errors.TimeoutError:
        raise ConfigurationError("JetStream did not answer: is JetStream enabled?") from None
    except nats.js.errors.ServiceUnavailableError:
        raise ConfigurationError("JetStream is not enabled on this server") from None
    cfg = info.config
    problems = []
    if f"{EVENT_PREFIX}.>" not in (cfg.subjects or []):
        problems.append(f"subjects {cfg.subjects} do not include '{EVENT_PREFIX}.>'")
    if cfg.storage != api.StorageType.FILE:
        problems.append(f"storage is {cfg.storage}, not file")
    if not cfg.allow_direct:
        problems.append("allow_direct is off")
    if not cfg.deny_delete:
        problems.append("deny_delete is off")
    if not cfg.deny_purge:
        problems.append("deny_purge is off")
    if cfg.retention != api.RetentionPolicy.LIMITS:
        problems.append(f"retention is {cfg.retention}, not limits")
    if cfg.max_msgs not in (None, -1) or cfg.max_age not in (None, 0, 0.0):
        problems.append("the stream has limits that would discard events")
    if problems:
        raise ConfigurationError(
            f"stream {settings.name!r} exists with other settings: " + "; ".join(problems),
            details={"stream": settings.name, "problems": problems},
        )
