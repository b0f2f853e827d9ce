"""Durable timers as JetStream message schedules (ADR-51, nats-server 2.12+).

A timer of instance ``<key>`` of process manager ``<pm>`` is one message on
``timers.schedule.<pm>.<key>.<timer>`` in the stream ``CQRS_TIMERS``, carrying
``Nats-Schedule: @at <due>`` and the target ``timers.fired.<pm>.<partition>.<key>.<timer>`` (the
partition of the key, :mod:`.layout`, so each partition's owner reads its own). When
it comes due the server publishes its body and headers to the target subject in the same stream,
and removes the schedule: no scheduler process, no database, and a server restart loses nothing
(a schedule whose time passed while the server was down fires when it is back).

- Setting a timer again replaces the earlier schedule (``Nats-Rollup: sub``), and the schedule's
  ``Nats-Msg-Id`` is the timer's id, so setting it twice after a redelivery stores it once.
- Cancelling purges the schedule's subject.
- The stream has work-queue retention: a fired message is removed once its process manager
  acknowledged it, while schedules (which no consumer reads) stay until they fire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import api

from ..errors import ConfigurationError, JetStreamError
from ..transport.nats_errors import nats_call
from ..transport.streams import provision_stream
from ..wire import codec
from ..wire.envelope import H_CORRELATION_ID, H_MSG_ID, TRACE_HEADERS
from ..wire.partitions import DEFAULT_PARTITIONS
from .layout import key_partition

TIMER_PREFIX = "timers"
H_TIMER_ID = "Cqrs-Timer-Id"
H_TIMER_DUE = "Cqrs-Timer-Due"
STREAM_NOT_FOUND = 10059  # JetStream's code for a stream that does not exist


def schedule_subject(manager: str, key: str, timer: str) -> str:
    return f"{TIMER_PREFIX}.schedule.{manager}.{key}.{timer}"


def fired_subject(
    manager: str, partition: int | str = "*", key: str = "*", timer: str = "*"
) -> str:
    """Where a timer fires: partitioned by its instance key (see :mod:`.layout`)."""
    return f"{TIMER_PREFIX}.fired.{manager}.{partition}.{key}.{timer}"


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Fired:
    """A fired timer as delivered: whose, which, its id, due time, data and correlation."""

    manager: str
    key: str
    name: str
    id: str
    due: datetime
    data: Any
    correlation_id: str
    fired_at: datetime | None = None
    trace: dict[str, str] | None = None  # W3C context of the reaction that set it

    @classmethod
    def parse(
        cls,
        subject: str,
        headers: dict[str, str],
        data: bytes,
        fired_at: datetime | None = None,
    ) -> Fired:
        _, _, manager, _partition, key, name = subject.split(".")
        return cls(
            manager=manager,
            key=key,
            name=name,
            id=headers.get(H_TIMER_ID, ""),
            due=datetime.fromisoformat(headers[H_TIMER_DUE]),
            data=codec.loads(data) if data else None,
            correlation_id=headers.get(H_CORRELATION_ID, ""),
            fired_at=fired_at,
            trace={k: headers[k] for k in TRACE_HEADERS if k in headers} or None,
        )


class TimerStore:
    """Sets, cancels and counts the timers of process managers in the timers stream."""

    def __init__(
        self,
        nc: NATS,
        *,
        stream: str = "CQRS_TIMERS",
        replicas: int = 1,
        partitions: int = DEFAULT_PARTITIONS,
    ) -> None:
        self.js = nc.jetstream(timeout=5.0)
        self.stream = stream
        self.replicas = replicas
        self.partitions = partitions

    async def start(self) -> None:
        """Create the timers stream, or check that the existing one can hold schedules."""
        wanted = api.StreamConfig(
            name=self.stream,
            description="cqrs process manager timers (message schedules)",
            subjects=[f"{TIMER_PREFIX}.>"],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.WORK_QUEUE,
            num_replicas=self.replicas,
            allow_msg_schedules=True,
            allow_rollup_hdrs=True,
        )
        what = f"the timers stream {self.stream!r}"
        info = await provision_stream(self.js, wanted, what)
        cfg = info.config
        problems = [
            problem
            for problem, bad in (
                ("allow_msg_schedules is off", not cfg.allow_msg_schedules),
                ("allow_rollup_hdrs is off", not cfg.allow_rollup_hdrs),
                ("storage is not file", cfg.storage != api.StorageType.FILE),
                (f"subjects {cfg.subjects} are not timers.>", cfg.subjects != wanted.subjects),
                ("retention is not workqueue", cfg.retention != api.RetentionPolicy.WORK_QUEUE),
            )
            if bad
        ]
        if problems:
            raise ConfigurationError(
                f"stream {self.stream!r} exists with other settings: " + "; ".join(problems),
                details={"stream": self.stream, "problems": problems},
            )

    async def set(
        self,
        manager: str,
        key: str,
        name: str,
        *,
        timer_id: str,
        at: datetime,
        data: Any = None,
        correlation_id: str = "",
        trace: dict[str, str] | None = None,
    ) -> None:
        due = rfc3339(at)
        headers = {
            "Nats-Schedule": f"@at {due}",
            "Nats-Schedule-Target": fired_subject(
                manager, key_partition(key, self.partitions), key, name
            ),
            "Nats-Rollup": "sub",
            H_MSG_ID: timer_id,
            H_TIMER_ID: timer_id,
            H_TIMER_DUE: due,
        }
        if correlation_id:
            headers[H_CORRELATION_ID] = correlation_id
        # The server copies the schedule's headers onto the fired message, so the trace of
        # the reaction that set the timer goes on to the reaction to its firing.
        headers.update(trace or {})
        body = b"" if data is None else codec.dumps(data)
        with nats_call(f"setting timer {name} of {manager}.{key}"):
            await self.js.publish(schedule_subject(manager, key, name), body, headers=headers)

    async def cancel(self, manager: str, key: str, name: str) -> None:
        with nats_call(f"cancelling timer {name} of {manager}.{key}"):
            await self.js.purge_stream(self.stream, subject=schedule_subject(manager, key, name))

    async def pending(self, manager: str) -> int:
        """How many timers of ``manager`` are waiting to fire (0 without a timers stream)."""
        subjects = schedule_subject(manager, "*", "*")
        try:
            with nats_call(f"counting the timers of {manager}"):
                info = await self.js.stream_info(self.stream, subjects_filter=subjects)
        except JetStreamError as exc:
            if exc.details.get("err_code") == STREAM_NOT_FOUND:
                return 0
            raise
        return sum((info.state.subjects or {}).values())
