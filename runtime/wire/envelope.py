"""Commits as stored: one JetStream message per successful command, holding all its events.

The body is the JSON list of ``{"type", "data"}`` pairs; the metadata travels in headers so tools
can filter without decoding bodies.
"""

from __future__ import annotations

from typing import Any

import msgspec

from . import codec
from .headers import HEADER_LINE, encode_headers
from .idempotency import H_FINGERPRINT, msg_id

H_COMMAND_ID = "Cqrs-Command-Id"
H_CORRELATION_ID = "Cqrs-Correlation-Id"
H_CAUSATION_ID = "Cqrs-Causation-Id"
H_COMMAND = "Cqrs-Command"
H_EVENT_TYPES = "Cqrs-Event-Types"
H_VERSION = "Cqrs-Version"
H_RECORDED_AT = "Cqrs-Recorded-At"
H_MIN_SEQ = "Cqrs-Min-Seq"
H_MSG_ID = "Nats-Msg-Id"
H_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
# The keys and numbers of a command reply around its events (two 20-digit integers included).
REPLY_ENVELOPE = 128
# W3C trace context of the command that made a commit (see runtime/observability/tracing.py).
H_TRACEPARENT = "traceparent"
H_TRACESTATE = "tracestate"
TRACE_HEADERS = (H_TRACEPARENT, H_TRACESTATE)


class RawMessage(msgspec.Struct, frozen=True):
    """One stored stream message as direct get returns it. (A frozen msgspec Struct: one is
    made per message read, and a frozen dataclass costs ten times as much to make.)"""

    seq: int
    subject: str
    timestamp: str
    headers: dict[str, str]
    data: bytes


# StoredEvent and Commit are msgspec Structs, not dataclasses: one is made per event and per
# commit written or read, and a Struct costs a quarter of a dataclass to make.
class StoredEvent(msgspec.Struct):
    """One event of a commit in its wire form (type name and JSON data)."""

    type: str
    data: Any

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "data": self.data}


class EncodedEvent(msgspec.Struct):
    """One ``{"type", "data"}`` item of a commit body, its data left encoded."""

    type: str
    data: msgspec.Raw = msgspec.Raw(b"null")


_COMMIT_BODY = msgspec.json.Decoder(list[EncodedEvent])


def encoded_events(body: bytes) -> list[EncodedEvent] | None:
    """The events of a commit body, each one's data still encoded; None when the body is no
    JSON list of ``{"type", "data"}`` objects (the general way then says what is wrong)."""
    try:
        return _COMMIT_BODY.decode(body)
    except msgspec.MsgspecError:
        return None


class Commit(msgspec.Struct):
    """One command's events, as appended to (or read from) the event stream."""

    aggregate: str
    aggregate_id: str
    command: str
    command_id: str
    correlation_id: str
    causation_id: str | None
    version: int  # the aggregate's event count after this commit
    events: list[StoredEvent]
    recorded_at: str
    seq: int = 0  # the stream sequence; 0 until stored
    timestamp: str = ""
    extra: dict[str, str] = msgspec.field(default_factory=dict)  # more headers: trace context
    fingerprint: str = ""  # of the command's name and arguments (see wire/idempotency.py)

    @property
    def first_version(self) -> int:
        return self.version - len(self.events) + 1

    def headers(self, expected_last_seq: int) -> dict[str, str]:
        headers = {
            H_MSG_ID: msg_id(self.aggregate, self.aggregate_id, self.command_id),
            H_EXPECTED_LAST_SUBJECT_SEQ: str(expected_last_seq),
            H_COMMAND_ID: self.command_id,
            H_CORRELATION_ID: self.correlation_id,
            H_COMMAND: self.command,
            H_EVENT_TYPES: ",".join(e.type for e in self.events),
            H_VERSION: str(self.version),
            H_RECORDED_AT: self.recorded_at,
        }
        if self.causation_id:
            headers[H_CAUSATION_ID] = self.causation_id
        if self.fingerprint:
            headers[H_FINGERPRINT] = self.fingerprint
        if self.extra:
            headers.update(self.extra)
        return headers

    def header_block(self, expected_last_seq: int) -> bytes:
        """:meth:`headers` as the message's encoded header block, the bytes
        :func:`~runtime.wire.headers.encode_headers` gives for them.

        It runs for every command, so the usual commit (no trace context) is written in one
        piece: its values are hex digests, numbers, checked names and ids, none of which holds
        a blank or a line break, which the counts below confirm; anything else takes the
        general encoder.
        """
        if self.extra:
            return encode_headers(self.headers(expected_last_seq))
        lines = 8
        text = (
            f"{HEADER_LINE}"
            f"{H_MSG_ID}: {msg_id(self.aggregate, self.aggregate_id, self.command_id)}\r\n"
            f"{H_EXPECTED_LAST_SUBJECT_SEQ}: {expected_last_seq}\r\n"
            f"{H_COMMAND_ID}: {self.command_id}\r\n"
            f"{H_CORRELATION_ID}: {self.correlation_id}\r\n"
            f"{H_COMMAND}: {self.command}\r\n"
            f"{H_EVENT_TYPES}: {','.join([e.type for e in self.events])}\r\n"
            f"{H_VERSION}: {self.version}\r\n"
            f"{H_RECORDED_AT}: {self.recorded_at}\r\n"
        )
        if self.causation_id:
            text += f"{H_CAUSATION_ID}: {self.causation_id}\r\n"
            lines += 1
        if self.fingerprint:
            text += f"{H_FINGERPRINT}: {self.fingerprint}\r\n"
            lines += 1
        text += "\r\n"
        # One blank per line (after the colon) and only the protocol's line breaks: else a
        # value needs stripping or cleaning, as the general encoder does.
        if (
            text.count(" ") != lines
            or text.count("\n") != lines + 2
            or text.count("\r") != lines + 2
        ):
            return encode_headers(self.headers(expected_last_seq))
        return text.encode()

    def body(self) -> bytes:
        return codec.dumps([e.to_wire() for e in self.events])

    def reply_size_bound(self, body: bytes) -> int:
        """At most the bytes of :meth:`reply` when :meth:`body` is ``body`` (it repeats it)."""
        ids = len(self.aggregate) + len(self.aggregate_id) + len(self.command_id)
        return len(body) + ids + REPLY_ENVELOPE

    def reply(self) -> dict[str, Any]:
        """The success reply of the command that made this commit."""
        return command_reply(
            self.aggregate, self.aggregate_id, self.version, self.seq, self.command_id, self.events
        )

    @classmethod
    def from_message(cls, msg: RawMessage, *, keep_encoded: bool = False) -> Commit:
        """The commit a stored message holds. With ``keep_encoded``, each event's data stays
        JSON (a :class:`msgspec.Raw`) when the body is well-formed, for readers that decode it
        straight into its class; a malformed body raises as it does without."""
        _, aggregate, aggregate_id = msg.subject.split(".", 2)
        h = msg.headers
        encoded = encoded_events(msg.data) if keep_encoded else None
        if encoded is not None:
            events = [StoredEvent(e.type, e.data) for e in encoded]
        else:
            events = [StoredEvent(e["type"], e.get("data")) for e in codec.loads(msg.data)]
        return cls(
            aggregate=aggregate,
            aggregate_id=aggregate_id,
            command=h.get(H_COMMAND, ""),
            command_id=h.get(H_COMMAND_ID, h.get(H_MSG_ID, "")),
            correlation_id=h.get(H_CORRELATION_ID, ""),
            causation_id=h.get(H_CAUSATION_ID),
            version=int(h.get(H_VERSION, "0")),
            events=events,
            recorded_at=h.get(H_RECORDED_AT, ""),
            seq=msg.seq,
            timestamp=msg.timestamp,
            fingerprint=h.get(H_FINGERPRINT, ""),
            extra={k: h[k] for k in TRACE_HEADERS if k in h},
        )


def command_reply(
    aggregate: str,
    aggregate_id: str,
    version: int,
    seq: int,
    command_id: str,
    events: list[StoredEvent],
) -> dict[str, Any]:
    """A command's success reply: the aggregate's version and the stream sequence after it, and
    the events it decided (none for a command that changed nothing)."""
    return {
        "aggregate": aggregate,
        "id": aggregate_id,
        "version": version,
        "seq": seq,
        "command_id": command_id,
        "events": [e.to_wire() for e in events],
    }
