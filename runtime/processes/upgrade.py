"""Taking over from the process managers of a release before partitions, losing nothing.

Before partitions, a process manager read the event stream through one consumer
``cqrs-pm-<pm>`` and its fired timers through ``cqrs-pm-<pm>-timers`` (both pinned to one
replica, in a priority group), and a timer fired to ``timers.fired.<pm>.<key>.<timer>``. An
upgraded deployment still holds some of that:

- **events the old consumer had not acknowledged.** Its ack floor says what was done: the
  partition consumers, when this replica creates them, start at or below the floor (the copy's
  numbering never runs ahead of the event stream's) and every event at or below it is skipped
  (:meth:`~runtime.processes.reactor.Reactor.start`); above the floor, what the old consumer had
  acknowledged out of order comes again and each instance's position skips it. The old
  consumer is left alone (it never blocks anything: the event stream keeps messages by limits)
  so that its floor stays readable; an operator deletes it once the upgrade is done.
- **timers scheduled in the old form.** They still fire to the old subject: a consumer of it
  (:func:`legacy_timers_consumer`, read by the owner of partition 0) forwards each to its
  partition's subject, where the owner of the key's partition reacts to it. The forwarded copy
  has its own message id, so a forward repeated after a crash is stored once (within the
  stream's duplicate window; after it, the instance ignores a timer it already reacted to).
  The old pinned consumer of that subject, if any, is deleted first: the timers stream is a
  work queue, which allows one consumer per subject, and what it had not acknowledged stays in
  the stream for the new one.
"""

from __future__ import annotations

from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ..errors import Internal
from ..log import get_logger
from ..transport.nats_errors import jetstream_setup, nats_call
from ..transport.startup import jetstream_call
from ..wire import codec
from ..wire.envelope import H_CORRELATION_ID, H_MSG_ID, TRACE_HEADERS
from .consumers import PartitionConsumer
from .layout import key_partition
from .timers import H_TIMER_DUE, H_TIMER_ID, TIMER_PREFIX, fired_subject

log = get_logger("runtime.processes.upgrade")


def legacy_consumer_name(manager: str, kind: str = "events") -> str:
    """``cqrs-pm-<pm>`` (events) or ``cqrs-pm-<pm>-timers``: the consumers before partitions."""
    return f"cqrs-pm-{manager}" if kind == "events" else f"cqrs-pm-{manager}-timers"


def legacy_fired_subject(manager: str) -> str:
    """Where a timer scheduled before partitions fires: ``timers.fired.<pm>.<key>.<timer>``."""
    return f"{TIMER_PREFIX}.fired.{manager}.*.*"


async def legacy_floor(js: JetStreamContext, stream: str, manager: str) -> int | None:
    """The event sequence up to which the old consumer of ``manager`` acknowledged everything,
    or None when there is no old consumer (a deployment that never ran the old release)."""
    what = f"consumer {legacy_consumer_name(manager)}"
    with jetstream_setup(what):
        try:
            info = await jetstream_call(
                what, lambda: js.consumer_info(stream, legacy_consumer_name(manager))
            )
        except nats.js.errors.NotFoundError:
            return None
    return int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0


async def start_sequence(js: JetStreamContext, stream: str, floor: int) -> int:
    """A sequence of the partitioned copy at or before the copy of event ``floor + 1``.

    The copy holds the event stream's messages in order from its first one, so the copy of
    event ``s`` is at ``s`` less the events that were gone (before the first, or deleted) when
    copied, at most those gone now."""
    what = f"the event stream {stream!r}"
    with jetstream_setup(what):
        info = await jetstream_call(what, lambda: js.stream_info(stream))
    gone = max(0, int(info.state.first_seq or 1) - 1) + int(info.state.num_deleted or 0)
    return max(1, floor + 1 - gone)


async def retire_pinned_timers(nc: NATS, stream: str, manager: str, timeout: float) -> None:
    """Delete the old pinned consumer of ``manager``'s fired timers, if it is there (see the
    module doc); the plain consumer of the same name made in its place is kept."""
    name = legacy_consumer_name(manager, "timers")
    what = f"consumer {name}"
    with jetstream_setup(what):
        try:
            reply = await nc.request(f"$JS.API.CONSUMER.INFO.{stream}.{name}", b"", timeout)
        except nats.errors.NoRespondersError:
            return  # no JetStream yet: the timers stream was just checked, so nothing to do
        body: dict[str, Any] = codec.loads(reply.data)
        if "error" in body or not body.get("config", {}).get("priority_groups"):
            return
        with nats_call(f"deleting {what}"):
            await nc.jetstream(timeout=timeout).delete_consumer(stream, name)
    log.info("legacy_timers_consumer_retired", process_manager=manager, consumer=name)


def legacy_timers_consumer(
    nc: NATS, manager: str, stream: str, *, fetch_timeout: float, ack_wait: float, timeout: float
) -> PartitionConsumer:
    """The consumer of timers fired in the old form, read by partition 0's owner."""
    return PartitionConsumer(
        nc,
        stream=stream,
        name=legacy_consumer_name(manager, "timers"),
        subjects=[legacy_fired_subject(manager)],
        description=f"cqrs process manager {manager}: timers fired in the form before partitions",
        deliver_all=True,
        ack_wait=ack_wait,
        max_ack_pending=1000,
        fetch_timeout=fetch_timeout,
        timeout=timeout,
    )


def forwarded(msg: Msg, partitions: int) -> tuple[str, dict[str, str]]:
    """The subject and headers of an old-form fired timer's copy in its partition."""
    parts = msg.subject.split(".")
    if len(parts) != 5:
        raise Internal(f"{msg.subject}: not a timer fired before partitions")
    _, _, manager, key, name = parts
    headers = msg.headers or {}
    kept = (H_TIMER_ID, H_TIMER_DUE, H_CORRELATION_ID, *TRACE_HEADERS)
    copy = {k: headers[k] for k in kept if k in headers}
    # Not the schedule's own id (its duplicate within the window would be dropped).
    copy[H_MSG_ID] = f"forwarded-{headers.get(H_TIMER_ID) or msg.metadata.sequence.stream}"
    return fired_subject(manager, key_partition(key, partitions), key, name), copy


async def forward(js: JetStreamContext, msgs: list[Msg], partitions: int) -> None:
    """Publish each old-form fired timer to its partition's subject (then it is acknowledged)."""
    for msg in msgs:
        subject, headers = forwarded(msg, partitions)
        with nats_call(f"forwarding fired timer {msg.subject}"):
            await js.publish(subject, msg.data, headers=headers)
        log.info("legacy_timer_forwarded", subject=msg.subject, to=subject)
