"""Sequenced dead letters: where a process manager instance whose reaction keeps failing waits.

As in Axon's sequenced dead-letter queues, a failure stops one instance, not the process
manager: when a reaction has raised ``max_attempts`` times (or its event does not decode) the
trigger is *parked*, and so is every later trigger of the same instance (events and fired
timers), in order, while all other instances go on. An instance stays parked until an operator
replays its parked triggers (``cqrs processes retry``) or drops them (``cqrs processes
discard``).

Two records make a park:

- the instance entry's ``parked`` marker (:func:`parked_marker`): the first parked trigger, its
  error and the *last* trigger parked behind it, written by compare-and-set before the trigger
  is recorded;
- one message per parked trigger on ``cqrs.parked.<manager>.<key>`` in the stream
  ``CQRS_PM_PARKED``, with the message id ``<manager>:<key>:<trigger>`` so a redelivered
  trigger is recorded once. An event is recorded by reference (its stream sequence and index:
  the event stream keeps it); a fired timer with everything it carried, since the timers stream
  forgets a timer once it is delivered.

Because the marker names the last parked trigger and is written first, a retry clears the park
only after replaying that trigger, and only by compare-and-set: a trigger parked meanwhile
changes the entry, and the retry goes on with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import api

from ..errors import JetStreamError
from ..transport.direct_get import DirectGetter
from ..transport.nats_errors import nats_call
from ..transport.streams import provision_stream
from ..wire import codec
from ..wire.envelope import H_MSG_ID
from .triggers import Trigger

DEFAULT_STREAM = "CQRS_PM_PARKED"
SUBJECT_PREFIX = "cqrs.parked"
MAX_ERROR = 2000  # characters of an error kept with a parked trigger
STREAM_NOT_FOUND = 10059


def parked_subject(manager: str, key: str = "*") -> str:
    return f"{SUBJECT_PREFIX}.{manager}.{key}"


def now() -> str:
    return datetime.now(UTC).isoformat()


def parked_marker(current: Mapping[str, Any] | None, trigger: str, error: str) -> dict[str, Any]:
    """The instance's park marker once ``trigger`` is parked (``current`` when it names it)."""
    if current is None:
        return {"first": trigger, "error": error[:MAX_ERROR], "last": trigger, "since": now()}
    if current.get("last") == trigger:
        return dict(current)
    return {**current, "last": trigger}


@dataclass(frozen=True, slots=True)
class ParkedTrigger:
    """One parked trigger as stored: what it was, and why it was parked."""

    seq: int  # in the parked stream
    body: dict[str, Any]

    @property
    def trigger(self) -> str:
        return str(self.body["trigger"])

    @property
    def error(self) -> str:
        return str(self.body.get("error") or "")


@dataclass(frozen=True, slots=True)
class ParkedInstance:
    """A parked instance as ``cqrs processes dead-letters`` lists it."""

    key: str
    first: dict[str, Any]  # the first parked trigger (what failed, and the error)
    behind: int  # triggers parked behind it

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "first": self.first, "behind": self.behind}


def trigger_body(manager: str, trigger: Trigger, error: str, attempts: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "manager": manager,
        "key": trigger.key,
        "trigger": trigger.id,
        "correlation_id": trigger.correlation_id,
        "error": error[:MAX_ERROR],
        "attempts": attempts,
        "at": now(),
    }
    fired = trigger.timer
    if fired is None:
        body.update(kind="event", seq=trigger.seq, index=trigger.index)
    else:
        body.update(
            kind="timer",
            timer={
                "name": fired.name,
                "id": fired.id,
                "due": fired.due.isoformat(),
                "data": fired.data,
                "fired_at": fired.fired_at.isoformat() if fired.fired_at else None,
                "trace": trigger.trace,
            },
        )
    return body


class ParkedStore:
    """Records, counts, lists and removes parked triggers in one JetStream stream."""

    def __init__(
        self, nc: NATS, stream: str = DEFAULT_STREAM, *, replicas: int = 1, timeout: float = 5.0
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
            description="cqrs-runtime: parked process manager triggers, in order per instance",
            subjects=[f"{SUBJECT_PREFIX}.>"],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            num_replicas=self.replicas,
            allow_direct=True,
            duplicate_window=600.0,
        )
        await provision_stream(self.js, config, f"the parked-trigger stream {self.stream!r}")

    async def record(self, manager: str, trigger: Trigger, error: str, attempts: int) -> None:
        """Append ``trigger`` behind the instance's other parked triggers (once per trigger)."""
        body = codec.dumps(trigger_body(manager, trigger, error, attempts))
        headers = {H_MSG_ID: f"{manager}:{trigger.key}:{trigger.id}"}
        with nats_call(f"parking {trigger.id} of {manager}.{trigger.key}"):
            await self.js.publish(
                parked_subject(manager, trigger.key), body, stream=self.stream, headers=headers
            )

    async def counts(self, manager: str) -> dict[str, int]:
        """Parked triggers per instance key (empty without a parked stream)."""
        subjects = parked_subject(manager, "*")
        try:
            with nats_call(f"counting the parked triggers of {manager}"):
                info = await self.js.stream_info(self.stream, subjects_filter=subjects)
        except JetStreamError as exc:
            if exc.details.get("err_code") == STREAM_NOT_FOUND:
                return {}
            raise
        prefix = parked_subject(manager, "")
        return {s.removeprefix(prefix): n for s, n in (info.state.subjects or {}).items() if n}

    async def triggers(self, manager: str, key: str) -> list[ParkedTrigger]:
        """The parked triggers of one instance, oldest first."""
        reader = DirectGetter(self.nc, self.stream, timeout=self.timeout)
        await reader.start()
        try:
            messages = await reader.subject_history(parked_subject(manager, key))
        finally:
            await reader.stop()
        return [ParkedTrigger(m.seq, codec.loads(m.data)) for m in messages]

    async def instances(self, manager: str) -> list[ParkedInstance]:
        """Every parked instance of ``manager`` with its first parked trigger, by key."""
        out = []
        for key, count in sorted((await self.counts(manager)).items()):
            parked = await self.triggers(manager, key)
            if parked:
                out.append(ParkedInstance(key, parked[0].body, max(count, len(parked)) - 1))
        return out

    async def remove(self, parked: ParkedTrigger) -> None:
        """Delete one parked trigger (replayed or discarded)."""
        # NotFound: removed already, by a retry cut short after the removal.
        with (
            nats_call(f"removing parked trigger {parked.trigger}"),
            contextlib.suppress(nats.js.errors.NotFoundError),
        ):
            await self.js.delete_msg(self.stream, parked.seq)
