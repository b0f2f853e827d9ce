"""Least-privilege NATS users for an application, derived from its definitions.

Five roles, each a function of the aggregates, projections and process managers the app
defines, so adding an aggregate type changes the generated permissions and nobody edits subject
lists by hand:

- ``client``: sends commands and queries, and pings the services that answer them (the HTTP
  gateway's readiness check); reads only replies on its own inbox prefix.
- ``worker``: serves its aggregates' command subjects, appends to their event subjects, reads
  only their histories (scoped reads) and keeps aggregate snapshots.
- ``projector``: reads events through its own consumers, serves its query subjects and keeps
  projection snapshots.
- ``processes``: reads events through its process managers' partition consumers, holds their
  partition leases, sends commands, keeps its instances' state, parks the triggers of failing
  instances, and schedules, cancels and consumes its timers.
- ``admin``: everything, including creating, changing, deleting and purging streams.

Only ``admin`` may delete or purge a stream: no other grant names ``$JS.API.STREAM.DELETE`` or
``$JS.API.STREAM.PURGE`` on the event stream, and the stream itself is created with
``deny_delete`` and ``deny_purge``. Workers may *create* the event stream (so a fresh cluster
provisions itself with the settings the code requires) but never update it.

Every user gets an inbox prefix of its own (``_INBOX_<user>``) and may subscribe only there.
The responders (workers, projectors) may publish to the inboxes of the app's users, and to no
other reply subject: ``allow_responses`` would let them publish to *any* reply subject a request
names, so a client could direct a worker's reply into ``events.>`` or a projector's into
``$O.>``. The runtime refuses such requests itself (:mod:`runtime.transport.replies`); these
grants make the server refuse them too, for every subject a responder may not write anyway.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..domain.app import App
from ..errors import ConfigurationError
from ..ownership.probe import PROBE_AGGREGATE
from ..read.dead_letters import dead_letter_subject
from ..wire.naming import (
    COMMAND_PREFIX,
    EVENT_PREFIX,
    QUERY_PREFIX,
    process_status_subject,
    queue_group,
    service_name,
)
from .natsconf import Comment, Value, Var

Role = Literal["client", "worker", "projector", "processes", "admin"]
ACCOUNT = "CQRS"
SYSTEM_ACCOUNT = "SYS"
USER_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MICRO_VERBS = ("PING", "INFO", "STATS")


def inbox_prefix(user: str) -> str:
    """The inbox prefix a user's connections use, and the only place it may subscribe."""
    return f"_INBOX_{user}"


def password_var(user: str) -> Var:
    """The environment variable nats-server reads the user's password (or bcrypt hash) from."""
    return Var(f"CQRS_{user.upper().replace('-', '_')}_PASSWORD")


@dataclass(frozen=True)
class Resources:
    """The JetStream names the runtime uses, each from the module that owns it."""

    stream: str = "EVENTS"
    aggregate_snapshot_bucket: str | None = None  # a KV bucket
    projection_snapshot_bucket: str | None = None  # an Object Store bucket
    dead_letter_stream: str | None = None  # where projections record skipped events
    timers_stream: str | None = None  # process managers' timers (message schedules)
    parked_stream: str | None = None  # process managers' parked triggers (dead letters)
    partitioned_stream: str | None = None  # the event stream by partition, for process managers
    process_lease_bucket: str | None = None  # a KV bucket: process manager partition leases
    process_bucket: str | None = None  # a KV bucket of process manager instances
    replica_bucket: str | None = None  # a KV bucket: live projection replicas' claims
    lease_bucket: str | None = None  # a KV bucket: partition leases and worker heartbeats

    @classmethod
    def of_runtime(
        cls,
        stream: str = "EVENTS",
        *,
        aggregate_snapshot_bucket: str | None = None,
        projection_snapshot_bucket: str | None = None,
    ) -> Resources:
        """The names the runtime's modules derive for ``stream`` (or the buckets given)."""
        from ..ownership.coordinator import OwnershipSettings
        from ..processes.layout import PARTITIONED_STREAM
        from ..processes.settings import ProcessSettings
        from ..read.dead_letters import DEFAULT_STREAM
        from ..read.presence import BUCKET as REPLICA_BUCKET
        from ..read.snapshots import DEFAULT_BUCKET

        return cls(
            stream=stream,
            aggregate_snapshot_bucket=_aggregate_bucket(stream, aggregate_snapshot_bucket),
            projection_snapshot_bucket=projection_snapshot_bucket or DEFAULT_BUCKET,
            dead_letter_stream=DEFAULT_STREAM,
            timers_stream=ProcessSettings().timers_stream,
            parked_stream=ProcessSettings().parked_stream,
            partitioned_stream=PARTITIONED_STREAM,
            process_lease_bucket=ProcessSettings().lease_bucket,
            process_bucket=ProcessSettings().bucket,
            replica_bucket=REPLICA_BUCKET,
            lease_bucket=OwnershipSettings().bucket_for(stream),
        )


def _aggregate_bucket(stream: str, bucket: str | None) -> str:
    from ..write.snapshots import SnapshotSettings

    return SnapshotSettings(bucket=bucket).bucket_for(stream)


@dataclass(frozen=True)
class Grant:
    """Subjects one user may publish to and subscribe to ("subject queue" pins a queue group)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    def block(self) -> dict[str, Value | Comment]:
        return {
            "publish": {"allow": list(self.publish)},
            "subscribe": {"allow": list(self.subscribe)},
        }


@dataclass(frozen=True)
class User:
    """One NATS user: its role, what it serves and what it may do."""

    name: str
    role: Role
    serves: tuple[str, ...] = ()  # aggregate or projection names
    grant: Grant | None = None  # None: everything (admin)
    description: str = ""


def _stream_api(verb: str, stream: str) -> str:
    return f"$JS.API.STREAM.{verb}.{stream}"


def _kv_keys(bucket: str, prefixes: Sequence[str]) -> list[str]:
    """Binding (and creating) a KV bucket, and reading and writing its keys ``<prefix>.*``."""
    kv_stream = f"KV_{bucket}"
    publish = [_stream_api("INFO", kv_stream), _stream_api("CREATE", kv_stream)]
    for prefix in prefixes:
        publish += [
            f"$KV.{bucket}.{prefix}.*",
            f"$JS.API.DIRECT.GET.{kv_stream}.$KV.{bucket}.{prefix}.*",
        ]
    return publish


def _micro(service: str, user: str) -> tuple[list[str], list[str]]:
    """Discovery subscriptions of a micro service, and the pings its own health check sends."""
    subscribe = [f"$SRV.{verb}" for verb in MICRO_VERBS]
    subscribe += [f"$SRV.*.{service}", f"$SRV.*.{service}.*"]
    publish = [f"$SRV.PING.{service}", f"$SRV.PING.{service}.*"]
    return publish, subscribe


def command_subjects(app: App) -> list[str]:
    """Where a sender of the app's commands may publish. The server checks a publish against
    the subject after mapping, so the partitioned form (cmd.<partition>.<aggregate>.<id>.<command>)
    must be allowed too."""
    return [f"{COMMAND_PREFIX}.{a.name}.*.*" for a in app.aggregates] + [
        f"{COMMAND_PREFIX}.*.{a.name}.*.*" for a in app.aggregates
    ]


def client_grant(user: str, app: App) -> Grant:
    publish = command_subjects(app)
    publish += [f"{QUERY_PREFIX}.{p.name}.*" for p in app.projections]
    publish += [f"$SRV.PING.{service_name('aggregate', a.name)}" for a in app.aggregates]
    publish += [f"$SRV.PING.{service_name('projection', p.name)}" for p in app.projections]
    return Grant(tuple(publish), (f"{inbox_prefix(user)}.>",))


def reply_inboxes(users: Sequence[str]) -> tuple[str, ...]:
    """Where a responder may publish its replies: the inboxes of these users, nothing else."""
    return tuple(f"{inbox_prefix(u)}.>" for u in users)


def worker_grant(
    user: str, aggregates: Sequence[str], resources: Resources, replies: Sequence[str] = ()
) -> Grant:
    stream = resources.stream
    publish = [f"{EVENT_PREFIX}.{name}.*" for name in aggregates]
    publish += [_stream_api("INFO", stream), _stream_api("CREATE", stream)]
    # Reads are scoped to its aggregates (workers run with scoped reads): histories through
    # consumers created on the filter-suffixed API (the server refuses a body whose filter is
    # another), which expire unused, so no consumer info or delete is granted; the newest
    # commit through the subject-suffixed direct get. No stream-wide direct get.
    for name in aggregates:
        publish += [
            f"$JS.API.CONSUMER.CREATE.{stream}.*.{EVENT_PREFIX}.{name}.*",
            f"$JS.API.DIRECT.GET.{stream}.{EVENT_PREFIX}.{name}.*",
        ]
    subscribe = [
        f"{COMMAND_PREFIX}.{name}.*.* {queue_group('aggregate', name)}" for name in aggregates
    ]
    # The partitions it owns (cmd.<partition>.<aggregate>.<id>.<command>), and the probe that
    # asks the server whether it partitions commands (runtime/ownership/probe.py).
    subscribe += [f"{COMMAND_PREFIX}.*.{name}.*.*" for name in aggregates]
    subscribe += [
        f"{COMMAND_PREFIX}.{PROBE_AGGREGATE}.*.ping",
        f"{COMMAND_PREFIX}.*.{PROBE_AGGREGATE}.*.ping",
    ]
    publish += [
        f"{COMMAND_PREFIX}.{PROBE_AGGREGATE}.*.ping",
        f"{COMMAND_PREFIX}.*.{PROBE_AGGREGATE}.*.ping",
    ]
    leases = resources.lease_bucket
    if leases is not None:
        kv_stream = f"KV_{leases}"
        publish += [
            _stream_api("INFO", kv_stream),
            _stream_api("CREATE", kv_stream),
            f"$KV.{leases}.>",
            f"$JS.API.DIRECT.GET.{kv_stream}.>",
        ]
    bucket = resources.aggregate_snapshot_bucket
    if bucket is not None:
        # Snapshot keys are <aggregate>.<id>: a worker reads and writes its aggregates' keys only.
        publish += _kv_keys(bucket, aggregates)
    for name in aggregates:
        pings, discovery = _micro(service_name("aggregate", name), user)
        publish += pings
        subscribe += [s for s in discovery if s not in subscribe]
    subscribe.append(f"{inbox_prefix(user)}.>")
    return Grant((*publish, *replies), tuple(subscribe))


def projector_grant(
    user: str, projections: Sequence[Any], resources: Resources, replies: Sequence[str] = ()
) -> Grant:
    stream = resources.stream
    # A replica's durable consumer is named cqrs-proj-<projection>-<replica>: subject tokens
    # cannot be matched by prefix, so the consumer API is granted per stream, not per consumer.
    publish = [
        _stream_api("INFO", stream),
        _stream_api("CREATE", stream),
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.*",
        f"$JS.API.CONSUMER.INFO.{stream}.*",
        f"$JS.API.CONSUMER.RESET.{stream}.*",
        f"$JS.API.CONSUMER.DELETE.{stream}.*",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
        f"$JS.ACK.{stream}.>",
    ]
    subscribe = [
        f"{QUERY_PREFIX}.{p.name}.* {queue_group('projection', p.name)}" for p in projections
    ]
    bucket = resources.projection_snapshot_bucket
    if bucket is not None:
        obj_stream = f"OBJ_{bucket}"
        publish += [
            f"$O.{bucket}.>",
            _stream_api("INFO", obj_stream),
            _stream_api("CREATE", obj_stream),
            _stream_api("MSG.GET", obj_stream),
            # nats-py's Object Store finds its stream by subject (stream names only, no data).
            "$JS.API.STREAM.NAMES",
            # The Object Store replaces and deletes an object by purging its chunks' subject;
            # this is the one purge a non-admin may do, on the snapshot bucket only.
            _stream_api("PURGE", obj_stream),
            f"$JS.API.DIRECT.GET.{obj_stream}.>",
            # A restore reads an object's chunks in batched direct gets, whose subject cannot
            # name them; the bucket holds nothing but projection snapshots.
            f"$JS.API.DIRECT.GET.{obj_stream}",
            f"$JS.API.CONSUMER.CREATE.{obj_stream}",
            f"$JS.API.CONSUMER.CREATE.{obj_stream}.>",
            f"$JS.API.CONSUMER.DELETE.{obj_stream}.*",
            f"$JS.FC.{obj_stream}.>",
        ]
    claims = resources.replica_bucket
    if claims is not None:
        # Claims are keyed <projection>.<replica> (<projection>.v<N>.<replica> from version 2):
        # a projector claims ids of its projections only.
        publish += _kv_keys(claims, [q for p in projections for q in (p.name, f"{p.name}.*")])
        publish += _replica_board([p.name for p in projections])
    dead_letters = resources.dead_letter_stream
    if dead_letters is not None:
        publish += [_stream_api("INFO", dead_letters), _stream_api("CREATE", dead_letters)]
        publish += [dead_letter_subject(p.name) for p in projections]
    for projection in projections:
        pings, discovery = _micro(service_name("projection", projection.name), user)
        publish += pings
        subscribe += [s for s in discovery if s not in subscribe]
    subscribe.append(f"{inbox_prefix(user)}.>")
    return Grant((*publish, *replies), tuple(subscribe))


def _replica_board(projections: Sequence[str]) -> list[str]:
    """Publishing a replica's state (keys <projection>.v<N>.<replica>) and watching the states
    of its projection's replicas (an ordered consumer of the board's stream)."""
    from ..read.board import BUCKET

    kv_stream = f"KV_{BUCKET}"
    return [
        *_kv_keys(BUCKET, [f"{p}.*" for p in projections]),
        f"$JS.API.CONSUMER.CREATE.{kv_stream}",
        f"$JS.API.CONSUMER.CREATE.{kv_stream}.>",
        f"$JS.API.CONSUMER.INFO.{kv_stream}.*",
        f"$JS.API.CONSUMER.DELETE.{kv_stream}.*",
        f"$JS.FC.{kv_stream}.>",
    ]


def _consumer_api(stream: str, consumer: str) -> list[str]:
    """Create, inspect and pull from one named consumer, and acknowledge its deliveries."""
    return [
        f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}",
        f"$JS.API.CONSUMER.INFO.{stream}.{consumer}",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
    ]


def processes_grant(
    user: str,
    managers: Sequence[str],
    app: App,
    resources: Resources,
    replies: Sequence[str] = (),
) -> Grant:
    from ..processes.parking import parked_subject
    from ..processes.timers import fired_subject, schedule_subject
    from ..processes.upgrade import legacy_consumer_name

    stream = resources.stream
    # Commands may go to any of the app's aggregates: what a reaction sends is data.
    publish = command_subjects(app)
    publish += [_stream_api("INFO", stream), _stream_api("CREATE", stream)]
    subscribe: list[str] = []
    for name in managers:
        subscribe.append(f"{process_status_subject(name)} {queue_group('process', name)}")
        # The ack floor of the consumer of the release before partitions (processes/upgrade.py).
        publish.append(f"$JS.API.CONSUMER.INFO.{stream}.{legacy_consumer_name(name)}")
    # Each (process manager, partition) has a consumer on the partitioned copy of the event
    # stream and one on the timers stream, named cqrs-pm-<pm>[-timers]-<partition>: subject
    # tokens cannot be matched by prefix, so the consumer API is granted per stream, on these
    # two streams only, which nobody but process managers reads.
    for consumed in (resources.partitioned_stream, resources.timers_stream):
        if consumed is not None:
            publish += [_stream_api("INFO", consumed), _stream_api("CREATE", consumed)]
            publish += [
                f"$JS.API.CONSUMER.CREATE.{consumed}.>",
                f"$JS.API.CONSUMER.INFO.{consumed}.*",
                f"$JS.API.CONSUMER.RESET.{consumed}.*",
                f"$JS.API.CONSUMER.MSG.NEXT.{consumed}.*",
                f"$JS.ACK.{consumed}.>",
            ]
    timers = resources.timers_stream
    if timers is not None:
        # Cancelling a timer purges its schedule's subject; the grant cannot narrow a purge to
        # subjects, so it covers the timers stream (never the event stream).
        publish.append(_stream_api("PURGE", timers))
        publish += [schedule_subject(name, "*", "*") for name in managers]
        # Timers fired in the form before partitions are forwarded to their partition (a
        # schedule could target these subjects anyway), and the old pinned consumer of them
        # is deleted (processes/upgrade.py).
        publish += [fired_subject(name, "*", "*", "*") for name in managers]
        publish += [
            f"$JS.API.CONSUMER.DELETE.{timers}.{legacy_consumer_name(name, 'timers')}"
            for name in managers
        ]
    parked = resources.parked_stream
    if parked is not None:
        # A replica parks triggers and counts them; listing, retrying and discarding them
        # (reading and deleting) is an operator's, done as admin.
        publish += [_stream_api("INFO", parked), _stream_api("CREATE", parked)]
        publish += [parked_subject(name, "*") for name in managers]
    bucket = resources.process_bucket
    if bucket is not None:  # instance keys are <process manager>.<key>
        publish += _kv_keys(bucket, managers)
        if set(managers) >= {m.name for m in app.process_managers}:
            # A batch's instances in one direct get: the request names its keys in its body,
            # so the grant cannot narrow it to some managers' keys. Given only to a user that
            # runs every manager (all the bucket's keys are its own); another reads one by one.
            publish.append(f"$JS.API.DIRECT.GET.KV_{bucket}")
    leases = resources.process_lease_bucket
    if leases is not None:  # leases lease.<pm>.<partition> and heartbeats member.<id>
        kv_stream = f"KV_{leases}"
        publish += [
            _stream_api("INFO", kv_stream),
            _stream_api("CREATE", kv_stream),
            f"$KV.{leases}.>",
            f"$JS.API.DIRECT.GET.{kv_stream}.>",
        ]
    for name in managers:
        pings, discovery = _micro(service_name("process", name), user)
        publish += pings
        subscribe += [s for s in discovery if s not in subscribe]
    subscribe.append(f"{inbox_prefix(user)}.>")
    return Grant((*publish, *replies), tuple(subscribe))


@dataclass(frozen=True)
class UserPlan:
    """Which users to generate: names per role and, for workers and projectors, what each serves.

    ``workers``/``projectors`` map a user name to the names it serves (empty: all of the app's).
    """

    clients: tuple[str, ...] = ("client", "gateway")
    workers: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"worker": ()})
    projectors: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"projector": ()})
    processes: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"processes": ()})
    admins: tuple[str, ...] = ("admin",)


def plan_users(app: App, plan: UserPlan, resources: Resources) -> list[User]:
    """The users of ``plan``, each with the grant its role and its aggregates/projections give."""
    users: list[User] = []
    everyone = [*plan.clients, *plan.workers, *plan.projectors, *plan.processes, *plan.admins]
    replies = reply_inboxes(everyone)
    for name in plan.clients:
        users.append(
            User(
                name,
                "client",
                grant=client_grant(name, app),
                description="sends commands and queries; reads only its own replies",
            )
        )
    for name, serves in plan.workers.items():
        aggregates = [a.name for a in app.select_aggregates(serves or None)]
        users.append(
            User(
                name,
                "worker",
                tuple(aggregates),
                worker_grant(name, aggregates, resources, replies),
                description="serves the commands of: " + ", ".join(aggregates),
            )
        )
    for name, serves in plan.projectors.items():
        projections = app.select_projections(serves or None)
        names = tuple(p.name for p in projections)
        users.append(
            User(
                name,
                "projector",
                names,
                projector_grant(name, projections, resources, replies),
                description="serves the queries of: " + (", ".join(names) or "(none yet)"),
            )
        )
    for name, serves in plan.processes.items():
        managers = tuple(m.name for m in app.select_process_managers(serves or None))
        users.append(
            User(
                name,
                "processes",
                managers,
                processes_grant(name, managers, app, resources, replies),
                description="runs the process managers: " + (", ".join(managers) or "(none yet)"),
            )
        )
    for name in plan.admins:
        users.append(
            User(name, "admin", description="creates, changes, deletes and purges streams")
        )
    seen: set[str] = set()
    for user in users:
        if not USER_PATTERN.fullmatch(user.name):
            raise ConfigurationError(f"user name {user.name!r} must match {USER_PATTERN.pattern}")
        if user.name in seen or user.name == "sys":
            raise ConfigurationError(f"user name {user.name!r} is used twice")
        seen.add(user.name)
    return users
