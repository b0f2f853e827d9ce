"""cqrs-runtime: an async, actor-style aggregate runtime for CQRS and event sourcing on NATS
JetStream. Everything a user of the runtime may touch is re-exported here."""

from .aggregate_snapshots import SnapshotSettings, SnapshotStore
from .client import Client, CommandResult, QueryResult
from .connection import ConnectOptions, connect
from .dead_letters import DeadLetter, DeadLetters
from .domain import Aggregate, CommandContext
from .envelope import Commit, StoredEvent
from .errors import (
    Busy,
    ConfigurationError,
    Conflict,
    CqrsError,
    Internal,
    InvalidInput,
    NoResponders,
    NotFound,
    Rejected,
    SchemaError,
    ServerError,
    Stale,
    Timeout,
    UnknownCommand,
    UnknownQuery,
)
from .history import AggregateHistory, FieldChange, PastState
from .host import ActorHost, HostSettings
from .naming import check_id
from .projection import EventMeta, PoisonPolicy, Projection
from .projection_worker import run_projections, run_replica
from .projector import Projector, ProjectorSettings
from .server import EmbeddedServer, embedded_server
from .store import EventStore, StreamSettings
from .worker import WorkerSettings, run_worker

__all__ = [
    "ActorHost",
    "Aggregate",
    "AggregateHistory",
    "Busy",
    "Client",
    "CommandContext",
    "CommandResult",
    "Commit",
    "ConfigurationError",
    "Conflict",
    "ConnectOptions",
    "CqrsError",
    "DeadLetter",
    "DeadLetters",
    "EmbeddedServer",
    "EventMeta",
    "EventStore",
    "FieldChange",
    "HostSettings",
    "Internal",
    "InvalidInput",
    "NoResponders",
    "NotFound",
    "PastState",
    "PoisonPolicy",
    "Projection",
    "Projector",
    "ProjectorSettings",
    "QueryResult",
    "Rejected",
    "SchemaError",
    "ServerError",
    "SnapshotSettings",
    "SnapshotStore",
    "Stale",
    "StoredEvent",
    "StreamSettings",
    "Timeout",
    "UnknownCommand",
    "UnknownQuery",
    "WorkerSettings",
    "check_id",
    "connect",
    "embedded_server",
    "run_projections",
    "run_replica",
    "run_worker",
]
