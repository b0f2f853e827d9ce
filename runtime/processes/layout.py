"""Where process managers read from: the event stream split into partitions by the server.

Replicas of a process manager share its instances the way workers share aggregates
(:mod:`runtime.ownership`): each partition has one owner at a time, through a lease. For that,
an owner must be able to read exactly its partitions' events, in stream order. A consumer
filters by subject, and ``events.<aggregate>.<id>`` says nothing about partitions, so the
server copies the event stream into ``CQRS_PM_EVENTS``, a stream that *sources* ``EVENTS``
with a subject transform::

    events.<aggregate>.<id>  ->  pm.<partition>.<aggregate>.<id>

where ``partition`` is ``{{partition(N,2)}}``: FNV-1a 32 of the aggregate id modulo N, the
function :func:`key_partition` computes here too. Each (process manager, partition) then has
one durable consumer filtered on ``pm.<partition>.<aggregate>.*`` for the aggregates it
follows, read only by the partition's owner. The copy is the server's work (no client hop);
each copy carries the original sequence and subject in its ``Nats-Stream-Source`` header, so
trigger ids, positions and parked records keep naming the event stream.

Fired timers are partitioned by the instance key the same way: a timer's target subject is
``timers.fired.<pm>.<partition>.<key>.<timer>``, and each partition has a timers consumer.
With the default ``key_of`` (the aggregate id) an instance's events and timers are all in one
partition, so one owner sees them in order.
"""

from __future__ import annotations

import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from ..errors import ConfigurationError
from ..transport.streams import provision_stream
from ..wire.envelope import RawMessage
from ..wire.naming import EVENT_PREFIX
from ..wire.partitions import fnv1a32

PARTITIONED_STREAM = "CQRS_PM_EVENTS"
PREFIX = "pm"
H_STREAM_SOURCE = "Nats-Stream-Source"


def key_partition(key: str, partitions: int) -> int:
    """The partition of an instance key (the server's ``partition(N, token)`` of one token)."""
    return fnv1a32(key.encode()) % partitions


def transform(partitions: int) -> str:
    return f"{PREFIX}.{{{{partition({partitions},2)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}"


def partition_subjects(aggregates: list[str], partition: int) -> list[str]:
    return [f"{PREFIX}.{partition}.{aggregate}.*" for aggregate in aggregates]


def consumer_name(manager: str, partition: int, kind: str = "events") -> str:
    """``cqrs-pm-<pm>-<partition>`` (events) or ``cqrs-pm-<pm>-timers-<partition>``."""
    middle = "" if kind == "events" else "timers-"
    return f"cqrs-pm-{manager}-{middle}{partition}"


def original(msg: Msg) -> RawMessage:
    """The event stream's message a copy in the partitioned stream stands for (its sequence
    and subject from ``Nats-Stream-Source``: ``<stream> <seq> <filter> <dest> <subject> ...``).
    Without its stored time: a reaction is given the commit's own ``recorded_at``, and turning
    the delivery's time into text cost as much as a tenth of reacting."""
    headers = msg.headers or {}
    source = _source(msg)
    return RawMessage(
        seq=int(source[1]), subject=source[4], timestamp="", headers=headers, data=msg.data
    )


def source_seq(msg: Msg) -> int:
    """The event stream's sequence of a copy in the partitioned stream."""
    return int(_source(msg)[1])


def _source(msg: Msg) -> list[str]:
    source = (msg.headers or {}).get(H_STREAM_SOURCE, "").split(" ")
    if len(source) < 5:
        raise ConfigurationError(f"{msg.subject}: no usable {H_STREAM_SOURCE} header")
    return source


async def ensure_partitioned_stream(
    js: JetStreamContext, events: str, partitions: int, replicas: int
) -> api.StreamInfo:
    """Create ``CQRS_PM_EVENTS`` sourcing ``events`` into ``partitions`` partitions, or check
    that the existing one does (a different count would split instances differently)."""
    dest = transform(partitions)
    wanted = api.StreamConfig(
        name=PARTITIONED_STREAM,
        description="cqrs-runtime: the event stream by partition, for process managers",
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        num_replicas=replicas,
        sources=[
            api.StreamSource(
                name=events,
                subject_transforms=[api.SubjectTransform(src=f"{EVENT_PREFIX}.*.*", dest=dest)],
            )
        ],
    )
    what = f"the partitioned event stream {PARTITIONED_STREAM!r}"
    info = await provision_stream(js, wanted, what)
    sources = info.config.sources or []
    found = [t.dest for s in sources if s.name == events for t in (s.subject_transforms or [])]
    if found != [dest]:
        raise ConfigurationError(
            f"stream {PARTITIONED_STREAM!r} exists with other sources or partitions "
            f"({found}, wanted {dest!r}); give --partitions its count, or delete it as admin "
            "to repartition (its consumers start again from their settings)",
            details={"stream": PARTITIONED_STREAM, "found": found},
        )
    return info


async def partitions_caught_up(
    js: JetStreamContext, manager: str, partitions: int, seq: int
) -> bool:
    """Whether every event up to ``seq`` is in the partitioned stream and every partition
    consumer of ``manager`` acknowledged all it was given, whoever owns it (for tests and
    benchmarks: it asks the server about every partition)."""
    info = await js.stream_info(PARTITIONED_STREAM)
    if int(info.state.last_seq) < seq:  # the copy keeps the event stream's numbering
        return False
    for partition in range(partitions):
        try:
            consumer = await js.consumer_info(PARTITIONED_STREAM, consumer_name(manager, partition))
        except nats.js.errors.NotFoundError:
            return False  # its owner has not created it yet
        if consumer.num_pending or consumer.num_ack_pending:
            return False
    return True


async def partitions_delivered(js: JetStreamContext, manager: str, partitions: int) -> int:
    """How many events the partition consumers of ``manager`` delivered so far, all told."""
    total = 0
    for partition in range(partitions):
        try:
            consumer = await js.consumer_info(PARTITIONED_STREAM, consumer_name(manager, partition))
        except nats.js.errors.NotFoundError:
            continue
        total += int(consumer.delivered.consumer_seq or 0) if consumer.delivered else 0
    return total
