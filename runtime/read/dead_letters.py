"""The dead-letter stream: where a projection with ``on_poison="skip"`` records what it skipped.

A skipped event is a hole in a read model, so it must not vanish into a log line: each one is
recorded, with the error and the event itself, as a message on ``cqrs.deadletter.<projection>``
in the ``CQRS_DEADLETTERS`` stream, where an operator can list it (``cqrs projections
dead-letters <name>``) long after the logs have rotated.

Every replica of a projection sees every event, so every replica skips the same poison event;
the message id ``<projection>:<seq>:<index>`` lets JetStream keep one record per event.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import api

from ..transport.direct_get import DirectGetter
from ..transport.limits import message_size
from ..transport.nats_errors import nats_call
from ..transport.streams import provision_stream
from ..wire import codec

DEFAULT_STREAM = "CQRS_DEADLETTERS"
SUBJECT_PREFIX = "cqrs.deadletter"
MAX_ERROR = 2000  # characters of the error kept with a dead letter


def dead_letter_subject(projection: str) -> str:
    return f"{SUBJECT_PREFIX}.{projection}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One event a projection skipped, and why."""

    projection: str
    replica: str
    seq: int  # stream sequence of the commit in the event stream
    index: int  # position of the event in its commit
    subject: str
    type: str
    data: Any
    error: str
    attempts: int
    at: str  # when it was skipped (UTC, ISO 8601)

    @property
    def message_id(self) -> str:
        return f"{self.projection}:{self.seq}:{self.index}"

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)


class DeadLetters:
    """Records and lists dead letters in one JetStream stream."""

    def __init__(
        self,
        nc: NATS,
        stream: str = DEFAULT_STREAM,
        *,
        replicas: int = 1,
        timeout: float = 5.0,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=timeout)
        self.stream = stream
        self.replicas = replicas
        self.timeout = timeout

    async def start(self) -> None:
        """Create the stream when it does not exist yet."""
        config = api.StreamConfig(
            name=self.stream,
            description="cqrs-runtime: events projections skipped, with the error",
            subjects=[f"{SUBJECT_PREFIX}.>"],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            num_replicas=self.replicas,
            allow_direct=True,
            duplicate_window=600.0,
        )
        await provision_stream(self.js, config, f"the dead-letter stream {self.stream!r}")

    async def record(self, letter: DeadLetter) -> None:
        """Store ``letter`` (once per event, whichever replica records it first).

        A letter too large for one message keeps everything but the event's data, which stays
        readable in the event stream at the letter's sequence.
        """
        headers = {"Nats-Msg-Id": letter.message_id}
        letter = replace(letter, error=letter.error[:MAX_ERROR])
        body = codec.dumps(letter.to_wire())
        if message_size(body, headers) > self.nc.max_payload:
            letter = replace(letter, data=None, error=f"{letter.error} (data omitted: too large)")
            body = codec.dumps(letter.to_wire())
        with nats_call(f"recording a dead letter of {letter.projection}"):
            await self.js.publish(
                dead_letter_subject(letter.projection), body, stream=self.stream, headers=headers
            )

    async def list(self, projection: str) -> list[DeadLetter]:
        """The dead letters of ``projection``, oldest first."""
        with nats_call(f"reading the dead-letter stream {self.stream!r}"):
            try:
                await self.js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                return []  # nothing was ever skipped
        reader = DirectGetter(self.nc, self.stream, timeout=self.timeout)
        await reader.start()
        try:
            messages = await reader.subject_history(dead_letter_subject(projection))
        finally:
            await reader.stop()
        return [DeadLetter(**codec.loads(m.data)) for m in messages]
